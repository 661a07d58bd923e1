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
   (refused: measured once in full mode; black hole: no bound, so cut off);
5. the seen-set (``DuplicateTracker``): bytes per remembered id (tracemalloc)
   and checks per second, against a plain Python ``set`` of the same ids.

1-3 run for the sync API and ``geobus.aio``; configurations alternate between
rounds and the best round of each row is kept (noise only ever slows a run).
``--quick`` is a smoke run: fewer messages, one round, 100,000 ids, and
docs/sdk-behaviour.md's figures (11.2 s refused, unbounded black hole) stand in for the
plain SDK's failover instead of waiting on it.
Ratios are geobus / plain, from one run: the machine is small and shared, so
absolute figures drift from run to run.

The measurements live in one module each: sends, the rounds of 1-3 and the
table here; receives in ``_replication_receives``, failover in
``_replication_failover``, the seen-set in ``_replication_seen_set``; what they
share (sizes, the row, clients, closing) in ``_replication_shared``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any, NoReturn

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

import geobus

from . import common as bench
from .replication_failover import run_failover
from .replication_receives import async_receives, fill, sync_receives
from .replication_seen_set import seen_set
from .replication_shared import (
    FULL,
    LIST_SIZE,
    QUICK,
    Metric,
    Sizes,
    aclose_later,
    ageobus_client,
    await_standby_open,
    close_later,
    geobus_client,
    join_closing,
    messages,
    wait_standby_open,
)

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
        send(messages(LIST_SIZE))
    return SendTiming(single_s, latencies, time.perf_counter() - started)


