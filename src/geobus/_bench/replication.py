"""What replication costs, and what it buys: geobus against plain azure-servicebus.

    .venv/bin/python benchmarks/replication.py [--quick] [--json]
    python -m geobus._bench.replication ...     # the same, from an installed geobus
    geobus bench --only replication [--quick]   # its rows in geobus bench's table of ratios

Two local namespaces, each ``geobus local`` in its own process (as two regions
would be, and as ``local_namespace.py``'s headline runs), serve both sides of
every comparison in the same run:

1. passive ``ReplicatedSender`` against one plain ``ServiceBusSender``: one
   message per call (throughput, p50/p99 latency) and lists of 100;
2. active ``ReplicatedSender`` (both copies, quorum ``any``) against the same
   one plain sender, so the ratio is the whole price of the second copy;
3. ``DedupReceiver`` (peek-lock + complete) draining a queue that active mode
   filled on both namespaces, so it absorbs one duplicate per message, against
   two plain receivers (one per namespace, concurrently) draining the same
   input; both sides are timed on the same number of copies;
4. failover: a passive sender whose primary is refused, then black-holed:
   seconds from the fault to the first send stored on the secondary, against
   an application doing the same by hand with the SDK's default retry settings
   (refused: measured once in full mode; black hole: no bound, so cut off);
5. the seen-set (``DuplicateTracker``): bytes per remembered id (tracemalloc)
   and checks per second, against a plain Python ``set`` of the same ids.

1-3 run for the sync API and ``geobus.aio``; configurations alternate between
rounds and the best round of each row is kept (noise only ever slows a run).
``--quick`` is a smoke run: fewer messages, one round, 100,000 ids, and
SDK_FACTS.md's figures (11.2 s refused, unbounded black hole) stand in for the
plain SDK's failover instead of waiting on it.
Ratios are geobus / plain, from one run: the machine is small and shared, so
absolute figures drift from run to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from typing import Any, NoReturn

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import ServiceBusError

import geobus
import geobus.aio
from geobus._dedup import Copy, DuplicateTracker, Verdict

from . import _common as bench

LIST_SIZE = 100
RECEIVE_BATCH = 100
RECEIVE_DEADLINE = 60.0  # a drain that gets nothing for this long is a bug, not noise
TAIL_WAIT = 0.02  # receive wait once every message is in: only duplicates are left to absorb
FAILOVER_LIMIT = 60.0  # a failover that has not happened by then is a bug
BLACK_HOLE_CUTOFF = 20.0  # the plain SDK hung this long on a black hole: called unbounded
DOCUMENTED_REFUSED_S = 11.2  # SDK_FACTS.md: fresh sender, defaults, connection refused
APIS = ("sync", "async")
SENDERS = ("plain", "passive", "active")
RECEIVERS = ("plain", "dedup")


@dataclass(frozen=True)
class Sizes:
    single: int  # single-message sends per sender
    lists: int  # messages sent as lists of LIST_SIZE per sender
    receive: int  # messages per receive scenario; each is on both namespaces
    seen_ids: int  # ids in the seen-set
    measure_plain_faults: bool  # else SDK_FACTS.md's figures stand in for the plain SDK's


QUICK = Sizes(single=100, lists=200, receive=100, seen_ids=100_000, measure_plain_faults=False)
FULL = Sizes(single=1000, lists=4000, receive=1000, seen_ids=1_000_000, measure_plain_faults=True)


@dataclass
class SendTiming:
    single_s: float
    latencies_ms: list[float]
    lists_s: float


@dataclass
class Metric(bench.Comparison):
    """One table row. ``ratio`` is geobus / plain; ``plain`` is None when it never finished.

    ``plain_source``: ``measured`` in this run, ``documented`` (SDK_FACTS.md, not
    measured), or ``cut-off`` (still running when the benchmark gave up on it)."""

    plain_source: str = "measured"
    plain_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else float(f"{self.ratio:.4g}")
        return data


def _messages(count: int) -> list[ServiceBusMessage]:
    return [ServiceBusMessage(bench.BODY) for _ in range(count)]


# -- servers ------------------------------------------------------------------------------


def _geobus(ns: bench.Namespaces, **options: Any) -> geobus.GeoServiceBusClient:
    return geobus.GeoServiceBusClient.from_connection_strings(ns.primary, ns.secondary, **options)


def _ageobus(ns: bench.Namespaces, **options: Any) -> geobus.aio.GeoServiceBusClient:
    return geobus.aio.GeoServiceBusClient.from_connection_strings(ns.primary, ns.secondary, **options)


# -- closing in the background ---------------------------------------------------------------
#
# Closing an SDK handler takes ~0.5 s of waiting (the sync one joins a keep-alive thread
# that sleeps in 1 s steps), so handlers finish closing in the background while the next
# scenario runs, and the round waits for them at its end.


def _close_later(closing: list[threading.Thread], *objects: Any) -> None:
    def close_all() -> None:
        for obj in objects:
            with contextlib.suppress(Exception):
                obj.close()

    thread = threading.Thread(target=close_all, name="close-handlers", daemon=True)
    thread.start()
    closing.append(thread)


def _aclose_later(closing: list[asyncio.Task[None]], *objects: Any) -> None:
    async def close_all() -> None:
        for obj in objects:
            with contextlib.suppress(Exception):
                await obj.close()

    closing.append(asyncio.create_task(close_all()))


def _join(closing: list[threading.Thread]) -> None:
    for thread in closing:
        thread.join(timeout=30)
    if any(thread.is_alive() for thread in closing):
        raise RuntimeError("a handler did not close within 30 s")
    closing.clear()


def _standby_opening(sender: Any) -> asyncio.Task[None] | None:
    """The task that opens a passive sender's standby link, started by its first send.

    Timing sends while it runs would count its work, and a failover before it is
    done would count the link's opening. Nothing public says when it is done, so
    this reads a private attribute (``None`` if it is renamed: the run goes on).
    """
    task: asyncio.Task[None] | None = getattr(getattr(sender, "_core", sender), "_warming", None)
    return task


def _wait_standby_open(sender: geobus.ReplicatedSender) -> None:
    task, portal = _standby_opening(sender), getattr(sender, "_portal", None)
    if task is not None and portal is not None:
        portal.run(asyncio.wait([task], timeout=10))


async def _await_standby_open(sender: geobus.aio.ReplicatedSender) -> None:
    task = _standby_opening(sender)
    if task is not None:
        await asyncio.wait([task], timeout=10)


# -- 1 and 2: sends ---------------------------------------------------------------------------


def _time_sends(send: Callable[[Any], Any], sizes: Sizes) -> SendTiming:
    single_s, latencies = bench.time_single_sends(send, sizes.single)
    started = time.perf_counter()
    for _ in range(sizes.lists // LIST_SIZE):
        send(_messages(LIST_SIZE))
    return SendTiming(single_s, latencies, time.perf_counter() - started)


async def _atime_sends(send: Callable[[Any], Awaitable[Any]], sizes: Sizes) -> SendTiming:
    single_s, latencies = await bench.atime_single_sends(send, sizes.single)
    started = time.perf_counter()
    for _ in range(sizes.lists // LIST_SIZE):
        await send(_messages(LIST_SIZE))
    return SendTiming(single_s, latencies, time.perf_counter() - started)


def sync_sends(ns: bench.Namespaces, sizes: Sizes, order: Sequence[str],
               closing: list[threading.Thread]) -> dict[str, SendTiming]:
    timings = {}
    for who in order:
        queue = bench.queue_name(f"send-sync-{who}")
        client: Any = ServiceBusClient.from_connection_string(ns.primary) if who == "plain" \
            else _geobus(ns, mode=who)
        sender = client.get_queue_sender(queue)
        try:
            sender.send_messages(ServiceBusMessage(bench.BODY))  # opens the link(s), untimed
            if who == "passive":
                _wait_standby_open(sender)
            timings[who] = _time_sends(sender.send_messages, sizes)
        finally:
            _close_later(closing, sender, client)
    return timings


async def async_sends(ns: bench.Namespaces, sizes: Sizes, order: Sequence[str],
                      closing: list[asyncio.Task[None]]) -> dict[str, SendTiming]:
    timings = {}
    for who in order:
        queue = bench.queue_name(f"send-async-{who}")
        client: Any = AsyncServiceBusClient.from_connection_string(ns.primary) if who == "plain" \
            else _ageobus(ns, mode=who)
        sender = client.get_queue_sender(queue)
        try:
            await sender.send_messages(ServiceBusMessage(bench.BODY))
            if who == "passive":
                await _await_standby_open(sender)
            timings[who] = await _atime_sends(sender.send_messages, sizes)
        finally:
            _aclose_later(closing, sender, client)
    return timings


# -- 3: receives -------------------------------------------------------------------------------


async def fill(ns: bench.Namespaces, queues: Sequence[str], count: int) -> None:
    """Active mode, quorum all: every queue gets ``count`` messages on both namespaces,
    each pair with one MessageId, as a DedupReceiver meets them in production."""
    async with _ageobus(ns, mode="active", write_quorum="all") as client:

        async def one(queue: str) -> None:
            async with client.get_queue_sender(queue) as sender:
                for start in range(0, count, LIST_SIZE):
                    await sender.send_messages(_messages(min(LIST_SIZE, count - start)))

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
            raise RuntimeError(f"{drain.what}: {len(ids)} delivered, {absorbed} absorbed of {count}")
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
            raise RuntimeError(f"{drain.what}: {len(ids)} delivered, {absorbed} absorbed of {count}")
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
        batch = receiver.receive_messages(max_message_count=min(RECEIVE_BATCH, count - got), max_wait_time=5)
        for message in batch:
            receiver.complete_message(message)
        got += len(batch)
        drain.check(got)
    ends.append(time.perf_counter())


def sync_receives(ns: bench.Namespaces, queues: dict[str, str], count: int, order: Sequence[str],
                  closing: list[threading.Thread]) -> dict[str, float]:
    """Seconds to drain ``2 * (count - 1)`` copies after a one-message warm-up per receiver."""
    timings = {}
    for who in order:
        if who == "dedup":
            client: Any = _geobus(ns)
            receiver = client.get_queue_receiver(queues[who])
            try:
                timings[who] = _dedup_drain(receiver, count)
            finally:
                _close_later(closing, receiver, client)
            continue
        clients = [ServiceBusClient.from_connection_string(cs) for cs in (ns.primary, ns.secondary)]
        receivers = [c.get_queue_receiver(queues[who]) for c in clients]
        try:
            for receiver in receivers:
                _plain_warm_up(receiver)
            # One thread per namespace, as a plain application reading two regions would run.
            ends: list[float] = []
            threads = [threading.Thread(target=_plain_drain, args=(r, count - 1, ends)) for r in receivers]
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
                _close_later(closing, receiver, client)
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
        batch = await receiver.receive_messages(max_message_count=min(RECEIVE_BATCH, count - got),
                                                max_wait_time=5)
        for message in batch:
            await receiver.complete_message(message)
        got += len(batch)
        drain.check(got)
    return time.perf_counter()


async def async_receives(ns: bench.Namespaces, queues: dict[str, str], count: int, order: Sequence[str],
                         closing: list[asyncio.Task[None]]) -> dict[str, float]:
    timings = {}
    for who in order:
        if who == "dedup":
            client: Any = _ageobus(ns)
            receiver = client.get_queue_receiver(queues[who])
            try:
                timings[who] = await _adedup_drain(receiver, count)
            finally:
                _aclose_later(closing, receiver, client)
            continue
        clients = [AsyncServiceBusClient.from_connection_string(cs) for cs in (ns.primary, ns.secondary)]
        receivers = [c.get_queue_receiver(queues[who]) for c in clients]
        try:
            await asyncio.gather(*(_aplain_warm_up(r) for r in receivers))
            started = time.perf_counter()
            ends = await asyncio.gather(*(_aplain_drain(r, count - 1) for r in receivers))
            timings[who] = max(ends) - started
        finally:
            for receiver, client in zip(receivers, clients, strict=True):
                _aclose_later(closing, receiver, client)
    return timings


# -- one round of 1-3 ----------------------------------------------------------------------------


class _Phases:
    """Wall-clock time per phase, for the progress log on stderr."""

    def __init__(self, name: str, log: Callable[[str], None]) -> None:
        self.name = name
        self.log = log
        self.times: list[tuple[str, float]] = []
        self._last = self._first = time.perf_counter()

    def done(self, phase: str) -> None:
        now = time.perf_counter()
        self.times.append((phase, now - self._last))
        self._last = now

    def summary(self) -> str:
        parts = ", ".join(f"{phase} {seconds:.1f}" for phase, seconds in self.times)
        return f"  {self.name}: {self._last - self._first:.1f} s ({parts})"


@dataclass
class Round:
    sends: dict[str, dict[str, SendTiming]]  # api -> sender -> timing
    receives: dict[str, dict[str, float]]  # api -> receiver -> seconds


def run_round(ns: bench.Namespaces, sizes: Sizes, round_no: int, log: Callable[[str], None]) -> Round:
    turn = round_no % len(SENDERS)
    send_order = SENDERS[turn:] + SENDERS[:turn]
    receive_order = RECEIVERS if round_no % 2 == 0 else RECEIVERS[::-1]
    queues = {api: {who: bench.queue_name(f"recv-{api}-{who}") for who in RECEIVERS} for api in APIS}
    phases = _Phases(f"round {round_no + 1}", log)
    asyncio.run(fill(ns, [q for per_api in queues.values() for q in per_api.values()], sizes.receive))
    phases.done("fill")
    sends, receives = {}, {}
    closing: list[threading.Thread] = []
    sends["sync"] = sync_sends(ns, sizes, send_order, closing)
    phases.done("sync sends")
    receives["sync"] = sync_receives(ns, queues["sync"], sizes.receive, receive_order, closing)
    phases.done("sync receives")
    _join(closing)
    phases.done("sync closes")

    async def run_async() -> None:
        aclosing: list[asyncio.Task[None]] = []
        try:
            sends["async"] = await async_sends(ns, sizes, send_order, aclosing)
            phases.done("async sends")
            receives["async"] = await async_receives(ns, queues["async"], sizes.receive, receive_order,
                                                     aclosing)
            phases.done("async receives")
        finally:
            await asyncio.wait_for(asyncio.gather(*aclosing), 30)

    asyncio.run(run_async())
    phases.done("async closes")
    log(phases.summary())
    for per_api in queues.values():
        for queue in per_api.values():
            ns.expect_on_each(queue, 0)  # every copy was settled: a leftover is a bug
    return Round(sends, receives)


# -- 4: failover -----------------------------------------------------------------------------


def _inject(ns: bench.Namespaces, fault: str) -> float:
    getattr(ns.primary_control, fault)()  # returns once the server applied it
    return time.perf_counter()


def geobus_failover(ns: bench.Namespaces, fault: str, closing: list[threading.Thread]) -> dict[str, Any]:
    """A passive sender in steady state; the primary fails; until a send lands on the secondary."""
    client = _geobus(ns, mode="passive")
    sender = client.get_queue_sender(bench.queue_name(f"failover-{fault}"))
    try:
        sender.send_messages(ServiceBusMessage(bench.BODY))
        _wait_standby_open(sender)
        faulted = _inject(ns, fault)
        sends = 0
        while True:
            result = sender.send_messages(ServiceBusMessage(bench.BODY))
            sends += 1
            if "secondary" in result.landed:
                seconds = time.perf_counter() - faulted
                break
            if time.perf_counter() - faulted > FAILOVER_LIMIT:
                raise RuntimeError(f"geobus: no failover {FAILOVER_LIMIT:.0f} s after {fault}")
        stats = sender.stats
    finally:
        ns.primary_control.heal()
        _close_later(closing, sender, client)
    return {"seconds": round(seconds, 4), "sends_after_fault": sends, "failovers": stats.failovers,
            "attempt_deadline_s": client.config.deadlines.attempt}


def plain_failover(ns: bench.Namespaces, fault: str, cutoff: float, closing: list[threading.Thread]) -> dict[str, Any]:
    """The same by hand with the SDK's defaults: send to the primary; on an error, to the secondary.

    Runs on a daemon thread so that a hang can be cut off; after the cut-off the
    primary is healed, which lets a hung call finish, and the clients are closed."""
    queue = bench.queue_name(f"plain-failover-{fault}")
    clients = [ServiceBusClient.from_connection_string(cs) for cs in (ns.primary, ns.secondary)]
    senders = [c.get_queue_sender(queue) for c in clients]
    outcome: dict[str, Any] = {}

    def failover(faulted: float) -> None:
        try:
            senders[0].send_messages(ServiceBusMessage(bench.BODY))
            outcome["primary_took_it"] = True
        except ServiceBusError as exc:
            outcome["error"] = type(exc).__name__
            outcome["error_after_s"] = round(time.perf_counter() - faulted, 4)
            senders[1].send_messages(ServiceBusMessage(bench.BODY))
        outcome["seconds"] = round(time.perf_counter() - faulted, 4)

    thread = None
    try:
        for sender in senders:
            sender.send_messages(ServiceBusMessage(bench.BODY))  # both links open, as in steady state
        faulted = _inject(ns, fault)
        thread = threading.Thread(target=failover, args=(faulted,), name="plain-failover", daemon=True)
        thread.start()
        thread.join(cutoff)
        if thread.is_alive():
            outcome["cut_off_s"] = cutoff
    finally:
        ns.primary_control.heal()
        if thread is not None:
            thread.join(30)
        if thread is not None and thread.is_alive():
            outcome["hung_after_heal"] = True  # left to the daemon thread; its server stops at exit
        else:
            for sender, client in zip(senders, clients, strict=True):
                _close_later(closing, sender, client)
    if "seconds" not in outcome and "cut_off_s" not in outcome:
        raise RuntimeError(f"plain failover on {fault} failed: see the traceback above")
    return outcome


def run_failover(ns: bench.Namespaces, sizes: Sizes, log: Callable[[str], None]) -> list[Metric]:
    metrics = []
    closing: list[threading.Thread] = []
    for fault, label in (("refuse", "refused"), ("black_hole", "black-holed")):
        ours = geobus_failover(ns, fault, closing)
        name = f"failover, {label} primary -> on secondary"
        log(f"  failover, primary {label}: geobus {ours}")
        if not sizes.measure_plain_faults:
            documented: dict[str, Any] = (
                {"plain": DOCUMENTED_REFUSED_S} if fault == "refuse" else {"plain": None, "plain_note": "unbounded"}
            )
            metrics.append(Metric(name, "s", ours["seconds"], better="lower", plain_source="documented",
                                  extra={"geobus": ours}, **documented))
            continue
        theirs = plain_failover(ns, fault, BLACK_HOLE_CUTOFF if fault == "black_hole" else FAILOVER_LIMIT,
                                closing)
        log(f"  failover, primary {label}: plain {theirs}")
        if "cut_off_s" in theirs:
            metrics.append(Metric(
                name, "s", ours["seconds"], None, "lower", "cut-off", f"unbounded (> {theirs['cut_off_s']:g} s)",
                {"geobus": ours, "plain": theirs, "ratio_below": float(f"{ours['seconds'] / theirs['cut_off_s']:.4g}")},
            ))
        else:
            metrics.append(Metric(name, "s", ours["seconds"], theirs["seconds"], "lower",
                                  extra={"geobus": ours, "plain": theirs}))
    _join(closing)
    return metrics


# -- 5: the seen-set ------------------------------------------------------------------------


def _traced_bytes(build: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        size = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del kept
    return size


def _fill_tracker(keys: list[str]) -> DuplicateTracker:
    tracker = DuplicateTracker(max_entries=len(keys), max_age=86_400.0)
    first = Copy("primary", 1)
    for key in keys:
        tracker.arrived(key, first)
        tracker.completed(key, first)
    return tracker


def _fill_set(keys: list[str]) -> set[str]:
    seen: set[str] = set()
    for key in keys:
        seen.add(key)
    return seen


def seen_set(count: int) -> list[Metric]:
    """The keys are made first, so tracemalloc counts the structure; every structure also
    keeps the id string, whose size is added to both sides."""
    keys = [str(uuid.uuid4()) for _ in range(count)]
    key_bytes = sys.getsizeof(keys[0])
    tracker_bytes = _traced_bytes(lambda: _fill_tracker(keys)) / count + key_bytes
    set_bytes = _traced_bytes(lambda: _fill_set(keys)) / count + key_bytes

    started = time.perf_counter()
    tracker = _fill_tracker(keys)
    tracker_records = count / (time.perf_counter() - started)
    started = time.perf_counter()
    seen = _fill_set(keys)
    set_records = count / (time.perf_counter() - started)

    twin = Copy("secondary", 1)
    started = time.perf_counter()
    verdicts = [tracker.arrived(key, twin) for key in keys]
    tracker_checks = count / (time.perf_counter() - started)
    if tracker.processed != count or verdicts.count(Verdict.COMPLETE) != count:
        raise RuntimeError("the seen-set forgot ids it should hold")
    started = time.perf_counter()
    found = [key in seen for key in keys]
    set_checks = count / (time.perf_counter() - started)
    assert all(found)

    ids = f"{count:,} ids"
    return [
        Metric(f"seen-set bytes/id, {ids} (incl. id string)", "bytes", tracker_bytes, set_bytes,
               "lower", extra={"key_string_bytes": key_bytes, "plain": "Python set"}),
        Metric(f"seen-set duplicate checks/s at {ids}", "checks/s", tracker_checks, set_checks,
               "higher", extra={"plain": "Python set"}),
        Metric(f"seen-set new ids recorded/s, up to {ids}", "ids/s", tracker_records, set_records,
               "higher", extra={"plain": "Python set"}),
    ]


# -- the run -----------------------------------------------------------------------------------


def throughput_metrics(rounds: list[Round], sizes: Sizes) -> list[Metric]:
    metrics = []
    singles = sizes.single
    lists = sizes.lists // LIST_SIZE * LIST_SIZE
    copies = 2 * (sizes.receive - 1)
    for api in APIS:
        def best(who: str, api: str = api) -> SendTiming:
            return min((r.sends[api][who] for r in rounds), key=lambda t: t.single_s)

        plain = best("plain")
        plain_p50, plain_p99 = bench.percentiles(plain.latencies_ms)
        plain_lists = min(r.sends[api]["plain"].lists_s for r in rounds)
        for mode in ("passive", "active"):
            ours = best(mode)
            p50, p99 = bench.percentiles(ours.latencies_ms)
            ours_lists = min(r.sends[api][mode].lists_s for r in rounds)
            metrics += [
                Metric(f"{api} {mode} send 1/call", "msgs/s", bench.rate(singles, ours.single_s),
                       bench.rate(singles, plain.single_s), "higher"),
                Metric(f"{api} {mode} send 1/call p50", "ms", p50, plain_p50, "lower"),
                Metric(f"{api} {mode} send 1/call p99", "ms", p99, plain_p99, "lower"),
                Metric(f"{api} {mode} send lists of {LIST_SIZE}", "msgs/s", bench.rate(lists, ours_lists),
                       bench.rate(lists, plain_lists), "higher"),
            ]
        dedup = min(r.receives[api]["dedup"] for r in rounds)
        plain_receive = min(r.receives[api]["plain"] for r in rounds)
        metrics.append(Metric(
            f"{api} peek-lock+complete, both copies", "copies/s",
            bench.rate(copies, dedup), bench.rate(copies, plain_receive), "higher",
            extra={"geobus_unique_msgs_per_s": round(bench.rate(copies // 2, dedup), 1), "copies": copies},
        ))
    return metrics


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("s", "ms"):
        return f"{value:.2f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ratio(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:,.0f}"


def render(result: dict[str, Any]) -> str:
    m, sizes = result["machine"], result["sizes"]
    lines = [
        bench.machine_line(m, f"azure-servicebus {m['azure-servicebus']}, geobus {m['geobus']}"),
        f"two `geobus local` processes (one per namespace); {result['body_bytes']}-byte bodies; "
        f"best of {result['rounds']} round(s) for 1-3; took {result['elapsed_s']:.0f} s"
        + (" (--quick)" if result["quick"] else ""),
        f"per sender: {sizes['single']:,} single sends, {sizes['lists']:,} in lists of {LIST_SIZE}; "
        f"receive: {sizes['receive']:,} messages x 2 namespaces; seen-set: {sizes['seen_ids']:,} ids",
        "ratio = geobus / plain (msgs/s, checks/s: higher is better; ms, s, bytes: lower is better)",
        "",
        f"{'metric':<52}{'unit':<10}{'geobus':>11}  {'plain':<26}{'ratio':>7}",
    ]
    for row in result["metrics"]:
        plain = " ".join(part for part in (
            _cell(row["plain"], row["unit"]) if row["plain"] is not None else "",
            row["plain_note"],
            "(documented)" if row["plain_source"] == "documented" else "",
        ) if part)
        ratio = _ratio(row["ratio"]) if row["ratio"] is not None else (
            "<" + _ratio(row["extra"]["ratio_below"]) if "ratio_below" in row["extra"] else "n/a")
        lines.append(f"{row['name']:<52}{row['unit']:<10}{_cell(row['geobus'], row['unit']):>11}  "
                     f"{plain:<26}{ratio:>7}")
    lines += [
        "",
        "plain sends: one ServiceBusSender on the primary (active mode's ratio is the whole price of",
        "  the second copy). peek-lock: geobus's DedupReceiver over both namespaces (each message",
        "  delivered once, its twin completed in the background) against two plain ServiceBusReceivers,",
        "  one per namespace, concurrently; both sides settle the same number of copies.",
        "failover: fault injected on the primary of a passive sender whose standby link is open; plain",
        "  = catch the error, send to the secondary, with the SDK's default retry settings.",
        f"  geobus uses its default deadlines (attempt {result['attempt_deadline_s']:g} s), which is what bounds",
        "  the black hole. (documented) = SDK_FACTS.md's fault table, not measured in --quick.",
        "seen-set: DuplicateTracker (TTLCache, default clock) against a plain Python set of the same ids.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser, args = bench.parse_args(
        __doc__, argv, rounds_help="rounds of 1-3",
        quick_help="a smoke run: fewer messages, one round, the plain SDK's refused "
                   "time from SDK_FACTS.md instead of measured, a 2 s black-hole cut-off")
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")

    started = time.perf_counter()
    with bench.sigterm_as_interrupt():
        with bench.Namespaces() as ns:
            bench.log(f"  two namespaces up in {time.perf_counter() - started:.1f} s")
            done = []
            for round_no in range(rounds):
                done.append(run_round(ns, sizes, round_no, bench.log))
            metrics = throughput_metrics(done, sizes)
            metrics += run_failover(ns, sizes, bench.log)
        begun = time.perf_counter()
        metrics += seen_set(sizes.seen_ids)
        bench.log(f"  seen-set: {time.perf_counter() - begun:.1f} s")
    result = {
        "machine": bench.machine({"azure-servicebus": version("azure-servicebus"),
                            "python-qpid-proton": version("python-qpid-proton"),
                            "geobus": geobus.__version__}),
        "quick": args.quick,
        "rounds": rounds,
        "body_bytes": len(bench.BODY),
        "sizes": asdict(sizes),
        "attempt_deadline_s": geobus.Deadlines().attempt,
        "metrics": [metric.as_json() for metric in metrics],
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    bad = [m["name"] for m in result["metrics"] if not math.isfinite(m["geobus"]) or m["geobus"] <= 0]
    if bad:
        raise RuntimeError(f"non-positive measurements: {bad}")
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def cli() -> NoReturn:
    """Run as a script (``benchmarks/replication.py``, ``python -m geobus._bench.replication``)."""
    bench.run(main, interrupted="interrupted; every server started was stopped")


if __name__ == "__main__":
    cli()
