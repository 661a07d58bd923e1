"""The ``outbox`` benchmark's measurements: buffered sends and the drain, on one API at a time.

Not a benchmark itself: ``outbox.py`` runs these in rounds, and prints the table.
Each function measures one side (geobus, or the plain SDK) on one API; what the
sync and async halves decide (the drain's progress) is decided once, in ``DrainWatch``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusMessage

from geobus import BreakerPolicy, OutboxPolicy
from geobus._storage.outbox import ANY_LANE, Outbox

from . import common as bench
from .replication_shared import client, plain_client

BATCH = OutboxPolicy().batch_size  # the drainer's default batch, and the plain side's list size
WARM_UP = 20  # buffered sends before timing, the first of them the one that tries both namespaces
POLL = 0.002  # seconds between looks at the drainer's progress
COOLDOWN = 1.0  # breaker cooldown and drainer backoff cap for the run (defaults: 10 s)


@dataclass(frozen=True)
class Sizes:
    single: int  # buffered (and plain) sends of one message each, timed
    lists: int  # messages buffered as lists of BATCH after the single sends, timed

    @property
    def drained(self) -> int:
        """Everything buffered in one round: the drain's (and the plain side's list) count."""
        return WARM_UP + self.single + self.lists


QUICK = Sizes(single=200, lists=400)
FULL = Sizes(single=1500, lists=3500)


@dataclass
class GeobusTiming:
    first_s: float  # the first buffered send, which tried both namespaces
    single_s: float
    latencies_ms: list[float]
    lists_s: float
    drain_s: float  # from the first batch drained to the outbox empty
    drain_counted: int  # messages in drain_s (the first batch left out)
    heal_to_first_s: float
    heal_to_empty_s: float


@dataclass
class PlainTiming:
    single_s: float
    latencies_ms: list[float]
    lists_s: float


STALL = bench.STALL


def _lists(count: int) -> Iterator[list[ServiceBusMessage]]:
    for start in range(0, count, BATCH):
        yield [ServiceBusMessage(bench.BODY) for _ in range(min(BATCH, count - start))]


# -- servers ------------------------------------------------------------------------------


def _geobus(ns: bench.Pair, api: str, outbox: Path) -> Any:
    """A passive geobus client of ``api`` whose sends wait in ``outbox`` while both namespaces refuse."""
    return client(ns, api, "passive", outbox=OutboxPolicy(path=str(outbox), backoff_max=COOLDOWN),
                  breaker=BreakerPolicy(cooldown=COOLDOWN))


# -- the drain, watched ----------------------------------------------------------------------


class DrainWatch:
    """What the drainer's ``drained`` counter said when; no I/O, the loops only look and wait."""

    def __init__(self, total: int, healed: float) -> None:
        self.total = total
        self.healed = healed
        self.first: tuple[float, int] | None = None  # (when, drained) at the first batch seen
        self.empty: float | None = None
        self._last = (healed, 0)

    def observe(self, drained: int, now: float) -> bool:
        """True once every message is drained. Raises RuntimeError after STALL s without progress."""
        if drained > self._last[1]:
            self._last = (now, drained)
            if self.first is None:
                self.first = (now, drained)
        elif now - self._last[0] > STALL:
            raise RuntimeError(f"the drainer stalled at {drained} of {self.total} for {STALL:.0f} s")
        if drained >= self.total:
            self.empty = now
            return True
        return False

    def fill(self, timing: dict[str, Any]) -> None:
        assert self.first is not None and self.empty is not None
        when, counted = self.first
        if counted >= self.total:
            raise RuntimeError("the whole outbox drained within one poll: raise Sizes.lists")
        timing.update(
            drain_s=self.empty - when,
            drain_counted=self.total - counted,
            heal_to_first_s=when - self.healed,
            heal_to_empty_s=self.empty - self.healed,
        )


def _expect_buffered(result: Any) -> None:
    if result.landed or result.buffered != (ANY_LANE,):
        raise RuntimeError(f"expected a buffered send while both namespaces refuse, got {result!r}")


# -- sync -----------------------------------------------------------------------------------------


def sync_plain(ns: bench.Pair, sizes: Sizes) -> PlainTiming:
    queue = bench.queue_name("plain-sync")
    with plain_client("sync", ns.primary.connection_string) as plain:
        with plain.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage(bench.BODY))  # opens the link, untimed
            single_s, latencies = bench.time_single_sends(sender.send_messages, sizes.single)
            started = time.perf_counter()
            for batch in _lists(sizes.drained):
                sender.send_messages(batch)
            lists_s = time.perf_counter() - started
    bench.expect_in_all(ns, queue, 1 + sizes.single + sizes.drained)
    return PlainTiming(single_s, latencies, lists_s)


