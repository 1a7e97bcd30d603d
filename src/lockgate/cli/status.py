"""``lockgate status``."""

from __future__ import annotations

from lockgate.cli.common import HomeOption, JsonOption, console, me, open_platform, print_json
from lockgate.cli.render import table


def status(home: HomeOption = None, json: JsonOption = False) -> None:
    """Show the home, its environments and stores, the state version, the lock and the daemon.

    Examples:

      lockgate status

      LOCKGATE_HOME=./platform lockgate status --json
    """
    from lockgate.config.daemon_files import running
    from lockgate.environments import service

    platform = open_platform(home)
    doc = service.status(platform, me())
    doc["daemon"] = running(platform.home)
    if json:
        print_json(doc)
        return
    console.print(
        f"[bold]Lockgate[/bold] home {doc['home']} — org {doc['org']}, you are {doc['principal']}"
    )
    home_dir = doc["home"]

    def here(url: str) -> str:
        return url.replace(home_dir, "{home}")

    rows = [
        [
            e["position"],
            e["name"],
            "ready" if e["ready"] else "not ready",
            e["schema"] or "none",
            here(e["metadata_url"]),
            here(e["artifact_url"]),
        ]
        for e in doc["environments"]
    ]
    table(None, ["#", "environment", "state", "schema", "metadata store", "artifact store"], rows)
    version = doc["state_version"]
    console.print(
        f"Infrastructure state: {'version ' + str(version) + ' (' + doc['state_outcome'] + ')' if version else 'none'}"
    )
    lock = doc["lock"]
    if lock is None:
        console.print("Lock: free")
    else:
        stale = (
            " [red]stale[/red] — run `lockgate infra unlock " + lock["id"] + "`"
            if lock["stale"]
            else ""
        )
        console.print(
            f"Lock: held by {lock['holder']} for '{lock['operation']}' since {lock['since']} (pid {lock['pid']}, id {lock['id']}){stale}"
        )
    daemon = doc["daemon"]
    if daemon:
        gateways = ", ".join(f"{e} {u}" for e, u in daemon.get("gateways", {}).items())
        console.print(
            f"Daemon: running (pid {daemon.get('pid')}), API {daemon.get('api_url')}; gateways {gateways}"
        )
    else:
        console.print("Daemon: not running (start it with `lockgate up --detach`)")
