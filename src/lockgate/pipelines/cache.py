"""Cache keys that can be explained.

A step's key is the digest of its *components*: its code digest, the digests of its input
artifacts, the values of the parameters and constants it takes, and the settings that can change
its result. The components are stored with each entry, so a miss can be explained by comparing
them with the entry the step wrote last time.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Settings that cannot change what a step produces, so they are not part of its key.
_NOT_IN_KEY = frozenset({"retries", "backoff_s", "cache"})


def components(
    step: dict[str, Any], inputs: dict[str, dict[str, Any]], project_data: str | None = None
) -> dict[str, Any]:
    """The parts of ``step``'s key, from its definition and its resolved inputs.

    ``inputs`` maps each argument to ``{"digest": …}`` (an artifact), ``{"param": name,
    "value": …}`` (a pipeline parameter) or ``{"value": …}`` (a constant).
    """
    artifacts = {k: v["digest"] for k, v in inputs.items() if "digest" in v}
    params = {v["param"]: v["value"] for v in inputs.values() if "param" in v}
    constants = {k: v["value"] for k, v in inputs.items() if "digest" not in v and "param" not in v}
    settings = {k: v for k, v in step.get("settings", {}).items() if k not in _NOT_IN_KEY}
    return {
        "kind": step["kind"],
        "code": step.get("code_digest"),
        "project_data": project_data,
        "inputs": artifacts,
        "parameters": params,
        "constants": constants,
        "settings": settings,
        "options": step.get("options", {}),
    }


def key_of(parts: dict[str, Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def explain(current: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    """Why ``current`` differs from ``previous``: one line per changed part."""
    if previous is None:
        return ["no earlier run of this step was cached: nothing to reuse"]
    lines: list[str] = []
    if current.get("code") != previous.get("code"):
        lines.append(
            f"code changed: {_short(previous.get('code'))} → {_short(current.get('code'))} (the step or a project module it uses was edited)"
        )
    if current.get("project_data") != previous.get("project_data"):
        lines.append(
            "the project's data files changed (a non-Python file in the project folder was "
            "edited, added or removed)"
        )
    for part, label in (
        ("inputs", "input"),
        ("parameters", "parameter"),
        ("constants", "argument"),
    ):
        now, before = current.get(part, {}), previous.get(part, {})
        for name in sorted(set(now) | set(before)):
            if now.get(name) != before.get(name):
                was, is_ = before.get(name, "(absent)"), now.get(name, "(absent)")
                if part == "inputs":
                    was, is_ = _short(was), _short(is_)
                lines.append(f"{label} {name!r} changed: {was} → {is_}")
    for part in ("settings", "options", "kind"):
        if current.get(part) != previous.get(part):
            lines.append(f"{part} changed: {previous.get(part)} → {current.get(part)}")
    return lines or ["nothing in the key changed"]


def _short(digest: Any) -> str:
    text = str(digest)
    return text[:19] if text.startswith("sha256:") else text
