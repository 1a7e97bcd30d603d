"""platform.toml: the default is valid, and every bad input gets one message naming the key."""

from __future__ import annotations

import pytest

from lockgate.config.loader import load_spec, parse_spec
from lockgate.config.template import render_platform_toml
from lockgate.errors import ConfigError, NotInitialisedError

GOOD = render_platform_toml("acme", ["dev", "preprod", "prod"], "user:alice")


def test_default_platform_file_is_valid_and_ordered() -> None:
    spec = parse_spec(GOOD, "platform.toml")
    assert list(spec.environments) == ["dev", "preprod", "prod"]
    assert spec.bindings_in("prod") == [("user:alice", "platform-admin")]
    dev = spec.environment("dev", "/srv/lg")
    assert dev.metadata_url == "sqlite:////srv/lg/envs/dev/metadata.db"
    assert dev.artifact_url == "file:///srv/lg/envs/dev/artifacts"
    assert str(dev.network.bind_host) == "127.0.0.1"


def test_the_commented_rule_example_is_valid_once_uncommented() -> None:
    lines = GOOD.splitlines()
    start = lines.index("# [rules.notify-approvals]")
    example = [line.removeprefix("# ") for line in lines[start:] if line.startswith("# ")]
    spec = parse_spec(GOOD + "\n" + "\n".join(example) + "\n", "platform.toml")
    rule = spec.rules["notify-approvals"]
    assert rule.event == "ModelVersionApprovalChanged" and rule.action.kind == "webhook"
    assert list(spec.rules_in("dev")) == ["notify-approvals"] and spec.rules_in("prod") == {}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace('org = "acme"', 'org = "acme'), "TOML syntax error"),
        (
            lambda t: t.replace('org = "acme"', 'org = "acme"\ncolour = "blue"'),
            "unknown key 'colour' in [platform]",
        ),
        (
            lambda t: t.replace("max_endpoints = 10", "max_endpoints = 10\nmax_gpus = 1", 1),
            "unknown key 'max_gpus' in [environments.dev.quotas]",
        ),
        (
            lambda t: t.replace('org = "acme"', 'org = "Acme Corp"'),
            "platform.org: 'Acme Corp' is not a valid name",
        ),
        (
            lambda t: t.replace("[environments.prod]", "[environments.Prod_1]"),
            "is not a valid name",
        ),
        (
            lambda t: t.replace(
                'environments = ["dev", "preprod", "prod"]', 'environments = ["dev", "qa"]'
            ),
            "names environment 'qa', which is not declared",
        ),
        (
            lambda t: t.replace('role = "platform-admin"', 'role = "superuser"'),
            "names role 'superuser', which is not declared",
        ),
        (
            lambda t: t.replace("port_range = [21000, 21999]", "port_range = [20500, 21999]"),
            "overlap",
        ),
        (
            lambda t: t.replace("port_range = [21000, 21999]", "port_range = [80, 90]"),
            "1024 <= LOW <= HIGH <= 65535",
        ),
        (
            lambda t: t.replace(
                'metadata_url = "sqlite:///{home}/envs/{env}/metadata.db"',
                'metadata_url = "mongodb://x/y"',
                1,
            ),
            "unknown scheme 'mongodb'",
        ),
        (
            lambda t: t.replace(
                'artifact_url = "file://{home}/envs/{env}/artifacts"',
                'artifact_url = "ftp://x/y"',
                1,
            ),
            "Use one of: file://, s3://",
        ),
        (
            lambda t: t.replace('bind_host = "127.0.0.1"', 'bind_host = "localhost:80"', 1),
            "environments.dev.network.bind_host",
        ),
        (
            lambda t: t.replace('permissions = ["*"]', 'permissions = ["rocket:launch"]'),
            "unknown permission 'rocket:launch'",
        ),
        (
            lambda t: t + '\n[parameters."/lockgate/qa/x"]\nvalue = "1"\n',
            "belongs to environment 'qa', which is not declared",
        ),
        (
            lambda t: t + '\n[parameters."/lockgate/dev/x"]\nvalue = "1"\nsecure = true\n',
            "must not hold its value in platform.toml",
        ),
        (lambda t: t + '\n[parameters."bad name"]\nvalue = "1"\n', "is not a valid name"),
        (
            lambda t: t.replace('principal = "user:alice"', 'principal = "alice"'),
            "is not a valid principal",
        ),
        (
            lambda t: t.replace("max_endpoints = 10", "max_endpoints = -1", 1),
            "environments.dev.quotas.max_endpoints",
        ),
    ],
)
def test_bad_platform_file_is_one_clear_error(edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        parse_spec(edit(GOOD), "/srv/lg/platform.toml")
    message = str(info.value)
    assert "/srv/lg/platform.toml" in message
    assert expected in message
    assert "Traceback" not in message


def test_syntax_error_names_the_line() -> None:
    broken = GOOD.replace('org = "acme"', "org = ")
    with pytest.raises(ConfigError, match=r"line 9"):
        parse_spec(broken, "platform.toml")


def test_missing_network_is_reported_as_missing() -> None:
    text = '[platform]\norg = "a"\n[environments.dev]\n'
    with pytest.raises(ConfigError, match=r"environments\.dev\.network: missing; add it"):
        parse_spec(text, "p.toml")


def test_missing_file_says_to_init(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotInitialisedError, match="lockgate init"):
        load_spec(tmp_path / "platform.toml")
