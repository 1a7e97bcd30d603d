"""An opened platform home: its ``platform.toml`` and a handle on each environment."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from lockgate.artifacts.store import ArtifactStore
from lockgate.auth.keys import EnvKeys
from lockgate.config.home import Home
from lockgate.config.loader import load_spec
from lockgate.errors import NotFoundError
from lockgate.store import MetadataStore

if TYPE_CHECKING:
    from lockgate.config.spec import EnvironmentSpec, PlatformSpec


_current_schema: set[str] = set()


@dataclass(frozen=True)
class Environment:
    """One environment: its resolved spec and its stores and keys."""

    name: str
    spec: EnvironmentSpec
    store: MetadataStore
    artifacts: ArtifactStore
    keys: EnvKeys


@dataclass(frozen=True)
class Platform:
    home: Home
    spec: PlatformSpec

    @classmethod
    def open(cls, home: Home) -> Platform:
        """Load and validate the home's ``platform.toml``."""
        return cls(home, load_spec(home.platform_file))

    @property
    def env_names(self) -> list[str]:
        """The environments, in promotion order."""
        return list(self.spec.environments)

    @cached_property
    def _environments(self) -> dict[str, Environment]:
        root = str(self.home.root)
        out = {}
        for name in self.spec.environments:
            spec = self.spec.environment(name, root)
            out[name] = Environment(
                name=name,
                spec=spec,
                store=MetadataStore(spec.metadata_url),
                artifacts=ArtifactStore(spec.artifact_url),
                keys=EnvKeys(self.home.keys_dir(name)),
            )
        return out

    def ready(self, name: str | None = None) -> Environment:
        """Environment ``name`` (default: the first), which must exist at the newest schema."""
        from lockgate.errors import NotInitialisedError
        from lockgate.store.migrate import SCHEMA_HEAD

        handle = self.env(name or self.env_names[0])
        if handle.store.url in _current_schema:  # a store at the newest schema stays there
            return handle
        revision = handle.store.revision() if handle.store.exists() else None
        if revision is None:
            raise NotInitialisedError(
                f"environment {handle.name} has no metadata store.", hint="Run `lockgate init`."
            )
        if revision != SCHEMA_HEAD:
            raise NotInitialisedError(
                f"the metadata store of {handle.name} has schema {revision}; this release needs {SCHEMA_HEAD}.",
                hint="Run `lockgate infra apply` to upgrade it.",
            )
        _current_schema.add(handle.store.url)
        return handle

    def env(self, name: str) -> Environment:
        """Environment ``name``, or a :class:`NotFoundError` listing the declared ones."""
        try:
            return self._environments[name]
        except KeyError:
            raise NotFoundError(
                f"environment {name!r} is not declared in {self.home.platform_file}.",
                hint=f"Declared environments: {', '.join(self.env_names)}.",
            ) from None
