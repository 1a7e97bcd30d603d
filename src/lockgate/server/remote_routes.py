"""The API routes remote CLIs and CI jobs use: CI runs, approvals, model approval.

Each acts as the bearer token's principal, in the token's environment (the path's), through the
same service functions as the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from lockgate.auth.credentials import Authenticated
from lockgate.errors import PermissionDeniedError

if TYPE_CHECKING:
    from lockgate.platform import Platform


class CiRequest(BaseModel):
    commit: str = Field(pattern=r"^[0-9a-f]{40}$", description="The commit to build or deploy.")


class RunRequest(BaseModel):
    parameters: dict[str, str] = Field(default_factory=dict)


class Comment(BaseModel):
    comment: str = Field(default="", max_length=2000)


def add_routes(app: FastAPI, platform: Platform, needs_token: Any) -> None:
    from lockgate.projects import ci
    from lockgate.registry import service as registry

    @app.post("/api/v1/environments/{env}/projects/{project}/ci/{kind}", tags=["ci"])
    def queue_ci(
        env: str, project: str, kind: str, body: CiRequest, who: Authenticated = needs_token
    ) -> dict[str, Any]:
        """Queue ``ci build|deploy|test`` of a pushed commit; the daemon runs it as the project's
        CI principal. The caller is that principal (e.g. a CI job's exchanged OIDC token) or
        holds project:write."""
        run = ci.queue_commit(platform, who.principal, project, kind, env, body.commit)
        return {"environment": env, **run.to_dict()}

    @app.get("/api/v1/environments/{env}/ci/runs", tags=["ci"])
    def list_runs(
        env: str, project: str | None = None, who: Authenticated = needs_token
    ) -> list[dict[str, Any]]:
        """CI runs of ``env`` (optionally one project's), newest first."""
        return [
            {"environment": e, **r.to_dict()}
            for e, r in ci.list_runs(platform, who.principal, project)
            if e == env
        ]

    @app.get("/api/v1/environments/{env}/ci/runs/{run_id}", tags=["ci"])
    def show_run(env: str, run_id: str, who: Authenticated = needs_token) -> dict[str, Any]:
        """One CI run with its log so far."""
        found_env, run = ci.get(platform, who.principal, run_id)
        if found_env != env:
            raise PermissionDeniedError(f"CI run {run_id} is in {found_env}, not {env}.")
        return {
            "environment": env,
            **run.to_dict(),
            "log": ci.log_text(platform, who.principal, run_id),
        }

    @app.post("/api/v1/environments/{env}/ci/runs/{run_id}/approve", tags=["ci"])
    def approve_run(
        env: str, run_id: str, body: Comment, who: Authenticated = needs_token
    ) -> dict[str, Any]:
        """Release a deploy waiting for its required approvers (audited)."""
        found_env, _ = ci.get(platform, who.principal, run_id)
        if found_env != env:
            raise PermissionDeniedError(f"CI run {run_id} is in {found_env}, not {env}.")
        return {
            "environment": env,
            **ci.approve(platform, who.principal, run_id, comment=body.comment).to_dict(),
        }

    @app.post("/api/v1/environments/{env}/pipelines/{ref}/runs", tags=["pipelines"])
    def run_pipeline(
        env: str, ref: str, body: RunRequest, who: Authenticated = needs_token
    ) -> dict[str, Any]:
        """Start an execution of NAME or NAME@VERSION; the daemon's runner drives it."""
        from dataclasses import asdict

        from lockgate.pipelines import service as pipelines

        execution = pipelines.start(platform, who.principal, ref, body.parameters, env=env)
        return asdict(execution)

    @app.get("/api/v1/environments/{env}/executions/{execution_id}", tags=["pipelines"])
    def show_execution(
        env: str, execution_id: str, who: Authenticated = needs_token
    ) -> dict[str, Any]:
        """An execution with its steps, outputs and metrics."""
        from lockgate.pipelines import service as pipelines

        return pipelines.describe(platform, who.principal, execution_id, env=env)

    @app.get("/api/v1/environments/{env}/pipelines", tags=["pipelines"])
    def list_pipelines(env: str, who: Authenticated = needs_token) -> list[dict[str, Any]]:
        """The pipelines of ``env`` with their latest versions."""
        from lockgate.pipelines import service as pipelines

        return pipelines.list_pipelines(platform, who.principal, env=env)

    @app.get("/api/v1/environments/{env}/models/{group}/{version}", tags=["models"])
    def show_version(
        env: str, group: str, version: int, who: Authenticated = needs_token
    ) -> dict[str, Any]:
        """One model version: artifact, status, metrics, lineage and card."""
        return registry.get(platform, who.principal, f"{group}/{version}", env=env).to_dict()

    @app.get("/api/v1/environments/{env}/models/{group}", tags=["models"])
    def list_versions(
        env: str, group: str, who: Authenticated = needs_token
    ) -> list[dict[str, Any]]:
        """A model group's versions with their approval status and metrics."""
        return [v.to_dict() for v in registry.versions(platform, who.principal, group, env=env)]

    @app.post("/api/v1/environments/{env}/models/{group}/{version}/approve", tags=["models"])
    def approve_model(
        env: str, group: str, version: int, body: Comment, who: Authenticated = needs_token
    ) -> dict[str, Any]:
        """Approve a model version, under the registry's approval policy."""
        done = registry.set_status(
            platform,
            who.principal,
            f"{group}/{version}",
            registry.APPROVED,
            comment=body.comment,
            env=env,
        )
        return done.to_dict()
