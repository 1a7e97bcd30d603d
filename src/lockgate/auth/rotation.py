"""``lockgate keys rotate``: a new encryption key for an environment, every secure value
re-encrypted under it.

Crash-safe in three steps: the new key is written beside the old one (``encryption.key.next``,
mode 0600); one transaction re-encrypts every secure parameter (project secrets included); then
the new key replaces the old. A crash between the last two leaves values under the new key and
both files in place — :func:`lockgate.auth.secrets.decrypt` reads with either, and the next
rotation finishes the job.
"""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING

from lockgate.auth import audit
from lockgate.auth.keys import ENCRYPTION_FILE, NEXT_ENCRYPTION_FILE, write_secret
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.platform import Environment, Platform
from lockgate.store import params

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


def rotate_encryption_key(platform: Platform, principal: Principal, env: str) -> int:
    """Rotate ``env``'s encryption key; the number of secure values re-encrypted."""
    from cryptography.fernet import Fernet

    handle = platform.ready(env)
    authorize(handle.store, principal, "infra:apply", env=env, target="keys/encryption.key")
    keys = handle.keys
    with open(keys.path(".rotate.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pending = keys.path(NEXT_ENCRYPTION_FILE)
        if pending.is_file():  # finish the rotation a crash interrupted, first
            _reencrypt(handle, Fernet(keys.read(NEXT_ENCRYPTION_FILE)))
            os.replace(pending, keys.path(ENCRYPTION_FILE))
        new_key = Fernet.generate_key()
        write_secret(pending, new_key)
        count = _reencrypt(handle, Fernet(new_key))
        with handle.store.transaction() as session:
            audit.record(
                session,
                actor=principal.name,
                action="keys.rotate",
                target=f"{env}/{ENCRYPTION_FILE}",
                details={"reencrypted": count},
            )
        os.replace(pending, keys.path(ENCRYPTION_FILE))
    return count


def _reencrypt(handle: Environment, target: Fernet) -> int:
    """Every secure value of ``handle`` under ``target``, in one transaction."""
    from lockgate.auth import secrets

    count = 0
    with handle.store.transaction() as session:
        for stored in params.list_parameters(session):
            if stored.secure:
                clear = secrets.decrypt(handle.keys, stored.value)
                params.set_ciphertext(session, stored.name, target.encrypt(clear.encode()).decode())
                count += 1
    return count
