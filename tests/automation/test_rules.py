"""Rules in platform.toml: what a rule may name is checked at load; matching fires only on what it names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lockgate.automation.matching import matches, render
from lockgate.config.rules import RuleSpec
from lockgate.config.spec import PlatformSpec
from lockgate.store.events import Event

WEBHOOK = {
    "kind": "webhook",
    "url": "http://127.0.0.1:9/h",
    "secret_parameter": "/lockgate/{env}/s",
}


def _spec(rules: dict[str, Any]) -> dict[str, Any]:
    network = {"port_range": [20000, 20999]}
    return {
        "platform": {"org": "acme"},
        "environments": {
            "dev": {"network": network},
            "prod": {"network": {"port_range": [21000, 21999]}},
        },
        "rules": rules,
    }


def test_a_valid_rule_and_where_it_applies() -> None:
    spec = PlatformSpec.model_validate(
        _spec(
            {
                "everywhere": {"event": "ModelVersionRegistered", "action": WEBHOOK},
                "dev-only": {
                    "event": "ModelVersionApprovalChanged",
                    "environments": ["dev"],
                    "match": {"group": "abalone", "to": ["Approved"]},
                    "action": {"kind": "command", "command": ["echo", "{group}/{version}"]},
                },
            }
        )
    )
    assert list(spec.rules_in("dev")) == ["everywhere", "dev-only"]
    assert list(spec.rules_in("prod")) == ["everywhere"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"event": "ModelApproved", "action": WEBHOOK}, "unknown event type 'ModelApproved'"),
        (
            {
                "event": "ModelVersionApprovalChanged",
                "match": {"status": "Approved"},
                "action": WEBHOOK,
            },
            "match field 'status' is not a field of ModelVersionApprovalChanged",
        ),
        (
            {
                "event": "ModelVersionRegistered",
                "action": {"kind": "command", "command": ["deploy", "{model}"]},
            },
            "placeholder {model} is not a field",
        ),
        (
            {"event": "ModelVersionRegistered", "environments": ["qa"], "action": WEBHOOK},
            "names environment 'qa', which is not declared",
        ),
        (
            {
                "event": "ModelVersionRegistered",
                "action": {**WEBHOOK, "secret_parameter": "/lockgate/dev/secret"},
            },
            "in 'prod' the secret_parameter '/lockgate/dev/secret' belongs to 'dev'",
        ),
        (
            {"event": "ModelVersionRegistered", "action": {**WEBHOOK, "url": "ftp://x/y"}},
            "is not an http:// or https:// URL",
        ),
        (
            {
                "event": "ModelVersionRegistered",
                "action": {"kind": "pipeline", "pipeline": "train"},
            },
            "run_as",
        ),
        (
            {
                "event": "ModelVersionApprovalChanged",
                "action": {
                    "kind": "deploy",
                    "endpoint": "e",
                    "environment": "qa",
                    "run_as": "service:d",
                },
            },
            "deploys to environment 'qa', which is not declared",
        ),
        (
            {
                "event": "ModelVersionApprovalChanged",
                "action": {
                    "kind": "deploy",
                    "endpoint": "e",
                    "model": "{grp}/1",
                    "run_as": "service:d",
                },
            },
            "placeholder {grp} is not a field",
        ),
        (
            {"event": "ModelVersionRegistered", "action": {"kind": "email", "to": "x"}},
            "does not match any of the expected tags",
        ),
    ],
)
def test_bad_rules_are_refused_at_load(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("(", r"\(")):
        PlatformSpec.model_validate(_spec({"r": rule}))


def _event(type_: str, **payload: Any) -> Event:
    return Event("01EVENT", type_, "abalone/2", payload, "2026-11-27T00:00:00Z", None)


APPROVED_ABALONE = RuleSpec.model_validate(
    {
        "event": "ModelVersionApprovalChanged",
        "match": {"group": "abalone", "to": "Approved", "version": 2},
        "action": WEBHOOK,
    }
).model_dump(mode="json")


@pytest.mark.parametrize(
    ("event", "fires"),
    [
        (_event("ModelVersionApprovalChanged", group="abalone", version=2, to="Approved"), True),
        # A rejection is a state change too, but not the one the rule names.
        (_event("ModelVersionApprovalChanged", group="abalone", version=2, to="Rejected"), False),
        (_event("ModelVersionApprovalChanged", group="churn", version=2, to="Approved"), False),
        (_event("ModelVersionApprovalChanged", group="abalone", version=3, to="Approved"), False),
        (_event("ModelVersionRegistered", group="abalone", version=2, status="Approved"), False),
        (_event("ModelVersionApprovalChanged", version=2, to="Approved"), False),
    ],
)
def test_a_rule_fires_only_on_what_it_names(event: Event, fires: bool) -> None:
    assert matches(APPROVED_ABALONE, event, "dev") is fires


def test_lists_nested_fields_and_booleans() -> None:
    event = _event(
        "ModelVersionPromoted", group="g", version=1, **{"from": {"environment": "dev"}}, by="u"
    )
    rule = {"event": "ModelVersionPromoted", "match": {"from.environment": ["qa", "dev"]}}
    assert matches(rule, event, "preprod")
    assert not matches({**rule, "match": {"from.environment": "qa"}}, event, "preprod")
    assert matches({**rule, "match": {"environment": "preprod"}}, event, "preprod")
    flagged = _event("ModelCardChanged", group="g", version=1, fields=[], flag=True)
    assert not matches({"event": "ModelCardChanged", "match": {"flag": 1}}, flagged, "dev")
    assert matches({"event": "ModelCardChanged", "match": {"flag": True}}, flagged, "dev")


def test_render_fills_placeholders() -> None:
    values = {"group": "abalone", "version": 2, "from": {"environment": "dev"}}
    assert render("deploy {group}/{version} from {from.environment}", values) == (
        "deploy abalone/2 from dev"
    )
    with pytest.raises(KeyError, match="no field 'nope'"):
        render("{nope}", values)
