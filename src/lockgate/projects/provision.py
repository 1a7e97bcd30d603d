"""What a project owns in each environment, created as one unit and removed exactly.

Per environment: the project's artifact location, its CI principal and roles (the principal of
an environment may change that environment and read the one before it, nothing else), its
variables, the model group, the automation rule "approved → deploy" (first environment, when
models move on), and the project record with the deployment environment's protection rules.
Each environment's store changes in one transaction; a failure in a later environment removes
what the earlier ones got (:func:`remove`), so nothing is left half-created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from lockgate.auth import audit
from lockgate.errors import ConflictError
from lockgate.ids import isoformat, utcnow
from lockgate.parameters.projects import secrets_prefix, variables_prefix
from lockgate.platform import Environment
from lockgate.store import automation, iam, params, registry
from lockgate.store import projects as db

#: What the CI principal may do in its own environment: the first one builds, later ones deploy.
BUILD_PERMISSIONS = (
    "env:read",
    "pipeline:*",
    "model:read",
    "model:write",
    "events:read",
    "project:read",  # its own runs and logs, from a CI job
)
DEPLOY_PERMISSIONS = (
    "env:read",
    "pipeline:*",
    "model:read",
    "model:approve",  # promotion of an already approved version into this environment
    "endpoint:*",
    "batch:*",
    "events:read",
    "project:read",
)
READ_PERMISSIONS = ("env:read", "pipeline:read", "model:read")


def ci_principal(project: str, env: str) -> str:
    return f"service:{project}-ci-{env}"


def ci_role(project: str) -> str:
    return f"{project}-ci"


def read_role(project: str) -> str:
    return f"{project}-ci-read"


def deploy_rule(project: str) -> str:
    return f"{project}-deploy"


@dataclass(frozen=True)
class Plan:
    """What to create for one project in one environment."""

    project: str
    env: str
    index: int
    environments: list[str]
    model_group: str
    promote: str
    approvers: list[str]
    template: str
    template_version: str
    repo: str
    options: dict[str, Any]
    actor: str

    @property
    def next_env(self) -> str | None:
        return (
            self.environments[self.index + 1] if self.index + 1 < len(self.environments) else None
        )


def apply(env: Environment, plan: Plan) -> list[str]:
    """Create the project's resources in ``env``; the addresses created. Raises on a clash
    (nothing in this environment is then left behind)."""
    created: list[str] = []
    location = ("projects", plan.project)
    if not env.artifacts.exists(*location):
        env.artifacts.ensure(*location)
        created.append(f"artifacts:{'/'.join(location)}")
    try:
        with env.store.transaction() as session:
            created += _apply_in_store(session, env, plan, env.artifacts.path(*location))
    except Exception:
        if created:
            env.artifacts.remove(*location)
        raise
    return created


def _apply_in_store(session: Session, env: Environment, plan: Plan, location: str) -> list[str]:
    now = isoformat(utcnow())
    if db.get_project(session, plan.project) is not None:
        raise ConflictError(f"project {plan.project} already exists in {env.name}.")
    created: list[str] = []
    own: tuple[str, ...] = BUILD_PERMISSIONS if plan.index == 0 else DEPLOY_PERMISSIONS
    if plan.promote == "pipeline" and plan.index > 0:
        own += ("model:write",)  # the promoted pipeline registers its model in each environment
    roles: list[tuple[str, tuple[str, ...]]] = [(ci_role(plan.project), own)]
    if plan.next_env:
        roles.append((read_role(plan.project), READ_PERMISSIONS))
    stale = _bindings_of(session, plan.project, plan.environments)
    if stale:
        raise ConflictError(
            f"{env.name} still has bindings of project {plan.project}'s CI principals or roles "
            f"({', '.join(f'{p} → {r}' for p, r in stale[:3])}); a new project of that name "
            "would inherit them.",
            hint="Remove them (platform.toml [[bindings]], then lockgate infra apply) or pick another name.",
        )
    for name, permissions in roles:
        if iam.get_role(session, name) is not None:
            raise ConflictError(
                f"role {name} already exists in {env.name}; project {plan.project} would own it.",
                hint="Pick another project name, or remove that role.",
            )
        iam.put_role(
            session,
            iam.Role(name, f"CI of project {plan.project} (managed by Lockgate)", permissions),
        )
        created.append(f"role:{name}")
    bindings = [(ci_principal(plan.project, env.name), ci_role(plan.project))]
    if plan.next_env:
        bindings.append((ci_principal(plan.project, plan.next_env), read_role(plan.project)))
    for principal, role in bindings:
        iam.add_binding(session, principal, role)
        created.append(f"binding:{principal}={role}")
    variables = {
        "PROJECT": plan.project,
        "ENVIRONMENT": env.name,
        "MODEL_GROUP": plan.model_group,
        "ARTIFACT_LOCATION": location,
    }
    for key, value in variables.items():
        name = variables_prefix(env.name, plan.project) + key
        if params.get_parameter(session, name) is not None:
            raise ConflictError(f"parameter {name} already exists in {env.name}.")
        params.put_parameter(
            session,
            name=name,
            secure=False,
            value=value,
            description=f"CI variable of project {plan.project}",
            managed=False,
            at=now,
            by=plan.actor,
        )
        created.append(f"param:{name}")
    registry.ensure_group(session, plan.model_group, now, plan.actor)
    if plan.index == 0 and plan.promote == "model" and plan.next_env:
        rule = deploy_rule(plan.project)
        if automation.get_rule(session, rule) is not None:
            raise ConflictError(f"automation rule {rule} already exists in {env.name}.")
        automation.put_rule(session, rule, _deploy_rule_spec(plan), plan.actor)
        created.append(f"rule:{rule}")
    db.put_project(
        session,
        db.Project(
            plan.project,
            plan.template,
            plan.template_version,
            plan.repo,
            plan.options,
            plan.environments,
            plan.approvers,
            ci_principal(plan.project, env.name),
            created,
            now,
            plan.actor,
            now,
        ),
    )
    audit.record(
        session,
        actor=plan.actor,
        action="project.create",
        target=plan.project,
        details={"template": f"{plan.template}@{plan.template_version}", "created": created},
    )
    return created


def _deploy_rule_spec(plan: Plan) -> dict[str, Any]:
    assert plan.next_env is not None
    return {
        "description": f"Project {plan.project}: an approved model deploys to {plan.next_env}.",
        "event": "ModelVersionApprovalChanged",
        "environments": [plan.env],
        "match": {"group": plan.model_group, "to": "Approved"},
        "action": {
            "kind": "ci",
            "project": plan.project,
            "command": "deploy",
            "environment": plan.next_env,
        },
        "max_attempts": 5,
        "backoff_s": 2.0,
    }


def _bindings_of(session: Session, project: str, environments: list[str]) -> list[tuple[str, str]]:
    """Bindings of the project's CI principals (any environment's) or to its roles."""
    principals = {ci_principal(project, env) for env in environments}
    roles = {ci_role(project), read_role(project)}
    return [(p, r) for p, r in iam.list_bindings(session) if p in principals or r in roles]


def remove(
    env: Environment, project: str, addresses: list[str], actor: str, *, purge_runs: bool
) -> None:
    """Remove what :func:`apply` created (the model group and its versions stay)."""
    with env.store.transaction() as session:
        for address in reversed(addresses):
            kind, _, name = address.partition(":")
            if kind == "role":
                iam.delete_role(session, name)
            elif kind == "binding":
                principal, _, role = name.partition("=")
                iam.delete_binding(session, principal, role)
            elif kind == "param":
                params.delete_parameter(session, name)
            elif kind == "rule":
                automation.delete_rule(session, name)
        footprint = db.get_project(session, project)
        everywhere = footprint.environments if footprint else [env.name]
        for principal, role in _bindings_of(session, project, everywhere):
            iam.delete_binding(session, principal, role)  # also any an admin added later
        for stored in params.list_parameters(session, secrets_prefix(env.name, project)):
            params.delete_parameter(session, stored.name)
        db.delete_project(session, project)
        if purge_runs:
            db.delete_runs(session, project)
        audit.record(
            session,
            actor=actor,
            action="project.delete",
            target=project,
            details={"removed": addresses},
        )
    for address in addresses:
        kind, _, name = address.partition(":")
        if kind == "artifacts" and not env.artifacts.files_in(*name.split("/")):
            env.artifacts.remove(*name.split("/"))
