"""Secure values: encrypted at rest with the environment's key, compared by keyed fingerprint."""

from __future__ import annotations

import hashlib
import hmac

from lockgate.auth.keys import ENCRYPTION_FILE, NEXT_ENCRYPTION_FILE, EnvKeys
from lockgate.errors import IntegrityError


def encrypt(keys: EnvKeys, clear: str) -> str:
    from cryptography.fernet import Fernet

    return Fernet(keys.read(ENCRYPTION_FILE)).encrypt(clear.encode()).decode()


def decrypt(keys: EnvKeys, token: str) -> str:
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet

    candidates = [ENCRYPTION_FILE]
    if keys.path(NEXT_ENCRYPTION_FILE).is_file():  # a rotation stopped half-way
        candidates.append(NEXT_ENCRYPTION_FILE)
    try:
        return (
            MultiFernet([Fernet(keys.read(name)) for name in candidates])
            .decrypt(token.encode())
            .decode()
        )
    except InvalidToken as exc:
        raise IntegrityError(
            "a secure value cannot be decrypted with this environment's key "
            "(the key was replaced, or the value was altered).",
            hint="Put the value again with `lockgate param put NAME --secure`.",
        ) from exc


def fingerprint(keys: EnvKeys, clear: str) -> str:
    """A keyed digest of ``clear``: it shows whether a value changed without revealing it."""
    mac_key = hashlib.sha256(b"lockgate/fingerprint/" + keys.read(ENCRYPTION_FILE)).digest()
    return "hmac-sha256:" + hmac.new(mac_key, clear.encode(), hashlib.sha256).hexdigest()[:32]
