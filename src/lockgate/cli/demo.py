"""``lockgate demo``: the golden path, end to end, in the current home."""

from __future__ import annotations

import time

from lockgate.cli.common import HomeOption, JsonOption, console, err_console, me, print_json


def demo(home: HomeOption = None, json: JsonOption = False) -> None:
    """Run the golden path in this home ($LOCKGATE_HOME, created if needed): init, infra
    apply, the daemon, a build-train-deploy project, a push, the build in dev, an approval, the
    preprod endpoint with its endpoint tests and batch job, the gated prod deploy, and a
    prediction from prod. The daemon keeps running afterwards: explore, then `lockgate down`.

    Example:

      LOCKGATE_HOME=/tmp/lockgate-demo lockgate demo
    """
    from lockgate.config.home import Home
    from lockgate.projects import demo as golden

    started = time.monotonic()
    out = err_console if json else console  # --json keeps standard output for the document
    with out.status("Starting…") as status:

        def say(text: str) -> None:
            out.print(f"[green]✓[/] {text}")
            status.update("Working…")

        from lockgate.server import daemon

        result = golden.run(
            Home.resolve(home), me(), say, lambda p: daemon.start_detached(p, timeout=60.0)
        )
    total = time.monotonic() - started
    if json:
        print_json(
            {**result.__dict__, "checkout": str(result.checkout), "total_s": round(total, 2)}
        )
        return
    console.print(f"\n[bold]Prediction from prod[/] (rings of an abalone): {result.prediction}")
    console.print(
        f"Golden path done in {total:.1f} s ({', '.join(f'{k} {v:.1f}s' for k, v in result.seconds.items())})."
    )
    console.print("\nLook further:")
    for env, url in result.endpoints.items():
        console.print(f"  {env} endpoint: {url}")
    console.print(f"  API: {result.api_url}/docs")
    console.print(f"  working copy: {result.checkout}  (edit, commit, git push → a new build)")
    for command in (
        f"lockgate ci runs {result.project}",
        f"lockgate ci logs {result.runs[-1]}",
        "lockgate endpoint list --env prod --json",
        f"lockgate model list {result.project} --env prod",
        "lockgate schedule list --env prod",
        f"lockgate project show {result.project}",
    ):
        console.print(f"  {command}")
    console.print("\nThe platform keeps running; stop it with `lockgate down`.")
