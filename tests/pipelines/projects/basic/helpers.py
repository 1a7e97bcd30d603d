"""Helpers of the test project; tests edit this file to check cache invalidation."""


def scale(value: float) -> float:
    return value * 2
