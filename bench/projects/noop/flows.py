"""No-op pipelines for the orchestration benchmark: the work is nothing, so the time is ours."""

from __future__ import annotations

from lockgate import pipeline, step


@step(cache=False)
def noop(previous: int) -> int:
    return previous + 1


@step
def cached_noop(previous: int) -> int:
    return previous + 1


@pipeline(name="chain")
def chain(length: int = 10) -> None:
    value = noop(0)
    for _ in range(9):
        value = noop(value)


@pipeline(name="fanout")
def fanout() -> None:
    for i in range(50):
        noop(i)


@pipeline(name="cached-chain")
def cached_chain() -> None:
    value = cached_noop(0)
    for _ in range(9):
        value = cached_noop(value)


@pipeline(name="two-steps")
def two_steps() -> None:
    noop(noop(0))
