"""Property-based fuzzing of the daemon's HTTP API from its own OpenAPI schema (schemathesis):
whatever a client sends, with a token or without, the answer is never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from lockgate.auth import credentials
from lockgate.auth.principal import local_principal
from support import home_on_free_ports, run_cli


@pytest.fixture(scope="module")
def daemon_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    admin = local_principal()
    platform = home_on_free_ports(tmp_path_factory.mktemp("fuzz") / "home", admin, ["dev"])
    home = platform.home
    assert run_cli(home, "up", "--detach").code == 0
    info = json.loads((home.run_dir / "daemon.json").read_text())
    try:
        yield str(info["api_url"]), credentials.login(platform, admin, "dev", ttl_s=3600)
    finally:
        run_cli(home, "down", timeout=120)


def _check(case: schemathesis.Case, url: str, headers: dict[str, str]) -> int:
    response = case.call(base_url=url, headers=headers)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
    return int(response.status_code)


@pytest.mark.parametrize("with_token", [True, False])
def test_no_request_gets_a_server_error(daemon_api: tuple[str, str], with_token: bool) -> None:
    url, token = daemon_api
    headers = {"Authorization": f"Bearer {token}"} if with_token else {}
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25 if with_token else 10,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            status = _check(case, url, headers)
            if not with_token and case.path.startswith("/api/"):
                assert status == 401

        fuzz()
