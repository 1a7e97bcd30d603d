"""The rule every promotion follows: forward along the environment order, one step at a time
unless the applied policy (``[registry] allow_environment_skip``) allows a jump."""

from __future__ import annotations

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.errors import ValidationError
from lockgate.platform import Environment


def check_path(order: list[str], source: str, target: str, *, allow_skip: bool) -> None:
    """Raise a :class:`ValidationError` unless ``source → target`` may be promoted."""
    step = order.index(target) - order.index(source)
    if step == 1 or (step > 1 and allow_skip):
        return
    position = order.index(source) + 1
    expected = order[position] if position < len(order) else None
    raise ValidationError(
        f"{source} → {target} is not along the environment order ({' → '.join(order)}).",
        hint=f"Promote to {expected} first." if expected else f"{source} is the last environment.",
    )


def check_promotion(
    principal: Principal,
    order: list[str],
    source: Environment,
    target: Environment,
    *,
    permission: str,
    action: str,
    what: str,
    allow_skip: bool,
) -> str:
    """Authorize a promotion of ``what`` from ``source`` to ``target`` and check its path; a
    refusal is audited in the target. Returns the audit target, ``SOURCE:WHAT -> TARGET``."""
    action_target = f"{source.name}:{what} -> {target.name}"
    authorize(target.store, principal, permission, env=target.name, target=action_target)
    try:
        check_path(order, source.name, target.name, allow_skip=allow_skip)
    except ValidationError:
        audit.record_refusal(
            target.store,
            actor=principal.name,
            action=action,
            target=action_target,
            reason="environment order",
        )
        raise
    return action_target
