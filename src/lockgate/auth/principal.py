"""Who is calling: the principal every service call acts as."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """A user or service principal, named ``user:LOGIN`` or ``service:NAME``."""

    name: str

    def __str__(self) -> str:
        return self.name


def local_principal() -> Principal:
    """The OS user running this process, from the real user id.

    ``$USER`` and ``$LOGNAME`` are deliberately ignored: they can be set to anything.
    """
    return Principal(f"user:{pwd.getpwuid(os.geteuid()).pw_name}")
