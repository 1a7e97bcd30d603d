"""``lockgate ci``: the CI of projects (builds on push, deploys, endpoint tests, approvals)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lockgate.cli.common import (
    HomeOption,
    JsonOption,
    console,
    err_console,
    me,
    open_platform,
    print_json,
    remote_env,
)
from lockgate.cli.render import table

app = typer.Typer(
    help="Project CI: `ci build | deploy | test` hold the logic (the daemon runs them on push and "
    "on approval; a workflow calls the same commands); runs, logs and approvals.",
    no_args_is_help=True,
)

RunArg = Annotated[str, typer.Argument(help="The CI run's id (see `lockgate ci runs`).")]
DirOption = Annotated[
    Path, typer.Option("--dir", "-C", help="The project's checkout (default: here).")
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait for an approval the deploy needs.")
]


def _finish(run_id: str, status: str, error: str | None) -> None:
    if status == "succeeded":
        console.print(f"CI run {run_id} succeeded.")
        return
    err_console.print(f"CI run {run_id} {status}: {error}")
    raise typer.Exit(1)


def _remote_run(remote: Any, kind: str, env: str | None, root: Path, wait: bool) -> None:
    """``ci KIND`` against a remote daemon: queue the checkout's pushed commit, follow it."""
    import time

    from lockgate.projects import githost
    from lockgate.projects.manifest import load

    config = load(root)
    target = remote_env(remote, env or (config.environments[0] if kind == "build" else None))
    commit = githost.git("rev-parse", "HEAD", cwd=root)
    run = remote.call(
        "POST",
        f"/api/v1/environments/{target}/projects/{config.project}/ci/{kind}",
        json={"commit": commit},
    )
    console.print(f"CI run {run['id']} queued on {remote.url} ({target}, {commit[:10]}).")
    pending = ("queued", "running", "waiting") if wait else ("queued", "running")
    while run["status"] in pending:
        time.sleep(1.0)
        run = remote.call("GET", f"/api/v1/environments/{target}/ci/runs/{run['id']}")
    if run["status"] == "waiting":
        console.print(f"CI run {run['id']} waits for one of {', '.join(run['approvers'])}.")
        return
    console.print(run.get("log") or "", markup=False)
    _finish(run["id"], run["status"], run.get("error"))


def _here(kind: str, env: str | None, root: Path, home: str | None, wait: bool = False) -> None:
    from lockgate.projects import ci
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:
        _remote_run(remote, kind, env, root.absolute(), wait)
        return

    platform = open_platform(home)
    run = ci.run_here(
        platform,
        me(),
        kind,
        env,
        root.absolute(),
        echo=lambda line: console.print(line, markup=False),
    )
    if run.status == "waiting":
        console.print(
            f"CI run {run.id} waits for one of {', '.join(run.approvers)}: "
            f"lockgate ci approve {run.id}"
        )
        if not wait:
            return
        run = ci.wait_for(platform, me(), run.id, timeout=24 * 3600, until_done=True)
        console.print(ci.log_text(platform, me(), run.id), markup=False)
    _finish(run.id, run.status, run.error)


@app.command()
def build(dir_: DirOption = Path("."), home: HomeOption = None) -> None:
    """Run the unit tests, then upsert and run the project's pipeline in its first environment
    (what a push to main does in the daemon).

    Example:

      cd churn && lockgate ci build
    """
    _here("build", None, dir_, home)


@app.command()
def deploy(
    env: Annotated[str, typer.Option("--env", "-e", help="The environment to deploy into.")],
    dir_: DirOption = Path("."),
    wait: WaitOption = True,
    home: HomeOption = None,
) -> None:
    """Deploy into ENV: promote the newest approved model (or the pipeline) from the environment
    before, serve it, run the endpoint tests and the batch job, keep the schedules. An
    environment with required approvers waits for `lockgate ci approve RUN`.

    Example:

      lockgate ci deploy --env preprod
    """
    _here("deploy", env, dir_, home, wait)


@app.command()
def test(
    env: Annotated[
        str, typer.Option("--env", "-e", help="The environment whose endpoint to test.")
    ],
    dir_: DirOption = Path("."),
    home: HomeOption = None,
) -> None:
    """Send the project's endpoint test cases to its endpoint in ENV and check the answers
    against the expected values and the registered model's own predictions.

    Example:

      lockgate ci test --env preprod
    """
    _here("test", env, dir_, home)


