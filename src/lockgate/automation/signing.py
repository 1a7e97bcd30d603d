"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body.

A delivery carries ``Lockgate-Signature: t=UNIX_SECONDS,v1=HEX`` where ``HEX`` is
``HMAC-SHA256(secret, f"{t}.{body}")``. A receiver recomputes it over the raw body it read,
compares in constant time, and refuses a timestamp older than a few minutes (a replay). The
``Lockgate-Delivery`` header is the same on every retry of one delivery: receivers deduplicate
on it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Lockgate-Signature"
#: How old a signature :func:`verify` accepts by default.
TOLERANCE_S = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Lockgate-Signature`` header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(secret, t, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` and is recent enough."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - t) > tolerance_s:
        return False
    return hmac.compare_digest(given, _digest(secret, t, body))


def _digest(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