async def _atime_sends(send: Callable[[Any], Awaitable[Any]], sizes: Sizes) -> SendTiming:
    single_s, latencies = await bench.atime_single_sends(send, sizes.single)
    started = time.perf_counter()
    for _ in range(sizes.lists // LIST_SIZE):
        await send(messages(LIST_SIZE))
    return SendTiming(single_s, latencies, time.perf_counter() - started)


def sync_sends(
    ns: bench.Namespaces, sizes: Sizes, order: Sequence[str], closing: list[threading.Thread]
) -> dict[str, SendTiming]:
    timings = {}
    for who in order:
        queue = bench.queue_name(f"send-sync-{who}")
        client: Any = (
            ServiceBusClient.from_connection_string(ns.primary)
            if who == "plain"
            else geobus_client(ns, mode=who)
        )
        sender = client.get_queue_sender(queue)
        try:
            sender.send_messages(ServiceBusMessage(bench.BODY))  # opens the link(s), untimed
            if who == "passive":
                wait_standby_open(sender)
            timings[who] = _time_sends(sender.send_messages, sizes)
        finally:
            close_later(closing, sender, client)
    return timings


async def async_sends(
    ns: bench.Namespaces, sizes: Sizes, order: Sequence[str], closing: list[asyncio.Task[None]]
) -> dict[str, SendTiming]:
    timings = {}
    for who in order:
        queue = bench.queue_name(f"send-async-{who}")
        client: Any = (
            AsyncServiceBusClient.from_connection_string(ns.primary)
            if who == "plain"
            else ageobus_client(ns, mode=who)
        )
        sender = client.get_queue_sender(queue)
        try:
            await sender.send_messages(ServiceBusMessage(bench.BODY))
            if who == "passive":
                await await_standby_open(sender)
            timings[who] = await _atime_sends(sender.send_messages, sizes)
        finally:
            aclose_later(closing, sender, client)
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


def run_round(
    ns: bench.Namespaces, sizes: Sizes, round_no: int, log: Callable[[str], None]
) -> Round:
    turn = round_no % len(SENDERS)
    send_order = SENDERS[turn:] + SENDERS[:turn]
    receive_order = RECEIVERS if round_no % 2 == 0 else RECEIVERS[::-1]
    queues = {
        api: {who: bench.queue_name(f"recv-{api}-{who}") for who in RECEIVERS} for api in APIS
    }
    phases = _Phases(f"round {round_no + 1}", log)
    asyncio.run(
        fill(ns, [q for per_api in queues.values() for q in per_api.values()], sizes.receive)
    )
    phases.done("fill")
    sends, receives = {}, {}
    closing: list[threading.Thread] = []
    sends["sync"] = sync_sends(ns, sizes, send_order, closing)
    phases.done("sync sends")
    receives["sync"] = sync_receives(ns, queues["sync"], sizes.receive, receive_order, closing)
    phases.done("sync receives")
    join_closing(closing)
    phases.done("sync closes")

    async def run_async() -> None:
        aclosing: list[asyncio.Task[None]] = []
        try:
            sends["async"] = await async_sends(ns, sizes, send_order, aclosing)
            phases.done("async sends")
            receives["async"] = await async_receives(
                ns, queues["async"], sizes.receive, receive_order, aclosing
            )
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
                Metric(
                    f"{api} {mode} send 1/call",
                    "msgs/s",
                    bench.rate(singles, ours.single_s),
                    bench.rate(singles, plain.single_s),
                    "higher",
                ),
                Metric(f"{api} {mode} send 1/call p50", "ms", p50, plain_p50, "lower"),
                Metric(f"{api} {mode} send 1/call p99", "ms", p99, plain_p99, "lower"),
                Metric(
                    f"{api} {mode} send lists of {LIST_SIZE}",
                    "msgs/s",
                    bench.rate(lists, ours_lists),
                    bench.rate(lists, plain_lists),
                    "higher",
                ),
            ]
        dedup = min(r.receives[api]["dedup"] for r in rounds)
        plain_receive = min(r.receives[api]["plain"] for r in rounds)
        metrics.append(
            Metric(
                f"{api} peek-lock+complete, both copies",
                "copies/s",
                bench.rate(copies, dedup),
                bench.rate(copies, plain_receive),
                "higher",
                extra={
                    "geobus_unique_msgs_per_s": round(bench.rate(copies // 2, dedup), 1),
                    "copies": copies,
                },
            )
        )
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
        plain = " ".join(
            part
            for part in (
                _cell(row["plain"], row["unit"]) if row["plain"] is not None else "",
                row["plain_note"],
                "(documented)" if row["plain_source"] == "documented" else "",
            )
            if part
        )
        ratio = (
            _ratio(row["ratio"])
            if row["ratio"] is not None
            else (
                "<" + _ratio(row["extra"]["ratio_below"])
                if "ratio_below" in row["extra"]
                else "n/a"
            )
        )
        lines.append(
            f"{row['name']:<52}{row['unit']:<10}{_cell(row['geobus'], row['unit']):>11}  "
            f"{plain:<26}{ratio:>7}"
        )
    lines += [
        "",
        "plain sends: one ServiceBusSender on the primary (active mode's ratio is the whole price of",
        "  the second copy). peek-lock: geobus's DedupReceiver over both namespaces (each message",
        "  delivered once, its twin completed in the background) against two plain ServiceBusReceivers,",
        "  one per namespace, concurrently; both sides settle the same number of copies.",
        "failover: fault injected on the primary of a passive sender whose standby link is open; plain",
        "  = catch the error, send to the secondary, with the SDK's default retry settings.",
        f"  geobus uses its default deadlines (attempt {result['attempt_deadline_s']:g} s), which is what bounds",
        "  the black hole. (documented) = docs/sdk-behaviour.md's fault table, not measured in --quick.",
        "seen-set: DuplicateTracker (TTLCache, default clock) against a plain Python set of the same ids.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser, args = bench.parse_args(
        __doc__,
        argv,
        rounds_help="rounds of 1-3",
        quick_help="a smoke run: fewer messages, one round, the plain SDK's refused "
        "time and black-hole hang taken from docs/sdk-behaviour.md instead of measured",
    )
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
        "machine": bench.machine(
            {
                "azure-servicebus": version("azure-servicebus"),
                "python-qpid-proton": version("python-qpid-proton"),
                "geobus": geobus.__version__,
            }
        ),
        "quick": args.quick,
        "rounds": rounds,
        "body_bytes": len(bench.BODY),
        "sizes": asdict(sizes),
        "attempt_deadline_s": geobus.Deadlines().attempt,
    }
    return bench.report(result, metrics, started, as_json=args.json, render=render)


def cli() -> NoReturn:
    """Run as a script (``benchmarks/replication.py``, ``python -m geobus._tools.bench.replication``)."""
    bench.run(main, interrupted="interrupted; every server started was stopped")


if __name__ == "__main__":
    cli()
