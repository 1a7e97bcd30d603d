"""Project templates: copier templates kept as versioned repositories on the platform's git host.

The built-in templates ship in the package (``lockgate/templates/``) and are imported into
``repos/templates/NAME.git`` the first time they are needed, one tag per version; a newer
release of Lockgate adds its versions as new tags. ``lockgate template add`` imports another
template from a folder, a git repository or a git URL.

Templates are rendered with copier's ``unsafe`` switch off: a template that asks to run tasks,
migrations or Jinja extensions is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.config.names import check_name
from lockgate.errors import ConflictError, NotFoundError, ValidationError
from lockgate.platform import Platform
from lockgate.projects import githost

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "templates"
#: Answers Lockgate fills in itself; users set the rest with --option.
RESERVED = ("project_name", "environments")


@dataclass(frozen=True)
class Template:
    name: str
    versions: list[str]
    description: str
    builtin: bool
    #: "all" (every environment) or "first" (the first only).
    environments: str
    questions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def latest(self) -> str:
        return self.versions[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "latest": self.latest,
            "description": self.description,
            "builtin": self.builtin,
            "environments": self.environments,
            "options": {k: v for k, v in self.questions.items() if k not in RESERVED},
        }


def _builtin_index() -> dict[str, dict[str, str]]:
    with open(BUILTIN_DIR / "index.toml", "rb") as f:
        return dict(tomllib.load(f)["templates"])


@contextlib.contextmanager
def _repos_lock(home: Home) -> Iterator[None]:
    """One process at a time changes the template repositories."""
    root = githost.repos_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_builtin(home: Home) -> None:
    """Import each built-in template's current version, once."""
    index = _builtin_index()
    with _repos_lock(home):
        for name, meta in index.items():
            repo = githost.template_repo(home, name)
            if not (repo / "HEAD").is_file():
                githost.init_bare(repo)
            if meta["version"] not in githost.tags(repo):
                githost.commit_tree(
                    repo,
                    BUILTIN_DIR / name,
                    f"{name} {meta['version']} (built into Lockgate)",
                    tag=meta["version"],
                )


def _read_at(repo: Path, version: str, path: str) -> str | None:
    text = githost.git("show", f"{version}:{path}", cwd=repo, check=False)
    return text or None


def _questions(repo: Path, version: str) -> dict[str, dict[str, Any]]:
    import yaml

    text = _read_at(repo, version, "copier.yml") or _read_at(repo, version, "copier.yaml")
    if text is None:
        raise ValidationError(f"template version {version} in {repo} has no copier.yml.")
    raw = yaml.safe_load(text) or {}
    out: dict[str, dict[str, Any]] = {}
    for key, spec in raw.items():
        if key.startswith("_"):
            continue
        spec = spec if isinstance(spec, dict) else {"default": spec}
        out[key] = {k: spec[k] for k in ("type", "default", "help", "choices") if k in spec}
    return out


def _meta(repo: Path, version: str) -> dict[str, str]:
    text = _read_at(repo, version, "lockgate-template.toml")
    return dict(tomllib.loads(text)) if text else {}


def list_templates(home: Home) -> list[Template]:
    ensure_builtin(home)
    root = githost.repos_dir(home) / "templates"
    return [get(home, p.name.removesuffix(".git")) for p in sorted(root.glob("*.git"))]


def get(home: Home, name: str) -> Template:
    ensure_builtin(home)
    repo = githost.template_repo(home, check_name(name, "template"))
    if not (repo / "HEAD").is_file():
        known = ", ".join(t.name.removesuffix(".git") for t in sorted(repo.parent.glob("*.git")))
        raise NotFoundError(
            f"there is no template {name!r}.",
            hint=f"Templates: {known}. Add one with `lockgate template add PATH_OR_GIT_URL`.",
        )
    versions = githost.tags(repo)
    if not versions:
        raise NotFoundError(f"template {name} has no versions (no tags in {repo}).")
    builtin = _builtin_index().get(name)
    meta = builtin or _meta(repo, versions[-1])
    return Template(
        name,
        versions,
        meta.get("description", ""),
        builtin is not None,
        meta.get("environments", "all"),
        _questions(repo, versions[-1]),
    )


def repo_of(home: Home, name: str) -> Path:
    return githost.template_repo(home, name)


def check_version(template: Template, version: str | None) -> str:
    if version is None:
        return template.latest
    if version not in template.versions:
        raise NotFoundError(
            f"template {template.name} has no version {version!r}.",
            hint=f"Versions: {', '.join(template.versions)}.",
        )
    return version


def check_options(template: Template, options: dict[str, str]) -> dict[str, Any]:
    """The options as copier answers (typed by the question), or a clear error."""
    out: dict[str, Any] = {}
    for key, raw in options.items():
        if key in RESERVED:
            raise ValidationError(f"option {key} is set by Lockgate, not by --option.")
        question = template.questions.get(key)
        if question is None:
            known = ", ".join(k for k in template.questions if k not in RESERVED) or "none"
            raise ValidationError(
                f"template {template.name} has no option {key!r}.",
                hint=f"Its options: {known} (lockgate template show {template.name}).",
            )
        value: Any = raw
        if question.get("type") == "bool":
            if raw.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValidationError(f"option {key} takes true or false, not {raw!r}.")
            value = raw.lower() in ("true", "yes", "1")
        elif question.get("type") == "int":
            try:
                value = int(raw)
            except ValueError:
                raise ValidationError(f"option {key} takes a whole number, not {raw!r}.") from None
        choices = question.get("choices")
        if choices is not None:
            allowed = list(choices.values()) if isinstance(choices, dict) else list(choices)
            if value not in allowed:
                raise ValidationError(
                    f"option {key}={raw} is not one of {', '.join(map(str, allowed))}."
                )
        out[key] = value
    return out


