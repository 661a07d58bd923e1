"""The ``replication`` benchmark's receives: DedupReceiver against two plain receivers.

``fill`` puts every message on both namespaces (active mode, quorum ``all``), so
a ``DedupReceiver`` (peek-lock + complete) draining a queue absorbs one
duplicate per message; two plain receivers, one per namespace and draining
concurrently, settle the same input. Both sides warm up on one message per
receiver and are then timed on the same number of copies, ``2 * (count - 1)``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from azure.servicebus import ServiceBusClient
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

import geobus
import geobus.aio

from . import common as bench
from .replication_shared import (
    LIST_SIZE,
    aclose_later,
    ageobus_client,
    close_later,
    geobus_client,
    messages,
)

RECEIVE_BATCH = 100
RECEIVE_DEADLINE = 60.0  # a drain that gets nothing for this long is a bug, not noise
TAIL_WAIT = 0.02  # receive wait once every message is in: only duplicates are left to absorb


async def fill(ns: bench.Namespaces, queues: Sequence[str], count: int) -> None:
    """Active mode, quorum all: every queue gets ``count`` messages on both namespaces,
    each pair with one MessageId, as a DedupReceiver meets them in production."""
    async with ageobus_client(ns, mode="active", write_quorum="all") as client:

        async def one(queue: str) -> None:
            async with client.get_queue_sender(queue) as sender:
                for start in range(0, count, LIST_SIZE):
                    await sender.send_messages(messages(min(LIST_SIZE, count - start)))

        await asyncio.gather(*(one(queue) for queue in queues))
    for queue in queues:
        ns.expect_on_each(queue, count)


class _Drain:
    """Progress of one drain, with a deadline on silence rather than on the whole."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last_state: Any = None
        self.last_progress = time.perf_counter()

    def check(self, state: Any) -> None:
        now = time.perf_counter()
        if state != self.last_state:
            self.last_state, self.last_progress = state, now
        elif now - self.last_progress > RECEIVE_DEADLINE:
            raise RuntimeError(f"{self.what}: stuck at {state} for {RECEIVE_DEADLINE:.0f} s")


def _count_delivered(batch: list[Any], ids: set[str], what: str) -> None:
    for message in batch:
        if message.message_id in ids:
            raise RuntimeError(f"{what}: message {message.message_id} was delivered twice")
        ids.add(message.message_id)


def _dedup_drain(receiver: geobus.DedupReceiver, count: int) -> float:
    """Warm up on one message, then time the other ``count - 1`` and every duplicate."""
    drain, ids = _Drain("sync DedupReceiver"), set[str]()
    while not ids:
        batch = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        _count_delivered(batch, ids, drain.what)
        for message in batch:
            receiver.complete_message(message)
        drain.check(len(ids))
    started = time.perf_counter()
    absorbed = 0
    while len(ids) < count or absorbed < count:
        wait = 1.0 if len(ids) < count else TAIL_WAIT
        batch = receiver.receive_messages(max_message_count=RECEIVE_BATCH, max_wait_time=wait)
        _count_delivered(batch, ids, drain.what)
        for message in batch:
            receiver.complete_message(message)
        absorbed = receiver.stats.duplicates_absorbed
        if len(ids) > count or absorbed > count:
            raise RuntimeError(
                f"{drain.what}: {len(ids)} delivered, {absorbed} absorbed of {count}"
            )
        drain.check((len(ids), absorbed))
    return time.perf_counter() - started


async def _adedup_drain(receiver: geobus.aio.DedupReceiver, count: int) -> float:
    drain, ids = _Drain("async DedupReceiver"), set[str]()
    while not ids:
        batch = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
        _count_delivered(batch, ids, drain.what)
        for message in batch:
            await receiver.complete_message(message)
        drain.check(len(ids))
    started = time.perf_counter()
    absorbed = 0
    while len(ids) < count or absorbed < count:
        wait = 1.0 if len(ids) < count else TAIL_WAIT
        batch = await receiver.receive_messages(max_message_count=RECEIVE_BATCH, max_wait_time=wait)
        _count_delivered(batch, ids, drain.what)
        for message in batch:
            await receiver.complete_message(message)
        absorbed = receiver.stats.duplicates_absorbed
        if len(ids) > count or absorbed > count:
            raise RuntimeError(
                f"{drain.what}: {len(ids)} delivered, {absorbed} absorbed of {count}"
            )
        drain.check((len(ids), absorbed))
    return time.perf_counter() - started


