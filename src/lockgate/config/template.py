"""The ``platform.toml`` that ``lockgate init`` writes."""

from __future__ import annotations

from lockgate.config.roles import DEFAULT_ROLES

_HEADER = """\
# The platform described as code. Edit it, then run `lockgate infra plan` to see what would
# change and `lockgate infra apply` to make it so.
#
# Store URLs may use {{home}} (this folder) and {{env}} (the environment's name):
#   metadata_url: sqlite:///… or postgresql+psycopg://user@host/db
#   artifact_url: file://… or s3://bucket/prefix (needs lockgate[s3])

[platform]
org = "{org}"
"""

_ENVIRONMENT = """
[environments.{env}]
metadata_url = "sqlite:///{{home}}/envs/{{env}}/metadata.db"
artifact_url = "file://{{home}}/envs/{{env}}/artifacts"
buckets = ["data", "models"]

[environments.{env}.network]
bind_host = "127.0.0.1"
port_range = [{low}, {high}]
allowed_clients = ["127.0.0.0/8", "::1/128"]
# max_requests_per_s = 500   # per client address at the gateway (bursts of twice that)

[environments.{env}.quotas]
max_endpoints = 10
max_instances = 20
"""

_ROLE = """
[roles.{name}]
description = "{description}"
permissions = [{permissions}]
"""

_FOOTER = """
# Who holds which role where. A data scientist is usually bound as:
#   [[bindings]]
#   principal = "user:alice"
#   role = "data-scientist"
#   environments = ["{first}"]
#
#   [[bindings]]
#   principal = "user:alice"
#   role = "viewer"
#   environments = [{rest}]
[[bindings]]
principal = "{admin}"
role = "platform-admin"
environments = [{all_envs}]

# Parameters, by hierarchical name. Plain values live here; a secure one takes its value from an
# environment variable at apply time (value_env) or from `lockgate param put --secure`.
"""

_REGISTRY = """
# The model registry's approval policy. Who may approve is a role granting model:approve.
[registry]
allow_self_approval = false   # whoever registered a version may not approve it

# Metric gates per model group: an approval that fails one needs --override-gate "reason".
# [registry.gates.abalone]
# mse = "<= 6.0"

# Automation rules: when an event matches, run an action. `lockgate events worker` delivers
# them (at least once, retried with backoff); `lockgate rules list` shows them once applied.
# Events: ModelVersionRegistered, ModelVersionApprovalChanged, ModelCardChanged,
# ModelVersionPromoted, PipelinePromoted. Actions: webhook (HMAC-signed), command, pipeline,
# deploy (promote if needed, then create or update an endpoint).
# [rules.notify-approvals]
# event = "ModelVersionApprovalChanged"
# environments = ["{first}"]
# match = {{ group = "abalone", to = "Approved" }}
# [rules.notify-approvals.action]
# kind = "webhook"
# url = "https://hooks.example.com/lockgate"
# secret_parameter = "/lockgate/{{env}}/webhook-secret"   # set it: lockgate param put … --secure
"""

_PARAMETER = """
[parameters."/lockgate/{env}/data/bucket"]
value = "{url}"
description = "Where {env}'s training data lives."
"""

FIRST_PORT = 20000
PORTS_PER_ENV = 1000


def render_platform_toml(org: str, environments: list[str], admin: str) -> str:
    """A complete, commented ``platform.toml`` for a new home."""
    parts = [_HEADER.format(org=org), "\n# Environments, in promotion order.\n"]
    for i, env in enumerate(environments):
        low = FIRST_PORT + i * PORTS_PER_ENV
        parts.append(_ENVIRONMENT.format(env=env, low=low, high=low + PORTS_PER_ENV - 1))
    parts.append("\n# Roles of the personas: permissions are 'area:action', with '*' wildcards.")
    for name, (description, permissions) in DEFAULT_ROLES.items():
        quoted = ", ".join(f'"{p}"' for p in permissions)
        parts.append(_ROLE.format(name=name, description=description, permissions=quoted))
    quoted_envs = ", ".join(f'"{e}"' for e in environments)
    rest = ", ".join(f'"{e}"' for e in environments[1:]) or f'"{environments[0]}"'
    parts.append(
        _FOOTER.format(first=environments[0], rest=rest, admin=admin, all_envs=quoted_envs)
    )
    for env in environments:
        url = f"file://{{home}}/envs/{env}/artifacts/data"
        parts.append(_PARAMETER.format(env=env, url=url))
    parts.append(_REGISTRY.format(first=environments[0]))
    return "".join(parts)