def render(home: Home, name: str, version: str, target: Path, data: dict[str, Any]) -> None:
    """Render template ``name`` at ``version`` into the empty folder ``target``."""
    import copier
    from copier.errors import CopierError

    try:
        with quiet_git_identity():
            copier.run_copy(
                str(repo_of(home, name)),
                target,
                data=data,
                vcs_ref=version,
                defaults=True,
                unsafe=False,
                quiet=True,
                overwrite=True,
            )
    except (CopierError, ValueError) as exc:
        raise ValidationError(
            f"template {name} {version} failed to render: {exc}",
            hint="Check the --option values (lockgate template show " + name + ").",
        ) from exc


def update(checkout: Path, version: str) -> list[str]:
    """Three-way update of the project checkout to template ``version``; the files left with
    conflict markers (empty when the update merged cleanly)."""
    import copier
    from copier.errors import CopierError

    try:
        with quiet_git_identity():
            copier.run_update(
                checkout,
                vcs_ref=version,
                defaults=True,
                overwrite=True,
                unsafe=False,
                quiet=True,
                conflict="inline",
                skip_answered=True,
            )
    except (CopierError, ValueError) as exc:
        raise ValidationError(f"the template update to {version} failed: {exc}") from exc
    changed = githost.git("diff", "--name-only", "-z", "HEAD", cwd=checkout).split("\0")
    changed += githost.git("ls-files", "--others", "--exclude-standard", "-z", cwd=checkout).split(
        "\0"
    )
    changed = [path for path in changed if path]
    return [
        path
        for path in changed
        if (checkout / path).is_file()
        and "<<<<<<< " in (checkout / path).read_text(errors="replace")
    ]


def add(
    platform: Platform,
    principal: Principal,
    source: str,
    *,
    name: str | None = None,
    version: str | None = None,
) -> Template:
    """Import the template at ``source`` (folder, git repository or URL) as ``name`` — a
    platform admin's act (``infra:apply`` in the first environment), audited there.

    A git source brings its version tags (a template already here gains the new ones); a plain
    folder becomes version ``version`` (default 1.0.0, and a new version of an existing one).
    """
    from lockgate.auth import audit
    from lockgate.auth.policy import authorize

    home = platform.home
    first = platform.ready()
    authorize(first.store, principal, "infra:apply", env=first.name, target=f"template {source}")
    path = Path(source).expanduser()
    is_folder = path.is_dir() and not (path / ".git").exists() and not (path / "HEAD").is_file()
    if name is None:
        base = path.name if path.exists() else source.rstrip("/").rsplit("/", 1)[-1]
        name = base.removesuffix(".git")
    check_name(name, "template")
    if name in _builtin_index():
        raise ConflictError(
            f"{name} is a built-in template.", hint="Add yours under another --name."
        )
    repo = githost.template_repo(home, name)
    with _repos_lock(home):
        if is_folder:
            if not (path / "copier.yml").is_file() and not (path / "copier.yaml").is_file():
                raise ValidationError(f"{path} has no copier.yml: it is not a copier template.")
            version = version or "1.0.0"
            _check_version_text(version)
            if not (repo / "HEAD").is_file():
                githost.init_bare(repo)
            elif version in githost.tags(repo):
                raise ConflictError(
                    f"template {name} already has version {version}.",
                    hint="Give the new one a higher --version.",
                )
            elif githost.tags(repo) and not _newer(version, githost.tags(repo)[-1]):
                raise ValidationError(
                    f"version {version} is not newer than {githost.tags(repo)[-1]}."
                )
            githost.commit_tree(repo, path, f"{name} {version}", tag=version)
        else:
            location = str(path.resolve()) if path.exists() else source
            if version is not None:
                raise ValidationError(
                    "--version is for a plain folder; a git template's versions are its tags."
                )
            if (repo / "HEAD").is_file():
                githost.fetch_tags(location, repo)
            else:
                githost.mirror(location, repo)
            if not githost.tags(repo):
                import shutil

                shutil.rmtree(repo)
                raise ValidationError(
                    f"{source} has no version tags.",
                    hint="Tag a version (git tag 1.0.0) and add it again.",
                )
    template = get(home, name)
    if not template.questions and _read_at(repo, template.latest, "copier.yml") is None:
        raise ValidationError(f"{source} has no copier.yml at {template.latest}.")
    with first.store.transaction() as session:
        audit.record(
            session,
            actor=principal.name,
            action="template.add",
            target=name,
            details={"source": source, "versions": template.versions},
        )
    return template


def _check_version_text(version: str) -> None:
    from packaging.version import InvalidVersion, Version

    try:
        Version(version)
    except InvalidVersion:
        raise ValidationError(
            f"version {version!r} is not a version number.", hint="For example 1.0.0 or 2.1."
        ) from None


def _newer(version: str, than: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) > Version(than)
    except InvalidVersion:
        return True


@contextlib.contextmanager
def quiet_git_identity() -> Iterator[None]:
    """copier runs git itself: give it an identity and no user configuration (CLI use only)."""
    fixed = {**githost.IDENTITY, **githost.GIT_SETTINGS}
    saved = {k: os.environ.get(k) for k in fixed}
    os.environ.update(fixed)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
