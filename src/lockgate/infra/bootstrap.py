"""``lockgate init``: a new platform home, and the bootstrap of each environment.

The bootstrap creates what everything else stands on (the metadata store at the newest schema,
the artifact store, the keys, the roles and bindings) and records it as the first state version,
so ``infra plan`` then shows the rest of ``platform.toml``. Running it again changes nothing; on
a home whose ``platform.toml`` gained an environment, it bootstraps that environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.config.loader import parse_spec
from lockgate.config.names import check_name
from lockgate.config.template import render_platform_toml
from lockgate.errors import ConflictError, ValidationError
from lockgate.infra.plan import Change
from lockgate.infra.resources import bootstrap_kinds
from lockgate.infra.service import apply, state_store
from lockgate.platform import Platform

DEFAULT_ENVIRONMENTS = ["dev", "preprod", "prod"]
SINGLE_ENVIRONMENT = ["dev"]


@dataclass(frozen=True)
class InitResult:
    home: Home
    created_home: bool
    applied: list[Change]

    @property
    def changed(self) -> bool:
        return self.created_home or bool(self.applied)


def init(
    home: Home,
    principal: Principal,
    *,
    org: str | None = None,
    environments: list[str] | None = None,
) -> InitResult:
    """Create the home (when new) and bootstrap every declared environment."""
    created = False
    if home.is_initialised():
        platform = Platform.open(home)
        _check_matches(platform, org, environments)
    else:
        envs = environments or DEFAULT_ENVIRONMENTS
        for env in envs:
            check_name(env, "environment")
        if len(set(envs)) != len(envs):
            raise ValidationError(f"environments {envs} name one environment twice.")
        org_name = check_name(org or "lockgate", "organisation")
        text = render_platform_toml(org_name, envs, principal.name)
        parse_spec(text, "the generated platform.toml")
        home.root.mkdir(parents=True, exist_ok=True)
        _write_new(home, text)
        created = True
        platform = Platform.open(home)
    state_store(platform).ensure()
    home.run_dir.mkdir(exist_ok=True)
    result = apply(
        platform, principal, confirm=lambda plan: True, kinds=bootstrap_kinds(), operation="init"
    )
    return InitResult(home, created, result.applied)


def _check_matches(platform: Platform, org: str | None, environments: list[str] | None) -> None:
    spec_org = platform.spec.platform.org
    if org is not None and org != spec_org:
        raise ConflictError(
            f"{platform.home.root} is already initialised for organisation {spec_org!r}.",
            hint=f"Edit {platform.home.platform_file} to change it, or choose another --home.",
        )
    if environments is not None and environments != platform.env_names:
        raise ConflictError(
            f"{platform.home.root} is already initialised with environments "
            f"{', '.join(platform.env_names)}.",
            hint=f"Edit {platform.home.platform_file} to add or remove environments, then run "
            "`lockgate init` (new environments) and `lockgate infra apply`.",
        )


def _write_new(home: Home, text: str) -> None:
    tmp = home.platform_file.with_name(f".{home.platform_file.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, home.platform_file)  # fails if another init won the race
    except FileExistsError:
        raise ConflictError(
            f"{home.platform_file} appeared while initialising.", hint="Run `lockgate init` again."
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
