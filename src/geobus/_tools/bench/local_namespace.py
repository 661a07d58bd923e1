"""Throughput of the real azure-servicebus client against ``geobus.local``.

    .venv/bin/python benchmarks/local_namespace.py [--quick] [--messages N] [--json]
    python -m geobus._tools.bench.local_namespace ...     # the same, from an installed geobus
    geobus bench --only local_namespace [--quick]   # its rows in geobus bench's table of ratios

Measures, for the sync client and ``azure.servicebus.aio``: one message per
send call (with per-call latency), lists of 100 per call, peek-lock receive +
complete, and receive-and-delete with prefetch 100. Each runs against four
servers: ``geobus local`` in its own process (the headline: client and server
do not share a GIL) and ``LocalNamespace`` on a thread of this process, each
with the memory store and with the SQLite store.

The SQLite store commits one WAL transaction per server loop turn with
``synchronous=NORMAL``, so a commit writes but does not fsync (checkpoints do):
its cost here is SQLite's, not the disk's.

The machine is small and shared, so absolute figures drift from run to run;
the ratios printed are taken from one run. Configurations alternate between
rounds and the best round of each row is kept (noise only ever slows a run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode

from geobus._cli.common import number
from geobus.local import LocalNamespace, LocalNamespaceProcess
from geobus.testing._namespaces import counts_of

from . import common as bench
from .drain import Drain, apump, pump
from .replication_shared import plain_client
from .table import machine_line

LIST_SIZE = 100
RECEIVE_AND_DELETE = ServiceBusReceiveMode.RECEIVE_AND_DELETE
PREFETCH = 100
SEND_ONE, SEND_LIST = "send 1/call", "send lists of 100"
PEEK_LOCK, RECEIVE_DELETE = "peek-lock + complete", "receive&delete pf100"
SCENARIOS = (SEND_ONE, SEND_LIST, PEEK_LOCK, RECEIVE_DELETE)
APIS = ("sync", "async")
CONFIGS = (("out-of-process", "memory"), ("out-of-process", "sqlite"),
           ("in-process", "memory"), ("in-process", "sqlite"))


@dataclass
class Row:
    placement: str
    store: str
    api: str
    scenario: str
    messages: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    round_no: int = 0

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies_ms"]
        data["msgs_per_s"] = round(self.msgs_per_s, 1)
        if self.latencies_ms:
            data["p50_ms"], data["p99_ms"] = bench.percentiles(self.latencies_ms)
        return data


# -- servers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _server(placement: str, store: Path | None) -> Iterator[LocalNamespace | LocalNamespaceProcess]:
    """One local namespace, in a child process or on a thread of this one; stopped after,
    also when its start was interrupted (it may be listening already)."""
    namespace: LocalNamespace | LocalNamespaceProcess = (
        LocalNamespaceProcess(store=store, args=["--host", "127.0.0.1"])
        if placement == "out-of-process"
        else LocalNamespace(host="127.0.0.1", port=0, store=store)
    )
    try:
        namespace.start()
        yield namespace
    finally:
        namespace.stop()  # a process: SIGTERM to the pid it started, SIGKILL after 15 s


# -- the scenarios ------------------------------------------------------------------------
#
# Opening and closing a handler costs the SDK about a second (``common``), so each API gets
# one queue and three handlers in a row: a sender for both send scenarios, whose messages
# then feed a peek-lock receiver and a receive-and-delete receiver. Only the loops are
# timed, and handlers finish closing in the background once their frames are out.

Timings = dict[str, tuple[float, list[float]]]


def _drains(api: str, sizes: dict[str, int]) -> tuple[Drain, Drain]:
    """Peek-lock (a message of warm-up, untimed; each completed) and receive-and-delete
    (timed from its first call: the prefetch is part of what it measures)."""
    delete = Drain(f"{api} {RECEIVE_DELETE}", sizes[RECEIVE_DELETE], settle=False)
    delete.start()
    return Drain(f"{api} {PEEK_LOCK}", sizes[PEEK_LOCK]), delete


def run_sync(cs: str, queue: str, sizes: dict[str, int]) -> Timings:
    timings: Timings = {}
    closing: list[threading.Thread] = []
    peek_lock, delete = _drains("sync", sizes)
    with plain_client("sync", cs) as client:
        sender = client.get_queue_sender(queue)
        sender.send_messages(ServiceBusMessage(bench.BODY))  # received as the peek-lock warm-up
        timings[SEND_ONE] = bench.time_single_sends(sender.send_messages, sizes[SEND_ONE])
        started = time.perf_counter()
        for _ in range(sizes[SEND_LIST] // LIST_SIZE):
            sender.send_messages(bench.messages(LIST_SIZE))
        timings[SEND_LIST] = time.perf_counter() - started, []
        receiver = client.get_queue_receiver(queue)
        pump(receiver, peek_lock)
        peek_lock.start()
        pump(receiver, peek_lock)
        deleting = client.get_queue_receiver(queue, receive_mode=RECEIVE_AND_DELETE, prefetch_count=PREFETCH)
        pump(deleting, delete)
        bench.close_later(closing, sender, receiver, deleting)
        bench.join_closing(closing)
    return {**timings, PEEK_LOCK: (peek_lock.seconds, []), RECEIVE_DELETE: (delete.seconds, [])}


async def run_async(cs: str, queue: str, sizes: dict[str, int]) -> Timings:
    timings: Timings = {}
    closing: list[asyncio.Task[None]] = []
    peek_lock, delete = _drains("async", sizes)
    async with plain_client("async", cs) as client:
        sender = client.get_queue_sender(queue)
        await sender.send_messages(ServiceBusMessage(bench.BODY))
        timings[SEND_ONE] = await bench.atime_single_sends(sender.send_messages, sizes[SEND_ONE])
        started = time.perf_counter()
        for _ in range(sizes[SEND_LIST] // LIST_SIZE):
            await sender.send_messages(bench.messages(LIST_SIZE))
        timings[SEND_LIST] = time.perf_counter() - started, []
        receiver = client.get_queue_receiver(queue)
        await apump(receiver, peek_lock)
        peek_lock.start()
        await apump(receiver, peek_lock)
        deleting = client.get_queue_receiver(queue, receive_mode=RECEIVE_AND_DELETE, prefetch_count=PREFETCH)
        await apump(deleting, delete)
        bench.aclose_later(closing, sender, receiver, deleting)
        await asyncio.gather(*closing)
    return {**timings, PEEK_LOCK: (peek_lock.seconds, []), RECEIVE_DELETE: (delete.seconds, [])}


# -- running ------------------------------------------------------------------------------


def scenario_sizes(messages: int) -> dict[str, int]:
    """Single sends and peek-lock use ``messages``; lists and prefetch about four times as many.

    The sends fill the queue that the receives then empty, so the two receive
    sizes add up to the two send sizes."""
    lists = -(-4 * messages // LIST_SIZE) * LIST_SIZE
    return {SEND_ONE: messages, SEND_LIST: lists, PEEK_LOCK: messages, RECEIVE_DELETE: lists}


def run_api(server: LocalNamespace | LocalNamespaceProcess, api: str, sizes: dict[str, int]) -> Timings:
    queue = bench.queue_name(api)
    if api == "sync":
        timings = run_sync(server.connection_string, queue, sizes)
    else:
        timings = asyncio.run(run_async(server.connection_string, queue, sizes))
    held = counts_of(server).get(queue, 0)
    if held:  # every message sent was received, so a leftover is a server bug
        raise RuntimeError(f"{api}: the server still holds {held} messages in {queue}, expected none")
    return timings


def run_all(messages: int, rounds: int) -> list[Row]:
    sizes = scenario_sizes(messages)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="geobus-bench-") as scratch:
        for round_ in range(rounds):
            order = CONFIGS if round_ % 2 == 0 else tuple(reversed(CONFIGS))
            for placement, store_kind in order:
                store = Path(scratch, f"r{round_}-{placement}.sqlite") if store_kind == "sqlite" else None
                started = time.perf_counter()
                with _server(placement, store) as server:
                    for api in APIS:
                        for scenario, (seconds, latencies) in run_api(server, api, sizes).items():
                            rows.append(Row(placement, store_kind, api, scenario, sizes[scenario],
                                            seconds, latencies, round_))
                bench.log(f"  round {round_ + 1}/{rounds}  {placement:<14} {store_kind:<6} "
                    f"{time.perf_counter() - started:5.1f} s")
    return rows


def best_rows(rows: list[Row]) -> dict[tuple[str, str, str, str], Row]:
    best: dict[tuple[str, str, str, str], Row] = {}
    for row in rows:
        key = (row.placement, row.store, row.api, row.scenario)
        if key not in best or row.msgs_per_s > best[key].msgs_per_s:
            best[key] = row
    return best


def ratios(best: dict[tuple[str, str, str, str], Row]) -> dict[str, dict[str, float]]:
    """Same-run ratios, keyed by what is divided by what, then by api/scenario."""

    def rate(placement: str, store: str, api: str, scenario: str) -> float:
        return best[(placement, store, api, scenario)].msgs_per_s

    out: dict[str, dict[str, float]] = {}
    for placement in ("out-of-process", "in-process"):
        out[f"sqlite/memory, {placement}"] = {
            f"{api} {s}": rate(placement, "sqlite", api, s) / rate(placement, "memory", api, s)
            for api in APIS for s in SCENARIOS
        }
    for store in ("memory", "sqlite"):
        out[f"in-process/out-of-process, {store}"] = {
            f"{api} {s}": rate("in-process", store, api, s) / rate("out-of-process", store, api, s)
            for api in APIS for s in SCENARIOS
        }
    for placement, store in CONFIGS:
        out[f"async/sync, {placement} {store}"] = {
            s: rate(placement, store, "async", s) / rate(placement, store, "sync", s) for s in SCENARIOS
        }
    return {name: {k: round(v, 3) for k, v in values.items()} for name, values in out.items()}


# -- output -------------------------------------------------------------------------------


def render(result: dict[str, Any], best: dict[tuple[str, str, str, str], Row]) -> str:
    m, ratio = result["machine"], result["ratios"]
    lines = [
        machine_line(m, m["platform"]),
        f"azure-servicebus {m['azure-servicebus']} (pure-Python AMQP), python-qpid-proton "
        f"{m['python-qpid-proton']}; {result['body_bytes']}-byte bodies; best of {result['rounds']} "
        f"round(s); took {result['elapsed_s']:.0f} s",
        "messages per row: " + ", ".join(f"{s} {n:,}" for s, n in result["sizes"].items()),
        "",
        "headline: out-of-process (client and server in separate processes, no shared GIL)",
        "",
        f"{'msgs/s':<27}{'out-of-process':^24}{'in-process':^24}",
        f"{'':<27}" + "".join(f"{store:>12}" for _, store in CONFIGS),
    ]
    for api in APIS:
        for scenario in SCENARIOS:
            cells = "".join(f"{best[(p, s, api, scenario)].msgs_per_s:>12,.0f}" for p, s in CONFIGS)
            lines.append(f"{api:<6}{scenario:<21}{cells}")
    lines += ["", f"{SEND_ONE} latency, ms p50/p99"]
    for api in APIS:
        cells = "".join(
            "{:>12}".format("{:.2f}/{:.2f}".format(*bench.percentiles(best[(p, s, api, SEND_ONE)].latencies_ms)))
            for p, s in CONFIGS
        )
        lines.append(f"{api:<27}{cells}")
    lines += [
        "",
        f"{'ratios, same run':<27}{'sqlite/memory':^24}{'in-process/out-of-proc':^24}",
        f"{'':<27}{'out-of-proc':>12}{'in-proc':>12}{'memory':>12}{'sqlite':>12}",
    ]
    columns = ("sqlite/memory, out-of-process", "sqlite/memory, in-process",
               "in-process/out-of-process, memory", "in-process/out-of-process, sqlite")
    for api in APIS:
        for scenario in SCENARIOS:
            cells = "".join(f"{ratio[c][f'{api} {scenario}']:>12.2f}" for c in columns)
            lines.append(f"{api:<6}{scenario:<21}{cells}")
    lines += ["", f"{'async/sync, same run':<27}{'out-of-process':^24}{'in-process':^24}",
              f"{'':<27}" + "".join(f"{store:>12}" for _, store in CONFIGS)]
    for scenario in SCENARIOS:
        cells = "".join(f"{ratio[f'async/sync, {p} {s}'][scenario]:>12.2f}" for p, s in CONFIGS)
        lines.append(f"      {scenario:<21}{cells}")
    return "\n".join(lines)


def _messages_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=number(int, "a whole number", at_least=2), default=None,
                        help="messages for single sends and peek-lock (4x for lists and prefetch; at least 2, "
                             "for percentiles); default 2000, 300 with --quick")


def main(argv: list[str] | None = None) -> int:
    args = bench.parse_args(__doc__ or "", argv, quick_help="a smoke run: fewer messages, one round",
                                    rounds_help="rounds over every configuration", more=_messages_option)
    messages = args.messages if args.messages is not None else (300 if args.quick else 2000)
    rows = run_all(messages, args.rounds)
    best = best_rows(rows)
    result = {
        "machine": bench.machine({name: version(name) for name in ("azure-servicebus", "python-qpid-proton")}),
        "rounds": args.rounds,
        "body_bytes": len(bench.BODY),
        "sizes": scenario_sizes(messages),
        "rows": [best[key].as_json() for key in sorted(best)],
        "all_rounds": [row.as_json() for row in rows],
        "ratios": ratios(best),
        "elapsed_s": round(time.perf_counter() - args.started, 1),
    }
    if args.json:
        bench.OUT.json(result)
    else:
        bench.OUT.line(render(result, best))
    return 0


def cli() -> NoReturn:
    """Run as a script (``benchmarks/local_namespace.py``, ``python -m geobus._tools.bench.local_namespace``)."""
    bench.run(main, interrupted="interrupted; every server started was stopped")


if __name__ == "__main__":
    cli()
