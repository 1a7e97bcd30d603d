"""The rule every promotion follows: forward along the environment order, one step at a time
unless the applied policy (``[registry] allow_environment_skip``) allows a jump."""

from __future__ import annotations

from lockgate.errors import ValidationError


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
