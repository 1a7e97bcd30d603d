"""The git host in the platform home: bare repositories under ``repos/``, driven with plain git.

    repos/templates/NAME.git    a template repository; each version is a tag (1.0.0, 2.0.0, …)
    repos/projects/NAME.git     a project's repository; its post-receive hook queues a CI build

Users clone and push with plain ``git`` and a file path. Every git call here runs without a
shell, with a fixed identity and no user or system configuration that could change its output.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from lockgate.config.home import Home
from lockgate.errors import ConflictError, LockgateError, NotFoundError, ValidationError

DEFAULT_BRANCH = "main"
IDENTITY = {
    "GIT_AUTHOR_NAME": "Lockgate",
    "GIT_AUTHOR_EMAIL": "lockgate@localhost",
    "GIT_COMMITTER_NAME": "Lockgate",
    "GIT_COMMITTER_EMAIL": "lockgate@localhost",
}
#: No system or user configuration, and never a prompt.
GIT_SETTINGS = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}


class GitError(LockgateError):
    """A git command failed; the message carries git's own words."""

    code = "git_failed"
    exit_code = 1
    http_status = 500


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for git: no global or system config, no prompts, a fixed identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(IDENTITY)
    env.update(GIT_SETTINGS)
    env.update(extra or {})
    return env


def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    """Run ``git ARGS`` and return its standard output (stripped)."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=git_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def repos_dir(home: Home) -> Path:
    return home.root / "repos"


def template_repo(home: Home, name: str) -> Path:
    return home.inside(repos_dir(home) / "templates" / f"{name}.git")


def project_repo(home: Home, name: str) -> Path:
    return home.inside(repos_dir(home) / "projects" / f"{name}.git")


def init_bare(path: Path) -> None:
    """A new, empty bare repository at ``path`` whose default branch is ``main``."""
    if path.exists():
        raise ConflictError(f"repository {path} already exists.")
    path.parent.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "--bare", f"--initial-branch={DEFAULT_BRANCH}", str(path))


def tags(repo: Path) -> list[str]:
    """The repository's tags, oldest version first (as copier orders them: PEP 440)."""
    from packaging.version import InvalidVersion, Version

    valid: list[tuple[Version, str]] = []
    other: list[str] = []
    for tag in git("tag", "--list", cwd=repo).split():
        try:
            valid.append((Version(tag), tag))
        except InvalidVersion:
            other.append(tag)
    return sorted(other) + [tag for _, tag in sorted(valid)]


def head(repo: Path, ref: str = DEFAULT_BRANCH) -> str | None:
    """The commit ``ref`` points at, or None when it does not exist (an empty repository)."""
    out = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo, check=False)
    return out or None


def commit_tree(repo: Path, source: Path, message: str, *, tag: str | None = None) -> str:
    """Commit the files of folder ``source`` on top of ``main`` in bare ``repo``; tag it.

    Uses a scratch work tree so the source folder is never touched.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lockgate-git-") as scratch:
        work = Path(scratch) / "work"
        git("clone", "--quiet", str(repo), str(work))
        if head(work, "HEAD") is None:
            git("checkout", "--quiet", "-b", DEFAULT_BRANCH, cwd=work)
        for entry in work.iterdir():
            if entry.name != ".git":
                _remove(entry)
        _copy_tree(source, work)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        if tag:
            git("tag", tag, cwd=work)
        git(
            "push",
            "--quiet",
            "origin",
            f"HEAD:{DEFAULT_BRANCH}",
            *(["--tags"] if tag else []),
            cwd=work,
        )
        return git("rev-parse", "HEAD", cwd=work)


def clone(repo: Path, target: Path, *, ref: str | None = None) -> None:
    """Clone ``repo`` into ``target`` (which must not exist or be empty); check out ``ref``."""
    if target.exists() and any(target.iterdir()):
        raise ConflictError(
            f"{target} exists and is not empty.", hint="Choose another --dir, or remove it."
        )
    git("clone", "--quiet", "--", str(repo), str(target))
    if ref:
        git("checkout", "--quiet", ref, cwd=target)


def mirror(source: str, repo: Path) -> None:
    """A bare copy of the git repository at ``source`` (a path or URL), with all its tags."""
    if repo.exists():
        raise ConflictError(f"repository {repo} already exists.")
    repo.parent.mkdir(parents=True, exist_ok=True)
    try:
        git("clone", "--quiet", "--bare", "--", source, str(repo))
    except GitError as exc:
        raise ValidationError(
            f"cannot clone the template {source}: {exc.message}",
            hint="Give a local folder, a path to a git repository or a git URL this machine reaches.",
        ) from exc


def fetch_tags(source: str, repo: Path) -> None:
    """Bring ``source``'s branches and tags into ``repo`` (a template gaining versions)."""
    if source.startswith("-"):
        raise ValidationError(f"{source!r} is not a path or URL.")
    git("fetch", "--quiet", "--tags", source, "+refs/heads/*:refs/heads/*", cwd=repo)


HOOK = """#!/bin/sh
# Installed by Lockgate: a push to {branch} queues a CI build of project {project}.
exec {python} -m lockgate ci trigger --home {home} --project {project}
"""


def install_hook(home: Home, repo: Path, project: str) -> None:
    """The post-receive hook that queues ``lockgate ci build`` for each push to ``main``."""
    hook = repo / "hooks" / "post-receive"
    hook.write_text(
        HOOK.format(
            branch=DEFAULT_BRANCH,
            project=project,
            python=shlex.quote(sys.executable),
            home=shlex.quote(str(home.root)),
        )
    )
    hook.chmod(0o755)


def require(repo: Path, what: str) -> Path:
    if not (repo / "HEAD").is_file():
        raise NotFoundError(f"{what} has no repository at {repo}.")
    return repo


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _copy_tree(source: Path, target: Path) -> None:
    import shutil

    for entry in source.iterdir():
        if entry.name in (".git", "__pycache__"):
            continue
        if entry.is_dir():
            shutil.copytree(
                entry, target / entry.name, ignore=shutil.ignore_patterns("__pycache__", ".git")
            )
        else:
            shutil.copy2(entry, target / entry.name)
