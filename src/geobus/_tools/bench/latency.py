"""What geobus costs per message, at loopback and at a 4 ms round trip: geobus against plain azure-servicebus.

    .venv/bin/python benchmarks/latency.py [--quick] [--json]
    python -m geobus._tools.bench.latency ...     # the same, from an installed geobus
    geobus bench --only latency [--quick]         # its rows in geobus bench's table of ratios

Two local namespaces, each ``geobus local`` in its own process, serve both sides
of every comparison in the same run, on two networks:

- ``loopback``: the clients connect to the namespaces directly;
- ``4ms RTT``: each namespace behind its own ``FaultProxyProcess`` (a proxy in a
  process of its own, so it takes no interpreter lock from the client) holding
  every chunk 2 ms each way: a request and its answer take 4 ms longer.

On each, for the sync API and ``geobus.aio``, one message per call:

1. passive ``ReplicatedSender`` against one plain ``ServiceBusSender``;
2. active ``ReplicatedSender`` (both copies, quorum ``any``) against the same
   plain sender: the ratio is the whole price of the second copy;
3. a passive ``DedupReceiver`` (peek-lock + complete) draining a queue whose every
   message is on both namespaces, against two plain receivers, one per namespace,
   draining the same input at once (``latency_receives``);
4. many senders on one client: 16 threads (sync) or 64 tasks (async) sharing one
   passive ``ReplicatedSender``, against as many plain senders, one each, from
   one plain client (``latency_sends``).

Beside each throughput row, its CPU cost: this process's CPU time
(``time.process_time``, every thread) per message or copy, in µs.

The sides alternate between rounds and each row is the median of the rounds
(3; 1 with ``--quick``, a smoke run with fewer messages). Ratios are geobus /
plain, from one run: the machine is small and shared, so absolute figures drift
from run to run. Every plain figure is measured here.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any, NoReturn

from ...testing import fault_proxy_process
from . import common as bench
from .latency_receives import async_receive, fill, sync_receive
from .latency_sends import TASKS, THREADS, Timing, async_crowd, async_send, sync_crowd, sync_send
from .replication_shared import Via
from .table import report_text

ONE_WAY = 0.002  # seconds each proxy holds every chunk, each way: a 4 ms round trip
NETWORKS = ("loopback", "4ms RTT")
APIS = ("sync", "async")
SENDERS = ("plain", "passive", "active")
RECEIVERS = ("plain", "dedup")
CROWD = ("plain", "geobus")
CROWD_OF = {"sync": f"{THREADS} threads", "async": f"{TASKS} tasks"}


@dataclass(frozen=True)
class Sizes:
    single: int  # single-message sends per sender
    receive: int  # messages per receive scenario; each is on both namespaces
    crowd: int  # messages per many-senders scenario, spread over its threads or tasks


QUICK = Sizes(single=40, receive=40, crowd=128)
FULL = Sizes(single=200, receive=200, crowd=640)

Timings = dict[tuple[str, str, str, str], Timing]  # (network, api, scenario, side) -> timing


def _turn(sides: tuple[str, ...], round_no: int) -> tuple[str, ...]:
    turn = round_no % len(sides)
    return sides[turn:] + sides[:turn]


def _queues(round_no: int) -> dict[tuple[str, str, str], str]:
    return {(net, api, who): bench.queue_name(f"recv-{round_no}-{api}-{who}")
            for net in NETWORKS for api in APIS for who in RECEIVERS}  # fmt: skip


def _sync(ns: bench.Pair, net: str, via: Via, sizes: Sizes, queues: dict[tuple[str, str, str], str],
          round_no: int, found: Timings) -> None:
    closing: list[threading.Thread] = []
    try:
        for who in _turn(SENDERS, round_no):
            found[net, "sync", "send", who] = sync_send(ns, via, who, sizes.single, closing)
        for who in _turn(RECEIVERS, round_no):
            queue = queues[net, "sync", who]
            found[net, "sync", "receive", who] = sync_receive(ns, via, who, queue, sizes.receive, closing)
        for side in _turn(CROWD, round_no):
            found[net, "sync", "crowd", side] = sync_crowd(ns, via, side, sizes.crowd, closing)
    finally:
        bench.join_closing(closing)


async def _async(ns: bench.Pair, net: str, via: Via, sizes: Sizes, queues: dict[tuple[str, str, str], str],
                 round_no: int, found: Timings) -> None:
    closing: list[asyncio.Task[None]] = []
    try:
        for who in _turn(SENDERS, round_no):
            found[net, "async", "send", who] = await async_send(ns, via, who, sizes.single, closing)
        for who in _turn(RECEIVERS, round_no):
            queue = queues[net, "async", who]
            found[net, "async", "receive", who] = await async_receive(ns, via, who, queue, sizes.receive, closing)
        for side in _turn(CROWD, round_no):
            found[net, "async", "crowd", side] = await async_crowd(ns, via, side, sizes.crowd, closing)
    finally:
        await asyncio.wait_for(asyncio.gather(*closing), 30)


def run_round(ns: bench.Pair, vias: dict[str, Via], sizes: Sizes, round_no: int) -> Timings:
    """Every scenario once, on both networks; the sides' order turns with ``round_no``."""
    queues = _queues(round_no)
    asyncio.run(fill(ns, list(queues.values()), sizes.receive))
    found: Timings = {}
    for net in NETWORKS if round_no % 2 == 0 else NETWORKS[::-1]:
        _sync(ns, net, vias[net], sizes, queues, round_no, found)
        asyncio.run(_async(ns, net, vias[net], sizes, queues, round_no, found))
    for queue in queues.values():
        bench.expect_on_each(ns, queue, 0)  # every copy was settled: a leftover is a bug
    bench.log(f"  round {round_no + 1}: " + ", ".join(
        f"{net} {api} {scenario} {side} {t.seconds:.2f} s" for (net, api, scenario, side), t in found.items()))
    return found


