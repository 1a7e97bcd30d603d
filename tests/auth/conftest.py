"""A real OIDC issuer on loopback, for the tests that exchange its tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from issuer import Issuer  # type: ignore[import-not-found]


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    running = Issuer()
    yield running
    running.close()
