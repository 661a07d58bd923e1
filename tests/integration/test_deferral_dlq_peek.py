"""Deferral, dead-letter queues and peek over two namespaces: the real SDK against two local namespaces.

Each test that takes the ``driver`` fixture runs through ``geobus`` (sync, each call
from a worker thread) and ``geobus.aio``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

import geobus
from geobus.local import LocalNamespace
from geobus.testing import NamespacePair, eventually_async

from .drivers import Driver
from .helpers import FAST, QUEUE, depth, empty, healed, start_pair

pytestmark = pytest.mark.timeout(90)
DLQ = f"{QUEUE}/$deadletterqueue"


async def call(receiver: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``receiver.name(...)`` through either driver: the sync receiver's from a worker thread."""
    sync = getattr(receiver, "_sync", None)
    if sync is not None:
        return await asyncio.to_thread(getattr(sync, name), *args, **kwargs)
    result = getattr(receiver, name)(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


async def receive(receiver: Any, count: int, *, within: float = 10.0) -> list[ServiceBusReceivedMessage]:
    """Receive until ``count`` messages came; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    out: list[ServiceBusReceivedMessage] = []
    while len(out) < count:
        assert loop.time() < deadline, f"received {len(out)} of {count}"
        out += await receiver.receive_messages(count - len(out), max_wait_time=0.5)
    return out


async def quiet(receiver: Any, seconds: float = 1.5) -> list[ServiceBusReceivedMessage]:
    """What the receiver still hands out within ``seconds`` (the twins it looks at meanwhile are settled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    out: list[ServiceBusReceivedMessage] = []
    while loop.time() < deadline:
        out += await receiver.receive_messages(10, max_wait_time=0.3)
    return out


def count(pair: NamespacePair, entity: str) -> dict[str, int]:
    return {role: counts.get(entity, 0) for role, counts in pair.counts().items()}


async def send(client: Any, *ids: str) -> None:
    async with client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages([ServiceBusMessage(f"body of {i}", message_id=i) for i in ids])


class TestDeferral:
    """A deferred message and its twin are deferred together and received back once."""

    @pytest.mark.parametrize("mode", ["active", "passive"])
    async def test_defer_and_receive_back_by_sequence_number(self, driver: Driver, pair: NamespacePair, mode: str) -> None:
        async with driver.client(pair.config(mode=mode, **FAST)) as client:
            await send(client, "a", "b")
            async with client.get_queue_receiver(QUEUE, max_wait_time=1) as receiver:
                got = await receive(receiver, 2)
                deferred = [m for m in got if m.message_id == "a"]
                for m in got:
                    if m.message_id == "a":
                        await call(receiver, "defer_message", m)
                    else:
                        await call(receiver, "complete_message", m)
                assert await quiet(receiver) == []  # the twin of "a" is deferred, not delivered
                handle = await call(receiver, "deferral_handle", deferred[0])
                assert handle.startswith("geobus:") and "primary=" in handle  # the deferred copy's namespace first
                assert ("secondary=" in handle) == (mode == "active")

                back = await call(
                    receiver, "receive_deferred_messages", sequence_numbers=[m.sequence_number for m in deferred]
                )
                assert [m.message_id for m in back] == ["a"]
                await call(receiver, "complete_message", back[0])
                assert await quiet(receiver) == []
        await eventually_async(lambda: empty(pair), within=10, what=lambda: depth(pair))

    async def test_a_handle_receives_back_in_a_new_receiver_with_one_region_refused(
        self, driver: Driver, pair: NamespacePair
    ) -> None:
        async with driver.client(pair.config(mode="active", **FAST)) as client:
            await send(client, "a")
            async with client.get_queue_receiver(QUEUE, max_wait_time=1) as receiver:
                (first,) = await receive(receiver, 1)
                origin = receiver.namespace_of(first)
                await call(receiver, "defer_message", first)
                assert await quiet(receiver) == []
                handle = await call(receiver, "deferral_handle", first)
            assert "primary=" in handle and "secondary=" in handle

        async with driver.client(pair.config(mode="active", **FAST)) as client, healed(pair.primary), healed(pair.secondary):
            pair.refuse(origin)  # the region of the copy that was deferred does not answer
            async with client.get_queue_receiver(QUEUE, max_wait_time=1) as receiver:
                (back,) = await call(receiver, "receive_deferred_messages", [handle])
                assert back.message_id == "a" and receiver.namespace_of(back) != origin
                await call(receiver, "complete_message", back)
        # The copy left deferred in the refused region stays there (nobody here could fetch it).
        assert count(pair, QUEUE) == {origin: 1, ("secondary" if origin == "primary" else "primary"): 0}


class TestDeadLetters:
    """A dead-letter receiver reads both regions' dead-letter queues, each message once."""

    async def test_each_message_read_once_and_completing_it_completes_its_twin(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        pair = start_pair(namespace_factory, max_delivery_count=1)
        async with driver.client(pair.config(mode="active", **FAST)) as client:
            await send(client, "p1", "p2")
            async with client.get_queue_receiver(QUEUE, max_wait_time=1) as receiver:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 15
                # Every copy is abandoned: past the max delivery count, each region dead-letters its own.
                while count(pair, DLQ) != {"primary": 2, "secondary": 2}:
                    assert loop.time() < deadline, pair.counts()
                    for m in await receiver.receive_messages(5, max_wait_time=0.3):
                        await call(receiver, "abandon_message", m)
            assert count(pair, QUEUE) == {"primary": 0, "secondary": 0}

            async with client.get_queue_receiver(
                QUEUE, max_wait_time=1, sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dead:
                got = await receive(dead, 2)
                assert sorted(str(m.message_id) for m in got) == ["p1", "p2"]
                assert all(m.dead_letter_reason for m in got)
                for m in got:
                    await call(dead, "complete_message", m)
                assert await quiet(dead) == []
        await eventually_async(lambda: empty(pair), within=10, what=lambda: depth(pair))

    async def test_a_dead_letter_receiver_and_a_main_receiver_share_a_seen_set(
        self, driver: Driver, pair: NamespacePair, tmp_path: Path
    ) -> None:
        config = pair.config(mode="active", dedup=geobus.DedupPolicy(store=f"sqlite:{tmp_path / 'seen.db'}"), **FAST)
        async with driver.client(config) as client:
            await send(client, "x")
            async with client.get_queue_receiver(QUEUE, max_wait_time=1) as main:
                (m,) = await receive(main, 1)
                await call(main, "dead_letter_message", m, reason="bad", error_description="test")
                assert await quiet(main) == []
            await eventually_async(lambda: count(pair, DLQ) == {"primary": 1, "secondary": 1}, within=10)
            await send(client, "y")
            async with (
                client.get_queue_receiver(QUEUE, max_wait_time=1) as main,
                client.get_queue_receiver(QUEUE, max_wait_time=1, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead,
            ):
                (dead_letter,) = await receive(dead, 1)  # "x" was dead-lettered in the main queue's keys only
                assert dead_letter.message_id == "x"
                (fresh,) = await receive(main, 1)
                assert fresh.message_id == "y"
                await call(dead, "complete_message", dead_letter)
                await call(main, "complete_message", fresh)
                assert await quiet(dead) == [] and await quiet(main, 0.5) == []
        await eventually_async(lambda: empty(pair), within=10, what=lambda: depth(pair))


class TestPeek:
    """Peek browses both regions, each message once, without a lock."""

    async def test_twins_marked_and_no_lock_taken(self, driver: Driver, pair: NamespacePair) -> None:
        ids = [f"k{i}" for i in range(4)]
        async with driver.client(pair.config(mode="active", **FAST)) as client:
            await send(client, *ids)
            async with client.get_queue_receiver(QUEUE, max_wait_time=1) as receiver:
                first = await call(receiver, "peek_messages", 3)
                rest = await call(receiver, "peek_messages", 3)
                assert [m.message_id for m in first + rest] == ids
                for m in first + rest:
                    seen = await call(receiver, "sequence_numbers_of", m)
                    assert set(seen) == {"primary", "secondary"}
                again = await call(receiver, "peek_messages", 10, sequence_number=1)
                assert [m.message_id for m in again] == ids
                # Nothing was locked: every message is received at once, each once.
                got = await receive(receiver, 4, within=5)
                assert sorted(str(m.message_id) for m in got) == ids
                for m in got:
                    await call(receiver, "complete_message", m)
                assert await quiet(receiver) == []
        await eventually_async(lambda: empty(pair), within=10, what=lambda: depth(pair))


class TestDeferralInAFleet:
    """Two workers (each its own client) share a SQLite seen-set: a deferred message reaches one handler."""

    async def test_a_twin_reaching_another_worker_while_deferred_is_deferred_there(
        self, driver: Driver, pair: NamespacePair, tmp_path: Path
    ) -> None:
        config = pair.config(mode="active", dedup=geobus.DedupPolicy(store=f"sqlite:{tmp_path / 'seen.db'}"), **FAST)

        async def send_to(namespace: LocalNamespace) -> None:
            """One copy of "a", straight to one region: which worker fetches which copy is the test's."""
            async with ServiceBusClient.from_connection_string(namespace.connection_string) as plain:
                async with plain.get_queue_sender(QUEUE) as sender:
                    await sender.send_messages(ServiceBusMessage("body of a", message_id="a"))

        async with driver.client(config) as one, driver.client(config) as other:
            await send_to(pair.primary)
            async with one.get_queue_receiver(QUEUE, max_wait_time=1) as first:
                (message,) = await receive(first, 1)
                await call(first, "defer_message", message)
                handle = await call(first, "deferral_handle", message)
            await send_to(pair.secondary)  # its twin, which the other worker fetches
            async with other.get_queue_receiver(QUEUE, max_wait_time=1) as second:
                assert await quiet(second) == []  # deferred there, as the store says: not delivered
                await eventually_async(lambda: count(pair, QUEUE) == {"primary": 1, "secondary": 1}, within=10)
                async with one.get_queue_receiver(QUEUE, max_wait_time=1) as again:
                    (back,) = await call(again, "receive_deferred_messages", [handle])
                    assert back.message_id == "a"
                    await call(again, "complete_message", back)
                assert await quiet(second, 0.5) == []
        # The twin the other worker deferred is in no handle of the first: it stays deferred in its region.
        await eventually_async(lambda: count(pair, QUEUE) == {"primary": 0, "secondary": 1}, within=10)