# -- the rows -----------------------------------------------------------------------------------

# scenario, the geobus side against "plain", the row's name (api filled in), unit
ROWS = (
    ("send", "passive", "{api} passive send 1/call", "msgs/s"),
    ("send", "active", "{api} active send 1/call", "msgs/s"),
    ("receive", "dedup", "{api} DedupReceiver, both copies", "copies/s"),
    ("crowd", "geobus", "{api} {crowd}, 1 passive sender", "msgs/s"),
)
PER = {"msgs/s": "message", "copies/s": "copy"}
NOTES = {
    "send": "plain: one sender",
    "receive": "plain: a receiver per namespace",
    "crowd": "plain: a sender each, one client",
}


def _median(timings: list[Timing]) -> tuple[float, float, int]:
    """Median seconds and median CPU seconds of the rounds, and the count of each."""
    (count,) = {t.count for t in timings}
    return statistics.median(t.seconds for t in timings), statistics.median(t.cpu for t in timings), count


def metrics(rounds: list[Timings]) -> list[bench.Metric]:
    """A throughput row and a CPU row per network, API and scenario, geobus against plain."""
    rows = []
    for net in NETWORKS:
        for api in APIS:
            for scenario, ours, name, unit in ROWS:
                title = f"{net} " + name.format(api=api, crowd=CROWD_OF[api])
                seconds, cpu, count = _median([r[net, api, scenario, ours] for r in rounds])
                plain_seconds, plain_cpu, plain_count = _median([r[net, api, scenario, "plain"] for r in rounds])
                rows += [
                    bench.Metric(title, unit, bench.rate(count, seconds), bench.rate(plain_count, plain_seconds),
                                 "higher", NOTES[scenario], {"count": count}),
                    bench.Metric(f"{title}, CPU", "us", cpu / count * 1e6, plain_cpu / plain_count * 1e6, "lower",
                                 f"CPU per {PER[unit]}, this process"),
                ]  # fmt: skip
    return rows


def render(result: dict[str, Any]) -> str:
    sizes = result["sizes"]
    text = report_text(result, machine=f"azure-servicebus {result['machine']['azure-servicebus']}", about=[
        f"two `geobus local` processes (one per namespace); {result['body_bytes']}-byte bodies; "
        f"4ms RTT: a proxy process before each namespace, {result['one_way_s'] * 1000:g} ms each way",
        f"per sender: {sizes['single']:,} single sends; receive: {sizes['receive']:,} messages x 2 namespaces; "
        f"many senders: {sizes['crowd']:,} messages",
    ], ratio="geobus / plain (msgs/s, copies/s: higher is better; us CPU: lower is better)", name_width=52, notes=[
        "CPU: time.process_time of this process (every thread) per",
        "  message or copy; the namespaces and the proxies run in processes of their own.",
        "plain sends: one ServiceBusSender on the primary. DedupReceiver: passive, over both namespaces",
        "  (each message delivered once, its twin completed in the background), against two plain",
        "  ServiceBusReceivers, one per namespace, at once; both settle the same copies.",
        f"many senders: {THREADS} threads / {TASKS} tasks share one geobus sender, against a plain sender",
        "  each from one ServiceBusClient.",
    ])  # fmt: skip
    return text.replace(" best of ", " median of ", 1)  # report_text's heading assumes the best round


def main(argv: list[str] | None = None) -> int:
    args = bench.parse_args(__doc__ or "", argv, sizes=(QUICK, FULL), rounds_help="rounds",
                            quick_help="a smoke run: fewer messages, one round")
    sizes: Sizes = args.sizes
    with (
        bench.namespaces() as ns,
        fault_proxy_process(ns.primary, latency=ONE_WAY) as primary,
        fault_proxy_process(ns.secondary, latency=ONE_WAY) as secondary,
    ):
        vias: dict[str, Via] = {"loopback": None, "4ms RTT": (primary, secondary)}
        done = [run_round(ns, vias, sizes, round_no) for round_no in range(args.rounds)]
    result = {
        "machine": bench.machine({name: version(name) for name in ("azure-servicebus", "python-qpid-proton")}),
        "body_bytes": len(bench.BODY),
        "one_way_s": ONE_WAY,
        "sizes": asdict(sizes),
    }
    return bench.report(result, metrics(done), args, render=render)


def cli() -> NoReturn:
    """Run as a script (``benchmarks/latency.py``, ``python -m geobus._tools.bench.latency``)."""
    bench.run(main, interrupted="interrupted; every server and proxy started was stopped")


if __name__ == "__main__":
    cli()
