"""The real azure-servicebus client, and geobus, through a ``FaultProxy`` to local namespaces.

A client that talked through a faulted proxy is closed only after ``heal()``:
closing waits on a black hole otherwise (as against a faulted namespace).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

import geobus
from geobus.testing import (
    FaultProxy,
    NamespacePair,
    fault_proxy,
    local_pair,
    proxied_connection_string,
    sdk_proxy_options,
)
from integration.drivers import DRIVERS, Driver

pytestmark = pytest.mark.timeout(60)

QUEUE = "q"
ATTEMPT, SEND = 1.0, 3.0
FAST: dict[str, Any] = {"deadlines": geobus.Deadlines(attempt=ATTEMPT, send=SEND), "retry": geobus.SdkRetryPolicy(total=0)}
# Scheduling noise on two shared cores: a bound that proves "within the deadline", not speed.
MARGIN = 1.5
FAULTS = ["black_hole", "refuse"]


@pytest.fixture
def pair() -> Iterator[NamespacePair]:
    with local_pair() as pair:
        yield pair


@pytest.fixture
def proxy(pair: NamespacePair) -> Iterator[FaultProxy]:
    with fault_proxy(pair.primary) as proxy:
        yield proxy


def _ids_on(namespace_connection_string: str) -> list[str]:
    """The message ids held on one namespace's queue, in order (peeked: no wait, no change)."""
    with ServiceBusClient.from_connection_string(namespace_connection_string) as client:
        with client.get_queue_receiver(QUEUE) as receiver:
            return [str(m.message_id) for m in receiver.peek_messages(max_message_count=50)]


class TestSdkThroughTheProxy:
    """Send and receive work through the proxy, with either way of addressing it."""

    @pytest.mark.parametrize("addressing", ["options", "connection_string"])
    def test_sync(self, pair: NamespacePair, proxy: FaultProxy, addressing: str) -> None:
        conn_str, options = _addressed(pair, proxy, addressing)
        with ServiceBusClient.from_connection_string(conn_str, **options) as client:
            with client.get_queue_sender(QUEUE) as sender:
                sender.send_messages([ServiceBusMessage(f"m{i}", message_id=f"m{i}") for i in range(3)])
                assert proxy.connection_count >= 1  # the sender's connection is the proxy's
            with client.get_queue_receiver(QUEUE, max_wait_time=2) as receiver:
                got = receiver.receive_messages(max_message_count=3, max_wait_time=5)
                for message in got:
                    receiver.complete_message(message)
        assert sorted(str(m.message_id) for m in got) == ["m0", "m1", "m2"]
        assert pair.primary.counts().get(QUEUE, 0) == 0

    @pytest.mark.parametrize("addressing", ["options", "connection_string"])
    async def test_async(self, pair: NamespacePair, proxy: FaultProxy, addressing: str) -> None:
        conn_str, options = _addressed(pair, proxy, addressing)
        async with AsyncServiceBusClient.from_connection_string(conn_str, **options) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                await sender.send_messages(ServiceBusMessage("hello", message_id="a0"))
                assert proxy.connection_count >= 1
            async with client.get_queue_receiver(QUEUE, max_wait_time=2) as receiver:
                got = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
                for message in got:
                    await receiver.complete_message(message)
        assert [str(m.message_id) for m in got] == ["a0"]

    def test_latency_slows_the_client_down(self, pair: NamespacePair, proxy: FaultProxy) -> None:
        cs = pair.primary.connection_string
        with ServiceBusClient.from_connection_string(cs, **sdk_proxy_options(proxy, cs)) as client:
            with client.get_queue_sender(QUEUE) as sender:
                sender.send_messages(ServiceBusMessage("warm"))
                proxy.set_latency(0.2)
                started = time.monotonic()
                sender.send_messages(ServiceBusMessage("slow"))
                # A send is a transfer out and a disposition back: at least one round trip.
                assert time.monotonic() - started >= 0.4
                proxy.heal()
        assert pair.primary.counts() == {QUEUE: 2}


def _addressed(pair: NamespacePair, proxy: FaultProxy, addressing: str) -> tuple[str, dict[str, Any]]:
    cs = pair.primary.connection_string
    if addressing == "options":
        return cs, sdk_proxy_options(proxy, cs)
    return proxied_connection_string(cs, proxy), {}


class TestGeobusFailsOverThroughTheProxy:
    """A passive ReplicatedSender whose primary is cut at the proxy: bounded failover, nothing lost."""

    @pytest.mark.parametrize("driver", DRIVERS)
    @pytest.mark.parametrize("fault", FAULTS)
    async def test_passive_sender(self, pair: NamespacePair, proxy: FaultProxy, fault: str, driver: Driver) -> None:
        config = pair.config(primary_via=proxy, mode="passive", **FAST)
        results: dict[str, geobus.SendResult] = {}
        durations: list[float] = []
        async with driver.client(config) as client:
            try:
                async with client.get_queue_sender(QUEUE) as sender:
                    results["m0"] = await sender.send_messages(ServiceBusMessage("m0", message_id="m0"))
                    getattr(proxy, fault)()
                    for i in range(1, 6):
                        started = time.monotonic()
                        message = ServiceBusMessage(f"m{i}", message_id=f"m{i}")
                        results[f"m{i}"] = await sender.send_messages(message)
                        durations.append(time.monotonic() - started)
                    stats = sender.stats
            finally:
                proxy.heal()
        _assert_failed_over(pair, results, durations, stats)


def _assert_failed_over(
    pair: NamespacePair,
    results: dict[str, geobus.SendResult],
    durations: list[float],
    stats: geobus.SenderStats,
) -> None:
    assert results["m0"].landed == ("primary",)
    assert results["m1"].failed_over and results["m1"].landed == ("secondary",)
    assert all(results[f"m{i}"].landed == ("secondary",) for i in range(2, 6))
    assert max(durations) <= SEND + MARGIN, f"a send outlived its deadline: {durations}"
    assert stats.failovers == 1 and stats.active_namespace == "secondary"
    # Nothing acknowledged is lost: every id is on a namespace. A copy the black hole held
    # may land on the primary after the heal; a receiver's dedup absorbs it.
    on_primary = _ids_on(pair.primary.connection_string)
    on_secondary = _ids_on(pair.secondary.connection_string)
    assert on_secondary == [f"m{i}" for i in range(1, 6)]
    assert "m0" in on_primary and set(on_primary) <= {"m0", "m1"}
