"""What the durable outbox costs: buffering through an outage, then draining, against plain sends.

    .venv/bin/python benchmarks/outbox.py [--quick] [--rounds N] [--json]
    python -m geobus._tools.bench.outbox ...     # the same, from an installed geobus
    geobus bench --only outbox [--quick]   # its rows in geobus bench's table of ratios

Two local namespaces, each ``geobus local`` in its own process (as in
``local_namespace.py``'s headline and ``replication.py``), serve both sides of
every comparison in the same run, for the sync API and ``geobus.aio``:

1. buffered sends: a passive ``ReplicatedSender`` with an outbox (SQLite WAL,
   ``synchronous=FULL``: one fsync per send) while both namespaces refuse
   connections, one message per call (msgs/s, p50/p99 latency) and lists of
   100, against one plain ``ServiceBusSender`` on a healthy namespace. The
   first buffered send pays the failed attempts on both namespaces (reported
   on its own); later sends queue behind it without trying, which is the
   steady state timed here after a warm-up. For context, the raw
   ``Outbox.append`` rate (one message per call, no sender, no event loop).
2. drain: after both namespaces heal, the sender's drainer empties everything
   buffered in (1), in batches of ``OutboxPolicy.batch_size`` (100). Its rate is
   timed from its first batch stored to the outbox empty, so it leaves out the
   reconnect, as the plain side leaves out opening its link; the plain side
   sends the same number of messages in lists of the same size. The time from
   the heal to an empty outbox is reported too: it is mostly the breaker
   cooldown and the drainer's backoff, set here to 1 s each (defaults 10 s)
   so a run stays short; that only adds background retries during (1).

The outbox file sits in the system temp directory (its file system is printed:
on tmpfs an fsync costs nothing). Configurations alternate between rounds and
the best round of each row is kept (noise only ever slows a run). Ratios are
geobus / plain from one run: the machine is small and shared, so absolute
figures drift from run to run. ``Outbox`` itself is private API, used here only
for the context row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

import geobus
import geobus.aio
from geobus import BreakerPolicy, OutboxPolicy
from geobus._storage.outbox import ANY_LANE, Outbox

from . import common as bench

BATCH = OutboxPolicy().batch_size  # the drainer's default batch, and the plain side's list size
WARM_UP = 20  # buffered sends before timing, the first of them the one that tries both namespaces
POLL = 0.002  # seconds between looks at the drainer's progress
STALL = 60.0  # a drain or a send that makes no progress for this long is a bug, not noise
COOLDOWN = 1.0  # breaker cooldown and drainer backoff cap for the run (defaults: 10 s)
APIS = ("sync", "async")


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


Metric = bench.Metric  # ``plain``: the plain SDK's figure, None where it has no counterpart


def _lists(count: int) -> Iterator[list[ServiceBusMessage]]:
    for start in range(0, count, BATCH):
        yield [ServiceBusMessage(bench.BODY) for _ in range(min(BATCH, count - start))]


# -- servers ------------------------------------------------------------------------------


def _options(outbox: Path) -> dict[str, Any]:
    return {
        "mode": "passive",
        "outbox": OutboxPolicy(path=str(outbox), backoff_max=COOLDOWN),
        "breaker": BreakerPolicy(cooldown=COOLDOWN),
    }


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


def sync_plain(ns: bench.Namespaces, sizes: Sizes) -> PlainTiming:
    queue = bench.queue_name("plain-sync")
    with ServiceBusClient.from_connection_string(ns.primary) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage(bench.BODY))  # opens the link, untimed
            single_s, latencies = bench.time_single_sends(sender.send_messages, sizes.single)
            started = time.perf_counter()
            for batch in _lists(sizes.drained):
                sender.send_messages(batch)
            lists_s = time.perf_counter() - started
    ns.expect_in_all(queue, 1 + sizes.single + sizes.drained)
    return PlainTiming(single_s, latencies, lists_s)


def sync_geobus(ns: bench.Namespaces, sizes: Sizes, outbox: Path) -> GeobusTiming:
    queue = bench.queue_name("outbox-sync")
    timing: dict[str, Any] = {}
    ns.refuse()
    try:
        with geobus.GeoServiceBusClient.from_connection_strings(ns.primary, ns.secondary, **_options(outbox)) \
                as client, client.get_queue_sender(queue) as sender:
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
    ns.expect_in_all(queue, sizes.drained)
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


async def async_plain(ns: bench.Namespaces, sizes: Sizes) -> PlainTiming:
    queue = bench.queue_name("plain-async")
    async with AsyncServiceBusClient.from_connection_string(ns.primary) as client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages(ServiceBusMessage(bench.BODY))
            single_s, latencies = await bench.atime_single_sends(sender.send_messages, sizes.single)
            started = time.perf_counter()
            for batch in _lists(sizes.drained):
                await sender.send_messages(batch)
            lists_s = time.perf_counter() - started
    ns.expect_in_all(queue, 1 + sizes.single + sizes.drained)
    return PlainTiming(single_s, latencies, lists_s)


async def async_geobus(ns: bench.Namespaces, sizes: Sizes, outbox: Path) -> GeobusTiming:
    queue = bench.queue_name("outbox-async")
    timing: dict[str, Any] = {}
    ns.refuse()  # a blocking HTTP call, made while nothing else runs on this loop
    try:
        client = geobus.aio.GeoServiceBusClient.from_connection_strings(ns.primary, ns.secondary, **_options(outbox))
        async with client, client.get_queue_sender(queue) as sender:
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
    ns.expect_in_all(queue, sizes.drained)
    return GeobusTiming(**timing)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Round:
    plain: dict[str, PlainTiming]  # api -> timing
    geobus: dict[str, GeobusTiming]
    append_s: float


def run_api(ns: bench.Namespaces, sizes: Sizes, api: str, outbox: Path,
            plain_first: bool) -> tuple[PlainTiming, GeobusTiming]:
    def plain() -> PlainTiming:
        return sync_plain(ns, sizes) if api == "sync" else asyncio.run(async_plain(ns, sizes))

    def ours() -> GeobusTiming:
        return sync_geobus(ns, sizes, outbox) if api == "sync" else asyncio.run(async_geobus(ns, sizes, outbox))

    if plain_first:
        theirs = plain()
        return theirs, ours()
    mine = ours()
    return plain(), mine


def run_round(ns: bench.Namespaces, sizes: Sizes, scratch: Path, round_no: int,
              log: Callable[[str], None]) -> Round:
    started = time.perf_counter()
    plain, ours = {}, {}
    even = round_no % 2 == 0
    for api in APIS if even else APIS[::-1]:
        plain[api], ours[api] = run_api(ns, sizes, api, scratch / f"r{round_no}-{api}.sqlite", even)
    append_s = outbox_appends(sizes.single, scratch / f"r{round_no}-append.sqlite")
    log(f"  round {round_no + 1}: {time.perf_counter() - started:.1f} s")
    return Round(plain, ours, append_s)


def metrics(rounds: list[Round], sizes: Sizes) -> list[Metric]:
    out = []
    for api in APIS:
        plain = min((r.plain[api] for r in rounds), key=lambda t: t.single_s)
        plain_lists = min(r.plain[api].lists_s for r in rounds)
        ours = min((r.geobus[api] for r in rounds), key=lambda t: t.single_s)
        p50, p99 = bench.percentiles(ours.latencies_ms)
        plain_p50, plain_p99 = bench.percentiles(plain.latencies_ms)
        drain = max((r.geobus[api] for r in rounds), key=lambda t: t.drain_counted / t.drain_s)
        plain_drained = bench.rate(sizes.drained, plain_lists)
        out += [
            Metric(f"{api} buffered send 1/call", "msgs/s", bench.rate(sizes.single, ours.single_s),
                   bench.rate(sizes.single, plain.single_s), "higher", "plain: send 1/call, healthy"),
            Metric(f"{api} buffered send 1/call p50", "ms", p50, plain_p50, "lower"),
            Metric(f"{api} buffered send 1/call p99", "ms", p99, plain_p99, "lower"),
            Metric(f"{api} buffered send lists of {BATCH}", "msgs/s",
                   bench.rate(sizes.lists, min(r.geobus[api].lists_s for r in rounds)), plain_drained,
                   "higher", f"plain: lists of {BATCH}, healthy"),
            Metric(f"{api} first buffered send (tries both)", "s",
                   min(r.geobus[api].first_s for r in rounds), None, "lower",
                   "plain: raises"),
            Metric(f"{api} drain, batches of {BATCH}", "msgs/s", drain.drain_counted / drain.drain_s,
                   plain_drained, "higher", f"plain: {sizes.drained:,} msgs in lists of {BATCH}",
                   {"messages_timed": drain.drain_counted, "heal_to_first_batch_s": round(drain.heal_to_first_s, 3)}),
            Metric(f"{api} heal -> outbox empty ({sizes.drained:,} msgs)", "s",
                   min(r.geobus[api].heal_to_empty_s for r in rounds), None, "lower",
                   f"breaker cooldown, backoff cap {COOLDOWN:g} s"),
        ]
    out.append(Metric("Outbox.append 1/call (no sender)", "msgs/s",
                      bench.rate(sizes.single, min(r.append_s for r in rounds)),
                      max(bench.rate(sizes.single, r.plain["sync"].single_s) for r in rounds), "higher",
                      "plain: sync send 1/call"))
    return out


def _file_system(path: str) -> str:
    """The type of the file system holding ``path``, from /proc/mounts (Linux), else "?"."""
    best, kind = "", "?"
    with contextlib.suppress(OSError):
        with open("/proc/mounts") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) > 2 and path.startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    return kind


def _machine() -> dict[str, Any]:
    temp = os.path.realpath(tempfile.gettempdir())
    return bench.machine({
        "sqlite": sqlite3.sqlite_version,
        "outbox_file_system": f"{_file_system(temp)} ({temp})",
        "azure-servicebus": version("azure-servicebus"),
        "geobus": geobus.__version__,
    })


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("s", "ms"):
        return f"{value:.2f}"
    return f"{value:,.0f}"


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        bench.machine_line(m, m["platform"]),
        f"sqlite {m['sqlite']}, outbox on {m['outbox_file_system']}; azure-servicebus {m['azure-servicebus']}; "
        f"geobus {m['geobus']}",
        f"two `geobus local` processes; {result['body_bytes']}-byte bodies; best of {result['rounds']} "
        f"round(s); took {result['elapsed_s']:.0f} s" + ("; --quick" if result["quick"] else ""),
        "messages: " + ", ".join(f"{k} {v:,}" for k, v in result["sizes"].items()),
        "ratio = geobus / plain (msgs/s: higher is better; ms, s: lower is better)",
        "",
        f"{'metric':<44}{'unit':<8}{'geobus':>10}{'plain':>10}{'ratio':>8}   plain side",
    ]
    for row in result["metrics"]:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        lines.append(f"{row['name']:<44}{row['unit']:<8}{_cell(row['geobus'], row['unit']):>10}"
                     f"{_cell(row['plain'], row['unit']):>10}{ratio:>8}   {row['note']}")
    lines += [
        "",
        "geobus: passive ReplicatedSender, outbox synchronous=FULL, both namespaces refusing connections",
        "  while buffering; plain: one ServiceBusSender on a healthy namespace, same run.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser, args = bench.parse_args(__doc__, argv, quick_help="a smoke run: fewer messages, one round",
                              rounds_help="rounds")
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")

    started = time.perf_counter()
    with bench.sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="geobus-bench-outbox-") as scratch:
        with bench.Namespaces() as ns:
            bench.log(f"  two namespaces up in {time.perf_counter() - started:.1f} s")
            done = [run_round(ns, sizes, Path(scratch), n, bench.log) for n in range(rounds)]
    rows = metrics(done, sizes)
    result = {
        "machine": _machine(),
        "quick": args.quick,
        "rounds": rounds,
        "body_bytes": len(bench.BODY),
        "batch_size": BATCH,
        "sizes": {"warm-up": WARM_UP, "single": sizes.single, "lists": sizes.lists, "drained": sizes.drained},
    }
    return bench.report(result, rows, started, as_json=args.json, render=render)


def cli() -> NoReturn:
    """Run as a script (``benchmarks/outbox.py``, ``python -m geobus._tools.bench.outbox``)."""
    bench.run(main, interrupted="interrupted; both servers started were stopped")


if __name__ == "__main__":
    cli()
