"""Key rotation: every secure value is re-encrypted and stays readable, even when a rotation
stops between re-encrypting and replacing the key file."""

from __future__ import annotations

from lockgate.auth import secrets
from lockgate.auth.keys import ENCRYPTION_FILE, NEXT_ENCRYPTION_FILE
from lockgate.auth.principal import Principal
from lockgate.auth.rotation import rotate_encryption_key
from lockgate.parameters import service as parameters
from lockgate.platform import Platform
from lockgate.store import params
from support import run_cli


def _stored(platform: Platform, name: str) -> str:
    with platform.env("prod").store.read() as s:
        found = params.get_parameter(s, name)
    assert found is not None
    return found.value


def test_rotation_reencrypts_every_secure_value(platform: Platform, admin: Principal) -> None:
    parameters.put(platform, admin, "/lockgate/prod/db/password", "hunter2-pw", secure=True)
    parameters.put(platform, admin, "/lockgate/prod/db/host", "db.internal")
    keys = platform.env("prod").keys
    old_key = keys.read(ENCRYPTION_FILE)
    old_cipher = _stored(platform, "/lockgate/prod/db/password")

    done = run_cli(platform.home, "keys", "rotate", "--env", "prod")
    assert done.code == 0 and "1 secure value(s) re-encrypted" in done.out, done.err
    assert keys.read(ENCRYPTION_FILE) != old_key
    assert not keys.path(NEXT_ENCRYPTION_FILE).exists()
    assert _stored(platform, "/lockgate/prod/db/password") != old_cipher
    clear = parameters.get(platform, admin, "/lockgate/prod/db/password", decrypt=True)
    assert clear.value == "hunter2-pw" and clear.version == 1
    assert "hunter2-pw" not in done.out + done.err


def test_a_rotation_stopped_half_way_loses_nothing(platform: Platform, admin: Principal) -> None:
    from cryptography.fernet import Fernet

    from lockgate.auth.keys import write_secret

    parameters.put(platform, admin, "/lockgate/prod/token", "t0ken-value", secure=True)
    keys = platform.env("prod").keys
    # The state a crash after the transaction leaves: values under the next key, key not moved.
    next_key = Fernet.generate_key()
    write_secret(keys.path(NEXT_ENCRYPTION_FILE), next_key)
    with platform.env("prod").store.transaction() as s:
        params.set_ciphertext(
            s, "/lockgate/prod/token", Fernet(next_key).encrypt(b"t0ken-value").decode()
        )
    assert secrets.decrypt(keys, _stored(platform, "/lockgate/prod/token")) == "t0ken-value"
    assert rotate_encryption_key(platform, admin, "prod") == 1  # the next rotation finishes it
    assert secrets.decrypt(keys, _stored(platform, "/lockgate/prod/token")) == "t0ken-value"
    assert not keys.path(NEXT_ENCRYPTION_FILE).exists()
