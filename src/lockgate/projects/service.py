"""Projects: a repository made from a template, and what it owns in each environment.

``create`` renders the template, commits it to ``repos/projects/NAME.git`` (whose post-receive
hook queues a CI build on each push), provisions every deployment environment
(:mod:`lockgate.projects.provision`) and, with ``checkout``, clones a working copy. Any failure
undoes everything done so far and says what failed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.config.names import check_name, check_principal
from lockgate.errors import (
    ConflictError,
    LockgateError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from lockgate.platform import Environment, Platform
from lockgate.projects import githost, provision, templates
from lockgate.projects.manifest import load as load_manifest
from lockgate.store import projects as db

#: Project names stay short so the names derived from them (roles, rules) fit the naming rule.
MAX_NAME = 30


@dataclass(frozen=True)
class Created:
    project: db.Project
    repo: Path
    checkout: Path | None
    provisioned: dict[str, list[str]]


def check_project_name(name: str) -> str:
    check_name(name, "project")
    if len(name) > MAX_NAME:
        raise ValidationError(
            f"project name {name!r} is longer than {MAX_NAME} characters.",
            hint="Roles and rules are named after the project; pick a shorter name.",
        )
    return name


def _approvers(
    platform: Platform, environments: list[str], given: dict[str, list[str]], creator: Principal
) -> dict[str, list[str]]:
    """Required approvers per environment. The last one is gated by default: by the creator
    when they may approve models there, else by everyone who may. Each approver must hold
    ``model:approve`` in that environment, and only someone who holds it may lift a gate (an
    empty list) — so creating a project never hands its creator more than they had."""
    from lockgate.auth.policy import is_allowed

    unknown = set(given) - set(environments)
    if unknown:
        raise ValidationError(
            f"--approvers names {', '.join(sorted(unknown))}, not a deployment environment "
            f"of this project ({', '.join(environments)})."
        )
    out: dict[str, list[str]] = {env: [] for env in environments}
    if len(environments) > 1:
        last = environments[-1]
        out[last] = (
            [creator.name]
            if is_allowed(platform.env(last).store, creator, "model:approve")
            else _who_may_approve(platform, last)
        )
        if not out[last] and last not in given:
            raise ValidationError(
                f"nobody may approve models in {last}, so nobody could release deploys there.",
                hint=f"Bind a lead there, or name approvers: --approvers {last}=user:NAME",
            )
    for env, principals in given.items():
        if env == environments[0] and principals:
            raise ValidationError(
                f"{env} is where the project builds; approvals start with the next environment."
            )
        store = platform.env(env).store
        if not principals and not is_allowed(store, creator, "model:approve"):
            raise PermissionDeniedError(
                f"{creator} may not lift the approval gate of {env}: that needs model:approve there."
            )
        for name in principals:
            if not is_allowed(store, Principal(check_principal(name)), "model:approve"):
                raise ValidationError(
                    f"{name} may not approve models in {env}, so cannot approve deploys there.",
                    hint=f"Bind {name} to a role granting model:approve in {env} first.",
                )
        out[env] = list(principals)
    return out


def _who_may_approve(platform: Platform, env: str) -> list[str]:
    from lockgate.config.roles import grants
    from lockgate.store import iam

    with platform.env(env).store.read() as session:
        able = {
            role.name
            for role in iam.list_roles(session)
            if any(grants(p, "model:approve") for p in role.permissions)
        }
        bound = iam.list_bindings(session)
    return sorted({p for p, role in bound if role in able and p.startswith("user:")})


def create(
    platform: Platform,
    principal: Principal,
    name: str,
    template_name: str,
    *,
    options: dict[str, str] | None = None,
    version: str | None = None,
    checkout: Path | None = None,
    approvers: dict[str, list[str]] | None = None,
) -> Created:
    check_project_name(name)
    first = platform.ready()
    for env in platform.env_names:
        platform.ready(env)
    authorize(first.store, principal, "project:write", env=first.name, target=f"project {name}")
    template = templates.get(platform.home, template_name)
    version = templates.check_version(template, version)
    answers = templates.check_options(template, options or {})
    environments = platform.env_names if template.environments == "all" else platform.env_names[:1]
    for env in environments:
        with platform.env(env).store.read() as session:
            if db.get_project(session, name) is not None:
                raise ConflictError(
                    f"project {name} already exists.",
                    hint="Pick another name, or see `lockgate project show " + name + "`.",
                )
    repo = githost.project_repo(platform.home, name)
    if repo.exists():
        raise ConflictError(
            f"a repository for {name} already exists at {repo} (a deleted project's, kept).",
            hint=f"Pick another name, or remove it with `lockgate project delete {name} --purge`.",
        )
    if checkout is not None and checkout.exists() and any(checkout.iterdir()):
        raise ConflictError(f"{checkout} exists and is not empty.", hint="Choose another --dir.")
    protection = _approvers(platform, environments, approvers or {}, principal)

    provisioned: dict[str, list[str]] = {}
    repo_created = False
    step = "rendering the template"
    try:
        with tempfile.TemporaryDirectory(prefix="lockgate-project-") as scratch:
            work = Path(scratch) / name
            templates.render(
                platform.home,
                template.name,
                version,
                work,
                {"project_name": name, "environments": environments, **answers},
            )
            config = load_manifest(work)
            if config.project != name or config.environments != environments:
                raise ValidationError(
                    f"template {template.name} rendered a lockgate.yaml for project "
                    f"{config.project!r} in {config.environments}, not {name!r} in {environments}."
                )
            step = "creating the repository"
            githost.init_bare(repo)
            repo_created = True
            githost.commit_tree(repo, work, f"Create {name} from {template.name} {version}")
            githost.install_hook(platform.home, repo, name)
        for index, env in enumerate(environments):
            step = f"provisioning {env}"
            plan = provision.Plan(
                name,
                env,
                index,
                environments,
                config.model_group,
                config.promote,
                protection[env],
                template.name,
                version,
                str(repo),
                {k: str(v) for k, v in answers.items()},
                principal.name,
            )
            provisioned[env] = provision.apply(platform.env(env), plan)
        if checkout is not None:
            step = f"cloning the working copy into {checkout}"
            githost.clone(repo, checkout)
    except LockgateError as exc:
        _roll_back(platform, name, repo if repo_created else None, provisioned, principal)
        raise type(exc)(
            f"creating project {name} failed while {step}: {exc.message} "
            "Everything created was removed.",
            hint=exc.hint,
        ) from exc
    except OSError as exc:
        _roll_back(platform, name, repo if repo_created else None, provisioned, principal)
        raise ConflictError(
            f"creating project {name} failed while {step}: {exc}. Everything created was removed."
        ) from exc
    with first.store.read() as session:
        stored = db.get_project(session, name)
    assert stored is not None
    return Created(stored, repo, checkout, provisioned)


def _roll_back(
    platform: Platform,
    name: str,
    repo: Path | None,
    provisioned: dict[str, list[str]],
    principal: Principal,
) -> None:
    for env, addresses in reversed(list(provisioned.items())):
        provision.remove(platform.env(env), name, addresses, principal.name, purge_runs=True)
    if repo is not None and repo.exists():  # only the repository this call created
        shutil.rmtree(repo)


def _footprints(platform: Platform, name: str) -> dict[str, db.Project]:
    out = {}
    for env in platform.env_names:
        with platform.ready(env).store.read() as session:
            found = db.get_project(session, name)
        if found is not None:
            out[env] = found
    return out


def get(platform: Platform, principal: Principal, name: str) -> dict[str, Any]:
    """The project as the environments hold it: template, repository, protection rules."""
    footprints = _footprints(platform, name)
    if not footprints:
        raise NotFoundError(f"there is no project {name}.", hint="List them: lockgate project list")
    first_env, first = next(iter(footprints.items()))
    authorize(platform.env(first_env).store, principal, "project:read", env=first_env, target=name)
    return {
        "name": name,
        "template": first.template,
        "template_version": first.template_version,
        "repo": first.repo,
        "clone": f"git clone {first.repo}",
        "options": first.options,
        "created_at": first.created_at,
        "created_by": first.created_by,
        "environments": {
            env: {
                "required_approvers": p.required_approvers,
                "ci_principal": p.ci_principal,
                "resources": p.resources,
            }
            for env, p in footprints.items()
        },
    }


def list_projects(platform: Platform, principal: Principal) -> list[db.Project]:
    first = platform.ready()
    authorize(first.store, principal, "project:read", env=first.name, target="projects")
    with first.store.read() as session:
        return db.list_projects(session)


@dataclass(frozen=True)
class Updated:
    project: str
    old_version: str
    new_version: str
    conflicts: list[str]
    branch: str
    commit: str | None


def update(
    platform: Platform, principal: Principal, name: str, *, to: str | None = None
) -> Updated:
    """Three-way update of the project's repository to a newer template version.

    Clean: committed to ``main`` (a push: CI builds it). Conflicts: committed with their markers
    to the branch ``template-update/VERSION`` for the user to resolve and merge; ``main`` and
    every environment resource are left as they were.
    """
    footprints = _footprints(platform, name)
    if not footprints:
        raise NotFoundError(f"there is no project {name}.", hint="List them: lockgate project list")
    first_env = next(iter(footprints))
    authorize(platform.env(first_env).store, principal, "project:write", env=first_env, target=name)
    current = footprints[first_env]
    template = templates.get(platform.home, current.template)
    target = templates.check_version(template, to)
    from packaging.version import InvalidVersion, Version

    try:
        newer = Version(target) > Version(current.template_version)
    except InvalidVersion:
        raise ValidationError(
            f"{target!r} or {current.template_version!r} is not a version number.",
            hint=f"Versions: {', '.join(template.versions)}.",
        ) from None
    if not newer:
        raise ValidationError(
            f"project {name} is at {current.template} {current.template_version}; {target} is not newer.",
            hint=f"Versions: {', '.join(template.versions)}.",
        )
    repo = Path(current.repo)
    with tempfile.TemporaryDirectory(prefix="lockgate-update-") as scratch:
        work = Path(scratch) / name
        githost.clone(repo, work)
        conflicts = templates.update(work, target)
        branch = githost.DEFAULT_BRANCH if not conflicts else f"template-update/{target}"
        githost.git("add", "--all", cwd=work)
        message = f"Update {current.template} {current.template_version} → {target}"
        if conflicts:
            message += " (conflicts to resolve: " + ", ".join(conflicts) + ")"
            githost.git("checkout", "--quiet", "-b", branch, cwd=work)
        githost.git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        # The update branch is Lockgate's own: a new attempt replaces an unmerged one.
        githost.git(
            "push", "--quiet", "origin", f"{'+' if conflicts else ''}HEAD:{branch}", cwd=work
        )
        commit = githost.git("rev-parse", "HEAD", cwd=work)
    if not conflicts:
        for env in footprints:
            with platform.env(env).store.transaction() as session:
                stored = db.get_project(session, name)
                assert stored is not None
                db.put_project(
                    session,
                    db.Project(
                        **{**stored.to_dict(), "template_version": target, "updated_at": _now()}
                    ),
                )
                audit.record(
                    session,
                    actor=principal.name,
                    action="project.update",
                    target=name,
                    details={"from": current.template_version, "to": target, "commit": commit},
                )
    return Updated(name, current.template_version, target, conflicts, branch, commit)


def delete(
    platform: Platform, principal: Principal, name: str, *, purge: bool = False
) -> dict[str, Any]:
    """Remove what the project provisioned; the repository too with ``purge``.

    Model versions, endpoints and batch outputs stay: they may serve or be audited.
    """
    footprints = _footprints(platform, name)
    repo = githost.project_repo(platform.home, check_project_name(name))
    if not footprints and not (purge and repo.exists()):
        raise NotFoundError(f"there is no project {name}.", hint="List them: lockgate project list")
    first = platform.ready()
    authorize(first.store, principal, "project:write", env=first.name, target=name)
    removed: list[str] = []
    kept: list[str] = []
    for env, footprint in reversed(list(footprints.items())):
        handle = platform.env(env)
        provision.remove(handle, name, footprint.resources, principal.name, purge_runs=purge)
        gone, left = _leftovers(handle, name, principal.name)
        removed += [f"{a} in {env}" for a in footprint.resources] + gone
        kept += left
    if purge and repo.exists():
        shutil.rmtree(repo)
    return {
        "project": name,
        "environments": list(footprints),
        "removed": removed,
        "kept": kept,
        "repo": "removed" if purge else f"kept at {repo} (--purge removes it)",
    }


def _leftovers(env: Environment, name: str, actor: str) -> tuple[list[str], list[str]]:
    """Stop the schedules the project's CI made (they would go on running its jobs); name the
    endpoints it serves, which stay until someone deletes them."""
    from lockgate.store import endpoints as endpoint_db
    from lockgate.store import schedules as schedule_db

    removed, kept = [], []
    with env.store.transaction() as session:
        ci_principal = provision.ci_principal(name, env.name)
        for schedule in schedule_db.list_all(session):
            if schedule.name in ci_schedules(name) and schedule.created_by == ci_principal:
                schedule_db.remove(session, schedule.name)
                audit.record(session, actor=actor, action="schedule.delete", target=schedule.name)
                removed.append(f"schedule {schedule.name} in {env.name}")
        for endpoint in endpoint_db.list_all(session):
            if endpoint.name == name:
                kept.append(
                    f"endpoint {name} in {env.name} (lockgate endpoint delete {name} --env {env.name})"
                )
    return removed, kept


def ci_schedules(project: str) -> tuple[str, str]:
    """The schedules ``ci deploy`` keeps: the batch job's and the pipeline's."""
    return (f"{project}-batch", f"{project}-train")


def _now() -> str:
    from lockgate.ids import isoformat, utcnow

    return isoformat(utcnow())


# --- secrets --------------------------------------------------------------------------------------

SECRET_KEY_RE = r"^[A-Z_][A-Z0-9_]{0,63}$"


def set_secret(
    platform: Platform,
    principal: Principal,
    name: str,
    key: str,
    value: str,
    *,
    envs: list[str] | None = None,
) -> list[str]:
    """Store secret ``key`` of project ``name`` (encrypted) in ``envs`` (default: all of the
    project's); its CI runs and pipeline steps get it as ``$KEY``. Returns the environments."""
    import re

    from lockgate.parameters import service as parameters
    from lockgate.parameters.projects import secrets_prefix

    if not re.match(SECRET_KEY_RE, key):
        raise ValidationError(
            f"secret name {key!r} is not an environment variable name.",
            hint="Use capitals, digits and '_', e.g. WAREHOUSE_TOKEN.",
        )
    footprints = _footprints(platform, name)
    if not footprints:
        raise NotFoundError(f"there is no project {name}.", hint="List them: lockgate project list")
    targets = envs or list(footprints)
    unknown = [e for e in targets if e not in footprints]
    if unknown:
        raise ValidationError(
            f"{', '.join(unknown)} is not a deployment environment of {name} ({', '.join(footprints)})."
        )
    for env in targets:
        parameters.put(
            platform,
            principal,
            secrets_prefix(env, name) + key,
            value,
            secure=True,
            description=f"secret of project {name}",
        )
    return targets


def list_secrets(platform: Platform, principal: Principal, name: str) -> list[dict[str, Any]]:
    """The project's secrets per environment: names, versions, who set them; never values."""
    from lockgate.parameters import service as parameters
    from lockgate.parameters.projects import secrets_prefix

    out = []
    for env in _footprints(platform, name):
        prefix = secrets_prefix(env, name)
        for p in parameters.list_parameters(platform, principal, env=env, prefix=prefix):
            out.append(
                {
                    "environment": env,
                    "name": p.name.removeprefix(prefix),
                    "version": p.version,
                    "updated_at": p.updated_at,
                    "updated_by": p.updated_by,
                }
            )
    return out
