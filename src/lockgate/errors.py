"""The one error hierarchy of Lockgate.

Every error a user can cause or meet is a :class:`LockgateError`. Each kind carries a stable
``code`` (shown in ``--json`` output and API bodies), a CLI exit code and an HTTP status, so the
command line and the daemon report the same failure the same way::

    LockgateError                 1  500  internal
    ├── ConfigError               3  422  invalid_config
    ├── NotInitialisedError       3  409  not_initialised
    ├── ValidationError           4  400  invalid_input
    ├── NotFoundError             5  404  not_found
    ├── PermissionDeniedError     6  403  permission_denied
    ├── ConflictError             7  409  conflict
    │   └── LockHeldError         8  423  locked
    ├── IntegrityError            9  500  integrity
    └── AbortedError             10  409  aborted

Exit code 2 is kept for ``lockgate infra plan`` ("there are changes"), as in
``terraform plan -detailed-exitcode``, and 130 for an interrupted command.

A message says what is wrong; ``hint`` says what to do next.
"""

from __future__ import annotations

from typing import ClassVar


class LockgateError(Exception):
    """Base of every error Lockgate raises on purpose."""

    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str | None]:
        """The error as a JSON-ready document (CLI ``--json`` and HTTP bodies)."""
        return {"error": self.code, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class ConfigError(LockgateError):
    """``platform.toml`` is missing, unreadable or invalid."""

    code = "invalid_config"
    exit_code = 3
    http_status = 422


class NotInitialisedError(LockgateError):
    """The platform home, or one of its environments, has not been bootstrapped."""

    code = "not_initialised"
    exit_code = 3
    http_status = 409


class ValidationError(LockgateError):
    """An argument or request body is malformed (a bad name, a path outside the home…)."""

    code = "invalid_input"
    exit_code = 4
    http_status = 400


class NotFoundError(LockgateError):
    """The named thing does not exist."""

    code = "not_found"
    exit_code = 5
    http_status = 404


class AuthenticationError(LockgateError):
    """No credential, or one that is expired, forged, revoked or for another environment."""

    code = "unauthenticated"
    exit_code = 6
    http_status = 401


class PermissionDeniedError(LockgateError):
    """The principal lacks the permission the operation needs."""

    code = "permission_denied"
    exit_code = 6
    http_status = 403


class ConflictError(LockgateError):
    """The operation conflicts with the current state."""

    code = "conflict"
    exit_code = 7
    http_status = 409


class LockHeldError(ConflictError):
    """Another process holds the infrastructure lock."""

    code = "locked"
    exit_code = 8
    http_status = 423


class IntegrityError(LockgateError):
    """Stored data failed a check: a broken audit chain, a digest mismatch."""

    code = "integrity"
    exit_code = 9
    http_status = 500


class AbortedError(LockgateError):
    """The user declined a confirmation, or work stopped before it finished."""

    code = "aborted"
    exit_code = 10
    http_status = 409


def error_table() -> list[tuple[str, str, int, int]]:
    """Every error kind as ``(class name, code, exit code, HTTP status)``, for docs and tests."""
    kinds: list[type[LockgateError]] = [
        LockgateError,
        ConfigError,
        NotInitialisedError,
        ValidationError,
        NotFoundError,
        AuthenticationError,
        PermissionDeniedError,
        ConflictError,
        LockHeldError,
        IntegrityError,
        AbortedError,
    ]
    return [(k.__name__, k.code, k.exit_code, k.http_status) for k in kinds]