def _plain_warm_up(receiver: Any) -> None:
    drain = _Drain("sync plain receiver")
    while True:
        batch = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        for message in batch:
            receiver.complete_message(message)
        if batch:
            return
        drain.check(0)


def _plain_drain(receiver: Any, count: int, ends: list[float]) -> None:
    drain, got = _Drain("sync plain receiver"), 0
    while got < count:
        batch = receiver.receive_messages(
            max_message_count=min(RECEIVE_BATCH, count - got), max_wait_time=5
        )
        for message in batch:
            receiver.complete_message(message)
        got += len(batch)
        drain.check(got)
    ends.append(time.perf_counter())


def sync_receives(
    ns: bench.Namespaces,
    queues: dict[str, str],
    count: int,
    order: Sequence[str],
    closing: list[threading.Thread],
) -> dict[str, float]:
    """Seconds to drain ``2 * (count - 1)`` copies after a one-message warm-up per receiver."""
    timings = {}
    for who in order:
        if who == "dedup":
            client: Any = geobus_client(ns)
            receiver = client.get_queue_receiver(queues[who])
            try:
                timings[who] = _dedup_drain(receiver, count)
            finally:
                close_later(closing, receiver, client)
            continue
        clients = [ServiceBusClient.from_connection_string(cs) for cs in (ns.primary, ns.secondary)]
        receivers = [c.get_queue_receiver(queues[who]) for c in clients]
        try:
            for receiver in receivers:
                _plain_warm_up(receiver)
            # One thread per namespace, as a plain application reading two regions would run.
            ends: list[float] = []
            threads = [
                threading.Thread(target=_plain_drain, args=(r, count - 1, ends)) for r in receivers
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if len(ends) != 2:
                raise RuntimeError("a plain receiver thread failed (its traceback is above)")
            timings[who] = max(ends) - started
        finally:
            for receiver, client in zip(receivers, clients, strict=True):
                close_later(closing, receiver, client)
    return timings


async def _aplain_warm_up(receiver: Any) -> None:
    drain = _Drain("async plain receiver")
    while True:
        batch = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
        for message in batch:
            await receiver.complete_message(message)
        if batch:
            return
        drain.check(0)


async def _aplain_drain(receiver: Any, count: int) -> float:
    drain, got = _Drain("async plain receiver"), 0
    while got < count:
        batch = await receiver.receive_messages(
            max_message_count=min(RECEIVE_BATCH, count - got), max_wait_time=5
        )
        for message in batch:
            await receiver.complete_message(message)
        got += len(batch)
        drain.check(got)
    return time.perf_counter()


async def async_receives(
    ns: bench.Namespaces,
    queues: dict[str, str],
    count: int,
    order: Sequence[str],
    closing: list[asyncio.Task[None]],
) -> dict[str, float]:
    """As ``sync_receives``, with ``geobus.aio`` and the SDK's async receivers."""
    timings = {}
    for who in order:
        if who == "dedup":
            client: Any = ageobus_client(ns)
            receiver = client.get_queue_receiver(queues[who])
            try:
                timings[who] = await _adedup_drain(receiver, count)
            finally:
                aclose_later(closing, receiver, client)
            continue
        clients = [
            AsyncServiceBusClient.from_connection_string(cs) for cs in (ns.primary, ns.secondary)
        ]
        receivers = [c.get_queue_receiver(queues[who]) for c in clients]
        try:
            await asyncio.gather(*(_aplain_warm_up(r) for r in receivers))
            started = time.perf_counter()
            ends = await asyncio.gather(*(_aplain_drain(r, count - 1) for r in receivers))
            timings[who] = max(ends) - started
        finally:
            for receiver, client in zip(receivers, clients, strict=True):
                aclose_later(closing, receiver, client)
    return timings
