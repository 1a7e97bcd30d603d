"""An environment's signing and encryption keys: files with mode 0600 in a 0700 folder."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lockgate.errors import IntegrityError, NotInitialisedError

SIGNING_FILE = "signing.pem"
ENCRYPTION_FILE = "encryption.key"
#: The key a rotation in progress re-encrypts under (see lockgate.auth.rotation).
NEXT_ENCRYPTION_FILE = "encryption.key.next"
KEY_FILES = (SIGNING_FILE, ENCRYPTION_FILE)


@dataclass(frozen=True)
class EnvKeys:
    """The key files of one environment, under ``keys/<env>/`` in the home."""

    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name

    def observe(self) -> dict[str, str]:
        """Each key file's state: ``ok``, ``missing`` or ``mode 0644`` (too open)."""
        found = {}
        for name in KEY_FILES:
            path = self.path(name)
            if not path.is_file():
                found[name] = "missing"
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            found[name] = "ok" if mode == 0o600 else f"mode {mode:04o}"
        return found

    def ensure(self) -> list[str]:
        """Create missing keys and tighten modes; returns what it did."""
        done = []
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        for name, state in self.observe().items():
            if state == "missing":
                write_secret(self.path(name), _new_key(name))
                done.append(f"created {name}")
            elif state != "ok":
                os.chmod(self.path(name), 0o600)
                done.append(f"set {name} to mode 0600")
        return done

    def read(self, name: str) -> bytes:
        path = self.path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise NotInitialisedError(
                f"the key {path} is missing.",
                hint="Run `lockgate infra apply` to recreate it (secure values encrypted with the "
                "lost key cannot be read again; put them anew).",
            ) from exc
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise IntegrityError(
                f"the key {path} is readable by other users.",
                hint="Run `lockgate infra apply` to set it back to mode 0600.",
            )
        return data


def _new_key(name: str) -> bytes:
    if name == ENCRYPTION_FILE:
        from cryptography.fernet import Fernet

        return Fernet.generate_key()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file created with mode 0600 (never world-readable, even briefly)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
