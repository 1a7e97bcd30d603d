"""The daemon's HTTP surface with authentication: a real daemon, a real OIDC issuer on
loopback, and the refusals a client sees (401 / 403 / 400 / 429) without anything leaking."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from issuer import Issuer  # type: ignore[import-not-found]
from lockgate.auth import credentials
from lockgate.auth.principal import Principal
from lockgate.infra import service as infra
from lockgate.platform import Platform
from support import home_on_free_ports, run_cli


@pytest.fixture
def daemon(tmp_path: Path, admin: Principal, issuer: Issuer) -> Iterator[tuple[Platform, str]]:
    trust = issuer.trust_toml("repo:acme/shop:environment:prod", "service:shop-ci-prod", "prod")
    platform = home_on_free_ports(tmp_path / "home", admin, ["dev", "prod"], trust)
    text = platform.home.platform_file.read_text()
    head, sep, prod = text.partition("[environments.prod.network]")
    prod = prod.replace("# max_requests_per_s = 500", "max_requests_per_s = 5", 1)
    platform.home.platform_file.write_text(head + sep + prod)
    platform = Platform.open(platform.home)
    infra.apply(platform, admin, confirm=lambda plan: True)
    home = platform.home
    assert run_cli(home, "up", "--detach").code == 0
    info = json.loads((home.run_dir / "daemon.json").read_text())
    yield platform, str(info["api_url"])
    run_cli(home, "down", timeout=120)


def test_an_oidc_token_is_exchanged_over_http(daemon: tuple[Platform, str], issuer: Issuer) -> None:
    _, api = daemon
    assert httpx.get(f"{api}/ping").status_code == 200  # the one open route
    answer = httpx.post(
        f"{api}/auth/oidc/exchange", json={"token": issuer.mint(), "environment": "prod"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["principal"] == "service:shop-ci-prod" and body["token_type"] == "Bearer"
    who = httpx.get(
        f"{api}/api/v1/whoami", headers={"Authorization": f"Bearer {body['access_token']}"}
    ).json()
    assert who == {
        "principal": "service:shop-ci-prod",
        "environment": "prod",
        "via": "oidc:github",
        "expires_at": who["expires_at"],
    }
    denied = httpx.get(
        f"{api}/api/v1/environments/prod/endpoints",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert denied.status_code == 403  # a CI principal with no role there may do nothing


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("other subject", 403),
        ("expired", 401),
        ("other audience", 401),
        ("no token", 400),
        ("other environment", 401),
    ],
)
def test_bad_identity_tokens_get_4xx_and_leak_nothing(
    daemon: tuple[Platform, str], issuer: Issuer, case: str, status: int
) -> None:
    _, api = daemon
    token = {
        "other subject": issuer.mint("repo:acme/evil:environment:prod"),
        "expired": issuer.mint(ttl=-300),
        "other audience": issuer.mint(aud="elsewhere"),
        "no token": "",
        "other environment": issuer.mint(),
    }[case]
    env = "dev" if case == "other environment" else "prod"
    answer = httpx.post(f"{api}/auth/oidc/exchange", json={"token": token, "environment": env})
    assert answer.status_code == status, answer.text
    assert set(answer.json()) >= {"error", "message"} or status == 400
    if token:
        assert token not in answer.text


def test_every_api_route_needs_a_token_and_limits_hold(
    daemon: tuple[Platform, str], admin: Principal
) -> None:
    platform, api = daemon
    for path in ("/api/v1/status", "/api/v1/whoami", "/api/v1/environments/dev/endpoints"):
        assert httpx.get(f"{api}{path}").status_code == 401
        forged = httpx.get(f"{api}{path}", headers={"Authorization": "Bearer a.b.c"})
        assert forged.status_code == 401
    _, secret = credentials.create_api_token(platform, admin, "dev", "test")
    exchanged = httpx.post(f"{api}/auth/token", headers={"Authorization": f"Bearer {secret}"})
    assert exchanged.status_code == 200 and exchanged.json()["principal"] == admin.name
    status = httpx.get(
        f"{api}/api/v1/status",
        headers={"Authorization": f"Bearer {exchanged.json()['access_token']}"},
    )
    assert status.status_code == 200 and status.json()["environments"] == ["dev", "prod"]
    huge = httpx.post(f"{api}/auth/oidc/exchange", content=b"{" + b" " * 40_000 + b"}")
    assert huge.status_code == 400
    codes = [httpx.post(f"{api}/auth/token").status_code for _ in range(35)]
    assert 429 in codes  # at most 30 authentication requests a minute from one address


def test_a_gateway_limits_each_clients_rate(daemon: tuple[Platform, str]) -> None:
    platform, _ = daemon
    gateways = json.loads((platform.home.run_dir / "daemon.json").read_text())["gateways"]
    codes = [
        httpx.post(f"{gateways['prod']}/endpoints/none/invocations", content=b"[[1]]").status_code
        for _ in range(30)
    ]
    assert 429 in codes and codes[0] == 401  # the burst (10) passes to the token check first
    dev = [
        httpx.post(f"{gateways['dev']}/endpoints/none/invocations", content=b"[[1]]").status_code
        for _ in range(30)
    ]
    assert 429 not in dev  # dev sets no limit
