"""A small copier template, in two versions, for the project tests (the built-in ones are
exercised in test_templates.py and the end-to-end tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

COPIER_YML = """\
_subdirectory: template
_templates_suffix: .jinja
project_name:
  type: str
environments:
  type: yaml
  default: [dev]
greeting:
  type: str
  default: hello
  help: What the README says first.
size:
  type: str
  default: small
  choices: [small, large]
"""

PIPELINE = """\
from lockgate import Metrics, pipeline, step


@step
def measure(scale: int) -> Metrics:
    return Metrics(score=scale * 2)


@pipeline(name="{name}")
def tiny(scale: int = 3) -> None:
    measure(scale)
"""


def write_template(root: Path, version: int) -> Path:
    """Version 1 or 2 of the test template in ``root`` (version 2 changes the README's last
    line and adds CHANGES.md)."""
    (root / "template" / "pipeline").mkdir(parents=True, exist_ok=True)
    (root / "copier.yml").write_text(COPIER_YML)
    (root / "lockgate-template.toml").write_text(
        'description = "A test template"\nenvironments = "first"\n'
    )
    (root / "template" / "{{_copier_conf.answers_file}}.jinja").write_text(
        "{{ _copier_answers|to_nice_yaml -}}\n"
    )
    (root / "template" / "README.md.jinja").write_text(
        "{{ greeting }} from {{ project_name }}\n\nline two\n\n"
        + ("footer v1\n" if version == 1 else "footer v2 (improved)\n")
    )
    (root / "template" / "lockgate.yaml.jinja").write_text(
        "project: {{ project_name }}\n"
        "environments: [{{ environments[0] }}]\n"
        "model_group: {{ project_name }}\n"
        "promote: none\n"
        "pipeline:\n  file: pipeline/pipeline.py\n  parameters: {scale: '4'}\n"
    )
    (root / "template" / "pipeline" / "pipeline.py.jinja").write_text(
        PIPELINE.replace("{name}", "{{ project_name }}")
    )
    if version == 2:
        (root / "template" / "CHANGES.md").write_text("v2: a better footer\n")
    return root


@pytest.fixture
def template_v1(tmp_path: Path) -> Path:
    return write_template(tmp_path / "tiny-template", 1)