def sync_geobus(ns: bench.Pair, sizes: Sizes, outbox: Path) -> GeobusTiming:
    queue = bench.queue_name("outbox-sync")
    timing: dict[str, Any] = {}
    ns.refuse()
    try:
        with _geobus(ns, "sync", outbox) as geo, geo.get_queue_sender(queue) as sender:
            started = time.perf_counter()
            _expect_buffered(sender.send_messages(ServiceBusMessage(bench.BODY)))
            timing["first_s"] = time.perf_counter() - started
            for _ in range(WARM_UP - 1):
                _expect_buffered(sender.send_messages(ServiceBusMessage(bench.BODY)))
            timing["single_s"], timing["latencies_ms"] = bench.time_single_sends(
                lambda message: _expect_buffered(sender.send_messages(message)), sizes.single)
            started = time.perf_counter()
            for batch in _lists(sizes.lists):
                _expect_buffered(sender.send_messages(batch))
            timing["lists_s"] = time.perf_counter() - started
            if sender.stats.outbox_depth != sizes.drained:
                raise RuntimeError(f"{sender.stats.outbox_depth} messages buffered, expected {sizes.drained}")
            ns.heal()
            watch = DrainWatch(sizes.drained, time.perf_counter())
            while not watch.observe(sender.stats.drained, time.perf_counter()):
                time.sleep(POLL)
            watch.fill(timing)
    finally:
        ns.heal()
    bench.expect_in_all(ns, queue, sizes.drained)
    return GeobusTiming(**timing)


def outbox_appends(count: int, path: Path) -> float:
    """Seconds for ``count`` one-message appends to a fresh outbox file (no sender, no loop)."""
    outbox = Outbox(OutboxPolicy(path=str(path)))
    try:
        messages = [ServiceBusMessage(bench.BODY, message_id=str(uuid.uuid4())) for _ in range(count)]
        started = time.perf_counter()
        for message in messages:
            outbox.append("queue:bench", [ANY_LANE], [message])
        seconds = time.perf_counter() - started
        if outbox.depth() != count:
            raise RuntimeError(f"the outbox holds {outbox.depth()} messages, expected {count}")
        return seconds
    finally:
        outbox.close()


# -- async ----------------------------------------------------------------------------------------


async def async_plain(ns: bench.Pair, sizes: Sizes) -> PlainTiming:
    queue = bench.queue_name("plain-async")
    async with plain_client("async", ns.primary.connection_string) as plain:
        async with plain.get_queue_sender(queue) as sender:
            await sender.send_messages(ServiceBusMessage(bench.BODY))
            single_s, latencies = await bench.atime_single_sends(sender.send_messages, sizes.single)
            started = time.perf_counter()
            for batch in _lists(sizes.drained):
                await sender.send_messages(batch)
            lists_s = time.perf_counter() - started
    bench.expect_in_all(ns, queue, 1 + sizes.single + sizes.drained)
    return PlainTiming(single_s, latencies, lists_s)


async def async_geobus(ns: bench.Pair, sizes: Sizes, outbox: Path) -> GeobusTiming:
    queue = bench.queue_name("outbox-async")
    timing: dict[str, Any] = {}
    ns.refuse()  # a blocking HTTP call, made while nothing else runs on this loop
    try:
        geo = _geobus(ns, "async", outbox)
        async with geo, geo.get_queue_sender(queue) as sender:
            started = time.perf_counter()
            _expect_buffered(await sender.send_messages(ServiceBusMessage(bench.BODY)))
            timing["first_s"] = time.perf_counter() - started
            for _ in range(WARM_UP - 1):
                _expect_buffered(await sender.send_messages(ServiceBusMessage(bench.BODY)))

            async def send(message: ServiceBusMessage) -> None:
                _expect_buffered(await sender.send_messages(message))

            timing["single_s"], timing["latencies_ms"] = await bench.atime_single_sends(send, sizes.single)
            started = time.perf_counter()
            for batch in _lists(sizes.lists):
                _expect_buffered(await sender.send_messages(batch))
            timing["lists_s"] = time.perf_counter() - started
            if sender.stats.outbox_depth != sizes.drained:
                raise RuntimeError(f"{sender.stats.outbox_depth} messages buffered, expected {sizes.drained}")
            await asyncio.to_thread(ns.heal)
            watch = DrainWatch(sizes.drained, time.perf_counter())
            while not watch.observe(sender.stats.drained, time.perf_counter()):
                await asyncio.sleep(POLL)
            watch.fill(timing)
    finally:
        await asyncio.to_thread(ns.heal)
    bench.expect_in_all(ns, queue, sizes.drained)
    return GeobusTiming(**timing)
