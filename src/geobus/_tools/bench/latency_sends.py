"""The ``latency`` benchmark's sends: one sender at a time, and many senders sharing one client.

Every timed part is a ``Clock``: wall-clock seconds and this process's CPU
seconds (``time.process_time``, every thread: the SDK's, geobus's, the
benchmark's own), over the same messages. The proxies and the namespaces run in
processes of their own, so the CPU is the client's alone.

A sender first reaches its steady state untimed (``replication_shared.steady``:
its link open, a geobus sender's standby link too); only the sends are timed, one
message per call. Many senders: ``THREADS`` threads (sync) or ``TASKS`` tasks
(async) share one geobus passive sender, against as many plain senders (one
each) from one plain client.

Every sender (each thread or task) first sends untimed for ``WARM_SECONDS``, on
both sides, so that the geobus sender is timed in its steady state (its pool of
links grown, each thread's own sync link open) as the plain senders, each opened
before, are: a sync geobus sender opens a thread's own link aside at its second
send and sends through its loop until it is open, which takes the SDK ~0.46 s (it
polls its handshake every 50 ms). A fixed number of warm-up sends was shorter
than that on loopback, so the sync rows timed the loop path. Many tasks or threads
sharing one sender warm for ``CROWD_WARM_SECONDS``: its pool opens links four at
a time while all are busy, up to 16.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusMessage

from . import common as bench
from .replication_shared import Via, asteady, client, steady

THREADS, TASKS = 16, 64
WARM_SECONDS = 0.75  # untimed sends by every sender (thread or task) before it is timed
# ... and by each of many sharing one sender: its pool opens links 4 at a time, each in ~0.5 s
CROWD_WARM_SECONDS = 2.5


def warm(send: Callable[[ServiceBusMessage], object], seconds: float = WARM_SECONDS) -> None:
    """Send one message a call, untimed, for ``seconds``."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        send(ServiceBusMessage(bench.BODY))


async def awarm(send: Callable[[ServiceBusMessage], Awaitable[object]], seconds: float = WARM_SECONDS) -> None:
    """As ``warm``, awaiting each send."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        await send(ServiceBusMessage(bench.BODY))


@dataclass(frozen=True)
class Timing:
    """One timed part: ``count`` messages (or copies) in ``seconds``, costing ``cpu`` seconds of CPU."""

    seconds: float
    cpu: float
    count: int


class Clock:
    """Started on construction; ``stop`` gives the ``Timing`` of ``count`` messages since."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self, count: int) -> Timing:
        return Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu, count)


def sync_send(ns: bench.Pair, via: Via, who: str, count: int, closing: list[threading.Thread]) -> Timing:
    """``count`` sends of one message by one sender (``plain``, ``passive`` or ``active``)."""
    sending = client(ns, "sync", who, via)
    sender = sending.get_queue_sender(bench.queue_name(f"send-sync-{who}"))
    try:
        steady(sender)
        warm(sender.send_messages)
        clock = Clock()
        bench.time_single_sends(sender.send_messages, count)
        return clock.stop(count)
    finally:
        bench.close_later(closing, sender, sending)


async def async_send(ns: bench.Pair, via: Via, who: str, count: int, closing: list[asyncio.Task[None]]) -> Timing:
    """As ``sync_send``, with ``geobus.aio`` and the SDK's async sender."""
    sending = client(ns, "async", who, via)
    sender = sending.get_queue_sender(bench.queue_name(f"send-async-{who}"))
    try:
        await asteady(sender)
        await awarm(sender.send_messages)
        clock = Clock()
        await bench.atime_single_sends(sender.send_messages, count)
        return clock.stop(count)
    finally:
        bench.aclose_later(closing, sender, sending)


def _crowd(ns: bench.Pair, api: str, via: Via, side: str, many: int) -> tuple[Any, list[Any]]:
    """One client and ``many`` senders' places: all one geobus passive sender, or a plain sender each."""
    sending = client(ns, api, "passive" if side == "geobus" else "plain", via)
    queue = bench.queue_name(f"crowd-{api}-{side}")
    if side == "geobus":
        return sending, [sending.get_queue_sender(queue)] * many
    return sending, [sending.get_queue_sender(queue) for _ in range(many)]


def sync_crowd(ns: bench.Pair, via: Via, side: str, count: int, closing: list[threading.Thread]) -> Timing:
    """``THREADS`` threads sending ``count // THREADS`` messages each, one per call."""
    per = count // THREADS
    sending, senders = _crowd(ns, "sync", via, side, THREADS)
    distinct = list(dict.fromkeys(senders))
    try:
        with ThreadPoolExecutor(THREADS, thread_name_prefix="crowd") as pool:
            list(pool.map(steady, distinct))  # opened at once, untimed
            list(pool.map(lambda sender: warm(sender.send_messages, CROWD_WARM_SECONDS), senders))
            clock = Clock()
            list(pool.map(lambda sender: bench.time_single_sends(sender.send_messages, per), senders))
            return clock.stop(per * THREADS)
    finally:
        bench.close_later(closing, sending, together=distinct)


async def async_crowd(ns: bench.Pair, via: Via, side: str, count: int, closing: list[asyncio.Task[None]]) -> Timing:
    """As ``sync_crowd``, with ``TASKS`` tasks on one loop."""
    per = count // TASKS
    sending, senders = _crowd(ns, "async", via, side, TASKS)
    distinct = list(dict.fromkeys(senders))
    try:
        await asyncio.gather(*(asteady(sender) for sender in distinct))
        await asyncio.gather(*(awarm(sender.send_messages, CROWD_WARM_SECONDS) for sender in senders))
        clock = Clock()
        await asyncio.gather(*(bench.atime_single_sends(sender.send_messages, per) for sender in senders))
        return clock.stop(per * TASKS)
    finally:
        bench.aclose_later(closing, sending, together=distinct)
