"""Replication through the async API (``geobus.aio.GeoServiceBusClient``), real SDK, local namespaces."""

from __future__ import annotations

import pytest

from .drivers import AsyncDriver
from .scenarios import ActiveReplicationContract, PassiveFailoverContract, RejectionContract


@pytest.fixture
def driver() -> AsyncDriver:
    return AsyncDriver()


class TestActiveReplication(ActiveReplicationContract):
    """Async API, active mode: every message on both namespaces, each handled once."""


class TestPassiveFailover(PassiveFailoverContract):
    """Async API, passive mode: bounded sends through refusal and black holes, nothing lost."""


class TestRejections(RejectionContract):
    """Async API: the caller's mistakes raise unchanged, without failover or partial sends."""
