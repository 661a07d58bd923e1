"""What replication costs, and what it buys: geobus against plain azure-servicebus.

    .venv/bin/python benchmarks/replication.py [--quick] [--json]
    python -m geobus._tools.bench.replication ...     # the same, from an installed geobus
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
   (the black hole has no bound there, so it is cut off: 10 s with ``--quick``,
   20 s without);
5. the seen-set (``DuplicateTracker``): bytes per remembered id (tracemalloc)
   and checks per second, against a plain Python ``set`` of the same ids.

1-3 run for the sync API and ``geobus.aio``; configurations alternate between
rounds and the best round of each row is kept (noise only ever slows a run).
``--quick`` is a smoke run: fewer messages, one round, 100,000 ids.
Ratios are geobus / plain, from one run: the machine is small and shared, so
absolute figures drift from run to run. Every plain figure is measured here.

The measurements live in one module each: sends, the rounds of 1-3 and the
table here; receives in ``replication_receives``, failover in
``replication_failover``, the seen-set in ``replication_seen_set``; what they
share (sizes, clients) in ``replication_shared``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any, NoReturn

import geobus

from . import common as bench
from .replication_failover import run_failover
from .replication_receives import async_receives, fill, sync_receives
from .replication_seen_set import seen_set
from .replication_shared import FULL, LIST_SIZE, QUICK, Sizes, asteady, client, steady
from .table import report_text

APIS = ("sync", "async")
SENDERS = ("plain", "passive", "active")
RECEIVERS = ("plain", "dedup")


@dataclass
class SendTiming:
    single_s: float
    latencies_ms: list[float]
    lists_s: float


# -- 1 and 2: sends ---------------------------------------------------------------------------


def _time_sends(send: Callable[[Any], Any], sizes: Sizes) -> SendTiming:
    single_s, latencies = bench.time_single_sends(send, sizes.single)
    started = time.perf_counter()
    for _ in range(sizes.lists // LIST_SIZE):
        send(bench.messages(LIST_SIZE))
    return SendTiming(single_s, latencies, time.perf_counter() - started)


async def _atime_sends(send: Callable[[Any], Awaitable[Any]], sizes: Sizes) -> SendTiming:
    single_s, latencies = await bench.atime_single_sends(send, sizes.single)
    started = time.perf_counter()
    for _ in range(sizes.lists // LIST_SIZE):
        await send(bench.messages(LIST_SIZE))
    return SendTiming(single_s, latencies, time.perf_counter() - started)


def sync_send(ns: bench.Pair, sizes: Sizes, who: str, closing: list[threading.Thread]) -> SendTiming:
    """One sender (``plain``, ``passive`` or ``active``) timed from its steady state."""
    sending = client(ns, "sync", who)
    sender = sending.get_queue_sender(bench.queue_name(f"send-sync-{who}"))
    try:
        steady(sender)
        return _time_sends(sender.send_messages, sizes)
    finally:
        bench.close_later(closing, sender, sending)


async def async_send(ns: bench.Pair, sizes: Sizes, who: str, closing: list[asyncio.Task[None]]) -> SendTiming:
    """As ``sync_send``, with ``geobus.aio`` and the SDK's async sender."""
    sending = client(ns, "async", who)
    sender = sending.get_queue_sender(bench.queue_name(f"send-async-{who}"))
    try:
        await asteady(sender)
        return await _atime_sends(sender.send_messages, sizes)
    finally:
        bench.aclose_later(closing, sender, sending)


# -- one round of 1-3 ----------------------------------------------------------------------------


class _Phases:
    """Wall-clock time per phase, for the progress log on stderr."""

    def __init__(self, name: str) -> None:
        self.name = name
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


def run_round(ns: bench.Pair, sizes: Sizes, round_no: int) -> Round:
    turn = round_no % len(SENDERS)
    send_order = SENDERS[turn:] + SENDERS[:turn]
    receive_order = RECEIVERS if round_no % 2 == 0 else RECEIVERS[::-1]
    queues = {api: {who: bench.queue_name(f"recv-{api}-{who}") for who in RECEIVERS} for api in APIS}
    phases = _Phases(f"round {round_no + 1}")
    asyncio.run(fill(ns, [q for per_api in queues.values() for q in per_api.values()], sizes.receive))
    phases.done("fill")
    sends, receives = {}, {}
    closing: list[threading.Thread] = []
    sends["sync"] = {who: sync_send(ns, sizes, who, closing) for who in send_order}
    phases.done("sync sends")
    receives["sync"] = sync_receives(ns, queues["sync"], sizes.receive, receive_order, closing)
    phases.done("sync receives")
    bench.join_closing(closing)
    phases.done("sync closes")

    async def run_async() -> None:
        aclosing: list[asyncio.Task[None]] = []
        try:
            sends["async"] = {who: await async_send(ns, sizes, who, aclosing) for who in send_order}
            phases.done("async sends")
            receives["async"] = await async_receives(ns, queues["async"], sizes.receive, receive_order, aclosing)
            phases.done("async receives")
        finally:
            await asyncio.wait_for(asyncio.gather(*aclosing), 30)

    asyncio.run(run_async())
    phases.done("async closes")
    bench.log(phases.summary())
    for per_api in queues.values():
        for queue in per_api.values():
            bench.expect_on_each(ns, queue, 0)  # every copy was settled: a leftover is a bug
    return Round(sends, receives)


