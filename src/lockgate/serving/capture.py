"""Data capture: a sample of requests and responses, as JSON lines in the artifact store.

Each instance buffers its captured records and writes them as a new object under
``capture/ENDPOINT/YYYY-MM-DD/INSTANCE-SEQ.jsonl`` every ``FLUSH_RECORDS`` records or
``FLUSH_S`` seconds, and when it stops — new objects rather than appends, so it works the same on
a folder and on S3.
"""

from __future__ import annotations

import base64
import json
import random
import time
from typing import Any

from lockgate.ids import isoformat, utcnow

FLUSH_RECORDS = 100
FLUSH_S = 2.0


class Capture:
    def __init__(self, artifact_url: str, endpoint: str, instance: str, sample: float) -> None:
        from lockgate.artifacts.store import ArtifactStore

        self.store = ArtifactStore(artifact_url)
        self.endpoint = endpoint
        self.instance = instance
        self.sample = sample
        self.buffer: list[str] = []
        self.sequence = 0
        self.last_flush = time.monotonic()

    def record(
        self, request: bytes, content_type: str, response: bytes, accept: str, status: int
    ) -> None:
        if random.random() >= self.sample:
            return
        entry: dict[str, Any] = {
            "at": isoformat(utcnow()),
            "endpoint": self.endpoint,
            "instance": self.instance,
            "status": status,
            "request": _payload(request, content_type),
            "response": _payload(response, accept),
        }
        self.buffer.append(json.dumps(entry, sort_keys=True))
        if len(self.buffer) >= FLUSH_RECORDS or time.monotonic() - self.last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        day = isoformat(utcnow())[:10]
        self.sequence += 1
        path = self.store.path(
            "capture", self.endpoint, day, f"{self.instance}-{self.sequence:06d}.jsonl"
        )
        self.store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.store.fs.open(path, "w") as out:
            out.write("\n".join(self.buffer) + "\n")
        self.buffer.clear()


def _payload(data: bytes, content_type: str) -> dict[str, str]:
    try:
        return {"content_type": content_type, "data": data.decode()}
    except UnicodeDecodeError:
        return {"content_type": content_type, "base64": base64.b64encode(data).decode()}
