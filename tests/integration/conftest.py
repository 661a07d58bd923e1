"""Fixtures of the integration tests: ``driver`` runs a test through the sync and the async
API; ``pair`` is two local namespaces."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from geobus.local import LocalNamespace
from geobus.testing import NamespacePair

from .drivers import DRIVERS, Driver
from .helpers import start_pair


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    """``SyncDriver`` (``geobus``) or ``AsyncDriver`` (``geobus.aio``)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def pair(namespace_factory: Callable[..., LocalNamespace]) -> NamespacePair:
    """Two local namespaces with default settings, as the client's primary and secondary."""
    return start_pair(namespace_factory)
