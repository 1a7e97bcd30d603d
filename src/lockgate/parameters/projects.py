"""A project's variables and secrets: parameters under ``/lockgate/ENV/projects/NAME/``.

Variables (plain) are written when the project is created; secrets (secure, encrypted at rest)
are set by the team with ``lockgate project secret set``. Both are handed to the project's CI
runs and to the steps of the executions its CI starts, as environment variables; secret values
are masked in CI logs and never printed by Lockgate.
"""

from __future__ import annotations

from lockgate.platform import Environment
from lockgate.store import params


def variables_prefix(env: str, project: str) -> str:
    return f"/lockgate/{env}/projects/{project}/variables/"


def secrets_prefix(env: str, project: str) -> str:
    return f"/lockgate/{env}/projects/{project}/secrets/"


def variables(env: Environment, project: str) -> dict[str, str]:
    prefix = variables_prefix(env.name, project)
    with env.store.read() as session:
        stored = params.list_parameters(session, prefix)
    return {p.name.removeprefix(prefix): p.value for p in stored if not p.secure}


def secrets(env: Environment, project: str) -> dict[str, str]:
    """The project's secrets in ``env``, in clear: only for its CI runs' and steps' processes."""
    from lockgate.auth import secrets as crypto

    prefix = secrets_prefix(env.name, project)
    with env.store.read() as session:
        stored = params.list_parameters(session, prefix)
    return {
        p.name.removeprefix(prefix): crypto.decrypt(env.keys, p.value) for p in stored if p.secure
    }


def environment(env: Environment, project: str) -> dict[str, str]:
    """Variables and secrets together, as a process environment."""
    return {**variables(env, project), **secrets(env, project)}
