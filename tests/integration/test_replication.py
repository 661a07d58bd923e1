"""Replication through the sync API (``geobus.GeoServiceBusClient``), real SDK, local namespaces."""

from __future__ import annotations

import pytest

from .drivers import SyncDriver
from .scenarios import ActiveReplicationContract, PassiveFailoverContract, RejectionContract


@pytest.fixture
def driver() -> SyncDriver:
    return SyncDriver()


class TestActiveReplication(ActiveReplicationContract):
    """Sync API, active mode: every message on both namespaces, each handled once."""


class TestPassiveFailover(PassiveFailoverContract):
    """Sync API, passive mode: bounded sends through refusal and black holes, nothing lost."""


class TestRejections(RejectionContract):
    """Sync API: the caller's mistakes raise unchanged, without failover or partial sends."""
