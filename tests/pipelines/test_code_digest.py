"""Code digests fail closed: every edit a step can depend on changes its digest (no false cache
hits), and an unchanged project gives the same digest in any process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FILES = {
    "pipe.py": """
        import functools

        from consts import SCALE
        from pkg.helpers import scaled

        from lockgate import pipeline, step

        CONFIG = {"n": 1, "tags": ["a"]}
        KINDS = frozenset({"x", "y", "z", "w"})


        @functools.lru_cache
        def cached_helper() -> int:
            return 1


        @step
        def uses_dict() -> int:
            return CONFIG["n"]


        @step
        def uses_imported_constant() -> int:
            return SCALE["factor"]


        @step
        def uses_relative_import() -> int:
            return scaled(2)


        @step
        def uses_local_import() -> int:
            from local_only import value

            return value()


        @step
        def uses_wrapped_helper() -> int:
            return cached_helper()


        @step
        def uses_frozenset() -> int:
            return len(KINDS)


        @pipeline
        def deps() -> None:
            uses_dict()
            uses_imported_constant()
            uses_relative_import()
            uses_local_import()
            uses_wrapped_helper()
            uses_frozenset()
    """,
    "consts.py": 'SCALE = {"factor": 2}\n',
    "pkg/__init__.py": "",
    "pkg/helpers.py": "from .util import factor\n\n\ndef scaled(x):\n    return x * factor()\n",
    "pkg/util.py": "def factor():\n    return 3\n",
    "local_only.py": "def value():\n    return 7\n",
}

EDITS = {
    "uses_dict": ("pipe.py", '"n": 1', '"n": 2'),
    "uses_imported_constant": ("consts.py", '"factor": 2', '"factor": 5'),
    "uses_relative_import": ("pkg/util.py", "return 3", "return 4"),
    "uses_local_import": ("local_only.py", "return 7", "return 8"),
    "uses_wrapped_helper": ("pipe.py", "    return 1\n", "    return 2\n"),
    "uses_frozenset": ("pipe.py", '"w"})', '"v"})'),
}

PROBE = """
import json, sys
from pathlib import Path
from lockgate.pipelines import compiler
root = Path(sys.argv[1])
module = compiler.load_module(root / "pipe.py")
definition = compiler.compile_pipeline(compiler.find_pipeline(module, None), root)
print(json.dumps({k: v["code_digest"] for k, v in definition["steps"].items()}))
"""


def _write(root: Path) -> None:
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _digests(root: Path, seed: str = "0") -> dict[str, str]:
    """Compile in a fresh process (as `lockgate pipeline upsert` does)."""
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(root)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return dict(json.loads(out.stdout))


def test_unchanged_code_has_one_digest_in_any_process(tmp_path: Path) -> None:
    _write(tmp_path)
    assert _digests(tmp_path, "1") == _digests(tmp_path, "2")


@pytest.mark.parametrize("step", sorted(EDITS))
def test_each_dependency_edit_changes_that_steps_digest(tmp_path: Path, step: str) -> None:
    _write(tmp_path)
    before = _digests(tmp_path)
    file, old, new = EDITS[step]
    path = tmp_path / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    after = _digests(tmp_path)
    assert after[step] != before[step], f"editing {file} did not change {step}'s digest"
