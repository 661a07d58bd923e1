"""Replication through the sync API (``geobus.GeoServiceBusClient``), real SDK, local namespaces."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from geobus.local import LocalNamespace

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


def test_closing_a_receiver_gives_back_what_it_fetched(namespace_factory: Callable[..., LocalNamespace]) -> None:
    """Fetched but never handed out: abandoned on close, so the next receiver gets them
    now, not when their 60 s locks expire (the SDK's own receiver leaves them locked)."""
    import time

    from azure.servicebus import ServiceBusMessage

    import geobus

    primary, secondary = namespace_factory(lock_duration=60), namespace_factory(lock_duration=60)
    config = geobus.ReplicationConfig.from_connection_strings(primary.connection_string, secondary.connection_string)
    with geobus.GeoServiceBusClient(config) as client:
        with client.get_queue_sender("orders") as sender:
            sender.send_messages([ServiceBusMessage(f"m{i}", message_id=f"m{i}") for i in range(5)])
        with client.get_queue_receiver("orders", prefetch=10) as receiver:
            [first] = receiver.receive_messages(1, max_wait_time=5)
            receiver.complete_message(first)
            deadline = time.monotonic() + 10
            while receiver.stats.received["primary"] < 5:  # the other four are fetched, not handed out
                assert time.monotonic() < deadline, receiver.stats
                time.sleep(0.02)
        rest: list[str] = []
        with client.get_queue_receiver("orders", max_wait_time=3) as receiver:
            for message in receiver:
                rest.append(str(message.message_id))
                receiver.complete_message(message)
                if len(rest) == 4:
                    break
    assert sorted(rest) == sorted({"m0", "m1", "m2", "m3", "m4"} - {str(first.message_id)})