@app.command()
def runs(
    project: Annotated[str | None, typer.Argument(help="Only this project's runs.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 30,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """List CI runs, newest first, in every environment you may read.

    Example:

      lockgate ci runs churn --json
    """
    from lockgate.projects import ci
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:
        target = remote_env(remote, None)
        query = f"?project={project}" if project else ""
        rows = remote.call("GET", f"/api/v1/environments/{target}/ci/runs{query}")
        from lockgate.store.projects import CiRun

        fields = set(CiRun.__dataclass_fields__)
        found = [
            (str(r["environment"]), CiRun(**{k: v for k, v in r.items() if k in fields}))
            for r in rows[:limit]
        ]
    else:
        found = ci.list_runs(open_platform(home), me(), project, limit)
    if json:
        print_json([{**r.to_dict(), "environment": env} for env, r in found])
        return
    table(
        None,
        ["run", "project", "kind", "env", "status", "commit", "trigger", "created (UTC)"],
        [
            [
                r.id,
                r.project,
                r.kind,
                env,
                _status(r),
                (r.commit or "")[:8],
                r.trigger if len(r.trigger) <= 40 else r.trigger[:39] + "…",
                r.created_at.replace("T", " ").removesuffix("Z"),
            ]
            for env, r in found
        ],
    )


def _status(run: Any) -> str:
    if run.status == "waiting":
        return f"waiting for {', '.join(run.approvers)}"
    if run.status == "failed" and run.error:
        return f"failed: {run.error if len(run.error) <= 60 else run.error[:59] + '…'}"
    return str(run.status)


@app.command()
def logs(run_id: RunArg, home: HomeOption = None) -> None:
    """Print a CI run's output (so far, while it runs)."""
    from lockgate.projects import ci
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:
        shown = remote.call(
            "GET", f"/api/v1/environments/{remote_env(remote, None)}/ci/runs/{run_id}"
        )
        sys.stdout.write(shown.get("log") or "")
        return
    sys.stdout.write(ci.log_text(open_platform(home), me(), run_id))


@app.command()
def approve(
    run_id: RunArg,
    comment: Annotated[
        str, typer.Option("--comment", "-m", help="Why (kept in the audit log).")
    ] = "",
    home: HomeOption = None,
) -> None:
    """Approve a waiting deploy (you must be one of its environment's required approvers).

    Example:

      lockgate ci approve 01JD… --comment "preprod tests green"
    """
    from lockgate.projects import ci
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:
        target = remote_env(remote, None)
        done = remote.call(
            "POST",
            f"/api/v1/environments/{target}/ci/runs/{run_id}/approve",
            json={"comment": comment},
        )
        console.print(
            f"CI run {done['id']} approved by {done['approved_by']}; the daemon runs it now."
        )
        return
    run = ci.approve(open_platform(home), me(), run_id, comment=comment)
    console.print(f"CI run {run.id} approved by {run.approved_by}; the daemon runs it now.")


@app.command(hidden=True)
def trigger(
    project: Annotated[str, typer.Option("--project")],
    home: HomeOption = None,
) -> None:
    """The post-receive hook of a project repository: queue a build for a push to main."""
    from lockgate.config.daemon_files import running
    from lockgate.projects import ci

    platform = open_platform(home)
    for run in ci.trigger_push(platform, me(), project, sys.stdin.read().splitlines()):
        where = (
            "the daemon runs it"
            if running(platform.home)
            else "start the daemon to run it: lockgate up --detach"
        )
        print(f"Lockgate: CI run {run.id} queued ({where}); follow it: lockgate ci logs {run.id}")


@app.command("exec", hidden=True)
def exec_(
    run_id: RunArg,
    owner: Annotated[str, typer.Option("--owner")],
    home: HomeOption = None,
) -> None:
    """The CI worker's child process: run one claimed run."""
    from lockgate.projects import ci

    status = ci.exec_claimed(open_platform(home), run_id, owner)
    raise typer.Exit(0 if status == "succeeded" else 1)
