"""``lockgate.yaml``: a project's configuration, read by ``lockgate ci …``.

project: churn
environments: [dev, preprod, prod]      # the deployment environments, in order
model_group: churn
promote: model                          # model | pipeline | none
pipeline:
  file: pipeline/pipeline.py            # FILE[:NAME], relative to the repository
  parameters: {mse_threshold: "6.0"}
  per_environment:                      # extra parameters in one environment
    prod: {source: data/abalone.csv}
  schedule: "0 4 * * *"                 # promote: pipeline — runs after the first environment
unit_tests: tests/unit                  # run with pytest by `ci build`
deploy:
  realtime: {endpoint: churn, instances: 1}
  batch: {input: pipeline/data/batch.csv, schedule: "0 3 * * *"}
endpoint_tests: tests/endpoint/cases.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticError

from lockgate.config.fields import Name
from lockgate.errors import ValidationError

FILE = "lockgate.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineConfig(_Section):
    file: str
    parameters: dict[str, str] = Field(default_factory=dict)
    per_environment: dict[Name, dict[str, str]] = Field(default_factory=dict)
    schedule: str | None = None

    def parameters_for(self, env: str) -> dict[str, str]:
        return {**self.parameters, **self.per_environment.get(env, {})}


class RealtimeConfig(_Section):
    endpoint: Name
    instances: int = Field(default=1, ge=1, le=16)


class BatchConfig(_Section):
    #: The rows to score, relative to the repository (copied into the environment's artifacts).
    input: str
    schedule: str | None = "0 3 * * *"


class DeployConfig(_Section):
    realtime: RealtimeConfig | None = None
    batch: BatchConfig | None = None


class ProjectConfig(_Section):
    project: Name
    environments: list[Name] = Field(min_length=1)
    model_group: Name
    promote: Literal["model", "pipeline", "none"] = "model"
    pipeline: PipelineConfig
    unit_tests: str | None = None
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    endpoint_tests: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ProjectConfig:
        if len(set(self.environments)) != len(self.environments):
            raise ValueError("environments lists an environment twice")
        if self.promote == "none" and len(self.environments) > 1:
            raise ValueError("promote: none means one environment; list only the first")
        if self.endpoint_tests and self.deploy.realtime is None:
            raise ValueError("endpoint_tests needs deploy.realtime (an endpoint to test)")
        unknown = set(self.pipeline.per_environment) - set(self.environments)
        if unknown:
            raise ValueError(
                f"pipeline.per_environment names {sorted(unknown)}, not in environments"
            )
        return self


def load(root: Path) -> ProjectConfig:
    """The ``lockgate.yaml`` of the checkout at ``root``, validated."""
    import yaml

    path = root / FILE
    if not path.is_file():
        raise ValidationError(
            f"{root} has no {FILE}.",
            hint="Run `lockgate ci …` in a project's checkout (lockgate project create … --dir PATH).",
        )
    try:
        raw = yaml.safe_load(path.read_text())
        return ProjectConfig.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path} is not valid YAML: {exc}") from exc
    except PydanticError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationError(f"{path} is not valid: {problems}") from exc


def inside(root: Path, relative: str, what: str) -> Path:
    """``root/relative``, refused when it escapes the checkout."""
    target = (root / relative).resolve()
    if target != root.resolve() and root.resolve() not in target.parents:
        raise ValidationError(f"{what} {relative!r} is outside the project.")
    return target
