"""A CI job's view: no platform home, only LOCKGATE_URL and a token from the OIDC exchange (or an
API token); `lockgate ci build`, `ci runs`, `model approve` and `endpoint invoke` go through
the daemon's API as that token's principal."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from issuer import Issuer  # type: ignore[import-not-found]
from lockgate.auth import credentials
from lockgate.auth.principal import Principal
from lockgate.platform import Platform
from lockgate.projects import ci, githost, service
from support import home_on_free_ports, run_cli


@pytest.fixture
def remote(tmp_path: Path, admin: Principal) -> Iterator[tuple[Platform, str, Issuer]]:
    issuer = Issuer()
    trust = issuer.trust_toml("repo:acme/shop:ref:refs/heads/main", "service:shop-ci-dev", "dev")
    platform = home_on_free_ports(tmp_path / "home", admin, ["dev", "prod"], trust)
    home = platform.home
    assert run_cli(home, "up", "--detach").code == 0
    info = json.loads((home.run_dir / "daemon.json").read_text())
    try:
        yield platform, str(info["api_url"]), issuer
    finally:
        run_cli(home, "down", timeout=120)
        issuer.close()


def _job(
    url: str,
    token: str,
    *args: str,
    cwd: Path | None = None,
    stdin: str | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[int, str]:
    """The `lockgate` command as a CI job runs it: no home, a URL and a token."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "LOCKGATE_HOME"}
    env.update({"LOCKGATE_URL": url, "LOCKGATE_TOKEN": token, "COLUMNS": "200"})
    if not token:
        env.pop("LOCKGATE_TOKEN")
    env.update(extra or {})
    done = subprocess.run(
        [sys.executable, "-m", "lockgate", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_ci_job_builds_and_an_approver_approves_remotely(
    remote: tuple[Platform, str, Issuer], admin: Principal, tmp_path: Path
) -> None:
    platform, url, issuer = remote
    checkout = tmp_path / "shop"
    service.create(platform, admin, "shop", "build-train-deploy", checkout=checkout)
    (checkout / "NOTES.md").write_text("remote\n")
    githost.git("add", "NOTES.md", cwd=checkout)
    githost.git("commit", "--quiet", "-m", "remote", cwd=checkout)
    githost.git("push", "--quiet", "origin", "main", cwd=checkout)

    # What the generated workflow does: the job's OIDC token in, a Lockgate token out.
    code, out = _job(
        url,
        "",
        "auth",
        "exchange",
        cwd=checkout,
        stdin=issuer.mint("repo:acme/shop:ref:refs/heads/main"),
    )
    assert code == 0, out
    token = out.strip()
    assert token.count(".") == 2
    code, out = _job(url, token, "ci", "build", cwd=checkout)
    assert code == 0, out
    assert "queued on" in out and "succeeded" in out and "shop@1" in out

    code, out = _job(url, token, "ci", "runs", "shop", "--json")
    assert code == 0, out
    runs = json.loads(out[out.index("[") :])
    assert any(r["trigger"] == "remote by service:shop-ci-dev" for r in runs)

    code, out = _job(url, token, "pipeline", "run", "shop", "-p", "max_iter=20")
    assert code == 0 and "succeeded" in out, out
    code, out = _job(url, token, "model", "list", "shop", "--json")
    assert code == 0, out
    listed = json.loads(out[out.index("[") :])
    # the pushed build, the remote build and the remote run each registered one
    assert [v["version"] for v in listed] == [1, 2, 3]
    assert {v["status"] for v in listed} == {"PendingManualApproval"}
    code, out = _job(url, token, "endpoint", "list", "--json")
    assert code != 0 and "403" in out  # the dev CI principal has no business with endpoints

    # The CI principal may not approve its own model; an approver's API token may.
    code, out = _job(url, token, "model", "approve", "shop/1")
    assert code != 0 and "403" in out
    _, api_token = credentials.create_api_token(platform, admin, "dev", "approver laptop")
    code, out = _job(url, api_token, "model", "approve", "shop/1", "-m", "remote review")
    assert code == 0 and "shop/1 is Approved" in out, out
    code, out = _job(url, api_token, "endpoint", "list", "--json")
    assert code == 0 and json.loads(out[out.index("[") :]) == []
    code, out = _job(url, api_token, "model", "show", "shop/1")
    assert code == 0 and json.loads(out)["status"] == "Approved", out
    code, out = _job(url, api_token, "pipeline", "list")
    assert code == 0 and [p["name"] for p in json.loads(out)] == ["shop"], out

    # A person logs in once; later commands use the kept credential (mode 0600).
    kept = {"LOCKGATE_CREDENTIALS": str(tmp_path / "credentials.json")}
    code, out = _job(url, "", "auth", "login", "--url", url, stdin=api_token, extra=kept)
    assert code == 0 and "Logged in" in out and api_token not in out, out
    assert (tmp_path / "credentials.json").stat().st_mode & 0o777 == 0o600
    code, out = _job(url, "", "model", "list", "shop", extra=kept)
    assert code == 0 and "Approved" in out, out

    code, out = _job(url, "not-a-token", "ci", "runs")
    assert code != 0 and "401" in out and "not-a-token" not in out
    deadline = time.monotonic() + 60
    while any(r.status in ("queued", "running") for _, r in ci.list_runs(platform, admin, "shop")):
        assert time.monotonic() < deadline
        time.sleep(0.5)
