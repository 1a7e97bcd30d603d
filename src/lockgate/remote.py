"""The CLI's client for a remote daemon: ``LOCKGATE_URL`` and ``LOCKGATE_TOKEN``.

``LOCKGATE_TOKEN`` (else the credential ``lockgate auth login --url`` stored) is an access token (``lockgate auth login``, or the answer of
``POST /auth/oidc/exchange`` in a CI job) or an API token (``lgt_…``), which is exchanged for an
access token first. Errors come back as the daemon's own (the same kinds, exit codes and hints
as local ones). Commands that support it say so in their help; the others work on a local home.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate import errors

URL_ENV = "LOCKGATE_URL"
#: Where `lockgate auth login --url` keeps refresh credentials (API tokens), mode 0600.
CREDENTIALS_ENV = "LOCKGATE_CREDENTIALS"
TOKEN_ENV = "LOCKGATE_TOKEN"
_KINDS = {
    cls.code: cls
    for cls in (
        errors.ValidationError,
        errors.NotFoundError,
        errors.AuthenticationError,
        errors.PermissionDeniedError,
        errors.ConflictError,
        errors.IntegrityError,
        errors.NotInitialisedError,
    )
}


@dataclass
class Remote:
    url: str
    credential: str
    _access: str | None = None

    @classmethod
    def from_environment(cls) -> Remote | None:
        url = os.environ.get(URL_ENV)
        if not url:
            return None
        token = os.environ.get(TOKEN_ENV) or stored_credential(url.rstrip("/"))
        if not token:
            raise errors.AuthenticationError(
                f"{URL_ENV} is set but {TOKEN_ENV} is not, and no login is stored for it.",
                hint="Set it to an access token, or log in once: "
                f"lockgate auth login --url {url} (with an API token on standard input).",
            )
        if not url.startswith(("http://", "https://")):
            raise errors.ValidationError(f"{URL_ENV}={url!r} is not an http(s) URL.")
        return cls(url.rstrip("/"), token)

    def _token(self) -> str:
        if self._access is None:
            if self.credential.startswith("lgt_"):
                answer = self._send("POST", "/auth/token", bearer=self.credential)
                self._access = str(answer["access_token"])
            else:
                self._access = self.credential
        return self._access

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return self._send(
            method, path, bearer=self._token(), json=json, content=content, headers=headers
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        bearer: str,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        import httpx

        sent = {"Authorization": f"Bearer {bearer}", **(headers or {})}
        try:
            response = httpx.request(
                method, self.url + path, json=json, content=content, headers=sent, timeout=120
            )
        except httpx.HTTPError as exc:
            raise errors.ConflictError(
                f"cannot reach the Lockgate daemon at {self.url}: {type(exc).__name__}.",
                hint=f"Check {URL_ENV}, and that the daemon runs (lockgate up).",
            ) from None
        if response.status_code >= 400:
            raise _error(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content


def _error(response: Any) -> errors.LockgateError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    kind = _KINDS.get(str(body.get("error")), errors.LockgateError)
    message = str(
        body.get("message") or body.get("error") or response.text[:300] or response.status_code
    )
    return kind(f"the daemon answered {response.status_code}: {message}", hint=body.get("hint"))


def credentials_file() -> Path:
    default = Path.home() / ".config" / "lockgate" / "credentials.json"
    return Path(os.environ.get(CREDENTIALS_ENV) or default)


def stored_credential(url: str) -> str | None:
    path = credentials_file()
    if not path.is_file():
        return None
    if path.stat().st_mode & 0o077:
        raise errors.IntegrityError(
            f"{path} is readable by other users.", hint=f"chmod 600 {path}, or log in again."
        )
    found = json.loads(path.read_text()).get(url)
    return str(found["refresh"]) if found else None


def store_credential(url: str, refresh: str) -> Path:
    """Keep ``refresh`` (an API token) for ``url`` in the credentials file (mode 0600)."""
    from lockgate.auth.keys import write_secret

    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    known = json.loads(path.read_text()) if path.is_file() else {}
    known[url] = {"refresh": refresh}
    write_secret(path, json.dumps(known, indent=2).encode())
    return path