# -- the run -----------------------------------------------------------------------------------


def throughput_metrics(rounds: list[Round], sizes: Sizes) -> list[bench.Metric]:
    metrics = []
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
            name = f"{api} {mode} send"
            metrics += [
                bench.Metric(f"{name} 1/call", "msgs/s", bench.rate(sizes.single, ours.single_s),
                             bench.rate(sizes.single, plain.single_s), "higher"),
                bench.Metric(f"{name} 1/call p50", "ms", p50, plain_p50, "lower"),
                bench.Metric(f"{name} 1/call p99", "ms", p99, plain_p99, "lower"),
                bench.Metric(f"{name} lists of {LIST_SIZE}", "msgs/s", bench.rate(lists, ours_lists),
                             bench.rate(lists, plain_lists), "higher"),
            ]  # fmt: skip
        dedup = min(r.receives[api]["dedup"] for r in rounds)
        plain_receive = min(r.receives[api]["plain"] for r in rounds)
        metrics.append(bench.Metric(
            f"{api} peek-lock+complete, both copies", "copies/s", bench.rate(copies, dedup),
            bench.rate(copies, plain_receive), "higher",
            extra={"geobus_unique_msgs_per_s": round(bench.rate(copies // 2, dedup), 1), "copies": copies},
        ))  # fmt: skip
    return metrics


def render(result: dict[str, Any]) -> str:
    m, sizes = result["machine"], result["sizes"]
    return report_text(result, machine=f"azure-servicebus {m['azure-servicebus']}", about=[
        f"two `geobus local` processes (one per namespace); {result['body_bytes']}-byte bodies; "
        "rounds: of 1-3",
        f"per sender: {sizes['single']:,} single sends, {sizes['lists']:,} in lists of {LIST_SIZE}; "
        f"receive: {sizes['receive']:,} messages x 2 namespaces; seen-set: {sizes['seen_ids']:,} ids",
    ], ratio="geobus / plain (msgs/s, checks/s: higher is better; ms, s, bytes: lower is better)", name_width=52, notes=[
        "plain sends: one ServiceBusSender on the primary (active mode's ratio is the whole price of",
        "  the second copy). peek-lock: geobus's DedupReceiver over both namespaces (each message",
        "  delivered once, its twin completed in the background) against two plain ServiceBusReceivers,",
        "  one per namespace, concurrently; both sides settle the same number of copies.",
        "failover: fault injected on the primary of a passive sender whose standby link is open; plain",
        "  = catch the error, send to the secondary, with the SDK's default retry settings.",
        f"  geobus uses its default deadlines (attempt {result['attempt_deadline_s']:g} s), which is what bounds",
        "  the black hole; the plain side has no bound there and is cut off (ratio: an upper bound).",
        "seen-set: DuplicateTracker (TTLCache, default clock) against a plain Python set of the same ids.",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = bench.parse_args(__doc__ or "", argv, sizes=(QUICK, FULL), rounds_help="rounds of 1-3",
                               quick_help="a smoke run: fewer messages, one round, a 10 s cut-off on the black hole")
    sizes: Sizes = args.sizes
    with bench.namespaces() as ns:
        done = [run_round(ns, sizes, round_no) for round_no in range(args.rounds)]
        metrics = throughput_metrics(done, sizes)
        metrics += run_failover(ns, sizes, bench.log)
    begun = time.perf_counter()
    metrics += seen_set(sizes.seen_ids)
    bench.log(f"  seen-set: {time.perf_counter() - begun:.1f} s")
    result = {
        "machine": bench.machine({name: version(name) for name in ("azure-servicebus", "python-qpid-proton")}),
        "body_bytes": len(bench.BODY),
        "sizes": asdict(sizes),
        "attempt_deadline_s": geobus.Deadlines().attempt,
    }
    return bench.report(result, metrics, args, render=render)


def cli() -> NoReturn:
    """Run as a script (``benchmarks/replication.py``, ``python -m geobus._tools.bench.replication``)."""
    bench.run(main, interrupted="interrupted; every server started was stopped")


if __name__ == "__main__":
    cli()
