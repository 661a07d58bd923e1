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
import json
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from geobus.local import LocalNamespace, LocalNamespaceProcess

from . import common as bench

LIST_SIZE = 100
PREFETCH = 100
RECEIVE_DEADLINE = 60.0  # a receive loop that gets nothing for this long is a server bug
SEND_ONE, SEND_LIST = "send 1/call", "send lists of 100"
PEEK_LOCK, RECEIVE_DELETE = "peek-lock + complete", "receive&delete pf100"
SCENARIOS = (SEND_ONE, SEND_LIST, PEEK_LOCK, RECEIVE_DELETE)
APIS = ("sync", "async")
CONFIGS = (("out-of-process", "memory"), ("out-of-process", "sqlite"),
           ("in-process", "memory"), ("in-process", "sqlite"))
# docs/sdk-behaviour.md, "Throughput seen": other runs on this kind of machine, not measured here.
REFERENCE = {
    ("sync", "send 1/call"): "~1,700", ("async", "send 1/call"): "~1,500",
    ("sync", "send lists of 100"): "~8,000", ("async", "send lists of 100"): "~6,500",
    ("sync", "peek-lock + complete"): "1,300-1,900", ("async", "peek-lock + complete"): "1,300-1,900",
    ("sync", "receive&delete pf100"): "~11,000", ("async", "receive&delete pf100"): "~11,000",
}


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


class Server:
    """One local namespace, here or in a child process; only ever stops what it started."""

    def __init__(self, placement: str, store: Path | None) -> None:
        self.placement = placement
        self._store = store
        self._process: LocalNamespaceProcess | None = None
        self._namespace: LocalNamespace | None = None

    def __enter__(self) -> Server:
        try:
            if self.placement == "out-of-process":
                self._process = LocalNamespaceProcess(store=self._store, args=["--host", "127.0.0.1"])
                self._process.start()
            else:
                self._namespace = LocalNamespace(host="127.0.0.1", port=0, store=self._store)
                self._namespace.start()
        except BaseException:  # Ctrl-C while it starts: it may be listening already
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.stop()  # SIGTERM to the pid it started, SIGKILL after 15 s
        if self._namespace is not None:
            self._namespace.stop()

    @property
    def connection_string(self) -> str:
        if self._process is not None:
            return self._process.connection_string
        assert self._namespace is not None
        return self._namespace.connection_string

    def counts(self) -> dict[str, int]:
        if self._process is not None:
            counts: dict[str, int] = self._process.control.status()["counts"]
            return counts
        assert self._namespace is not None
        return self._namespace.counts()


# -- the scenarios ------------------------------------------------------------------------
#
# Opening a sender or receiver costs the SDK ~0.45 s (it polls every 50 ms between
# handshake steps) and closing one ~0.5 s (it joins a keep-alive thread that sleeps
# in 1 s steps), so each API gets one queue and three handlers in a row: a sender
# for both send scenarios, whose messages then feed a peek-lock receiver and a
# receive-and-delete receiver. Only the loops are timed, and handlers finish
# closing in the background once their frames are out.

Timings = dict[str, tuple[float, list[float]]]


@contextlib.contextmanager
def _closed_in_background(handler: Any, closing: list[threading.Thread]) -> Iterator[Any]:
    with contextlib.ExitStack() as on_error:
        on_error.enter_context(handler)
        yield handler
        on_error.pop_all()
    thread = threading.Thread(target=handler.close, name="close-handler", daemon=True)
    thread.start()
    closing.append(thread)


@contextlib.asynccontextmanager
async def _aclosed_in_background(handler: Any, closing: list[asyncio.Task[None]]) -> AsyncIterator[Any]:
    async with contextlib.AsyncExitStack() as on_error:
        await on_error.enter_async_context(handler)
        yield handler
        on_error.pop_all()
    closing.append(asyncio.create_task(handler.close()))


def _receive_loop(receive: Callable[[int], list[Any]], settle: Callable[[Any], None] | None,
                  count: int) -> float:
    started = time.perf_counter()
    got, last_progress = 0, started
    while got < count:
        batch = receive(min(LIST_SIZE, count - got))
        if settle is not None:
            for message in batch:
                settle(message)
        last_progress = _progress(batch, got, count, last_progress)
        got += len(batch)
    return time.perf_counter() - started


def _progress(batch: list[Any], got: int, count: int, last_progress: float) -> float:
    now = time.perf_counter()
    if batch:
        return now
    if now - last_progress > RECEIVE_DEADLINE:
        raise RuntimeError(f"received {got} of {count} messages, then nothing for {RECEIVE_DEADLINE:.0f} s")
    return last_progress


def run_sync(cs: str, queue: str, sizes: dict[str, int]) -> Timings:
    timings: Timings = {}
    closing: list[threading.Thread] = []
    with ServiceBusClient.from_connection_string(cs, retry_total=1) as client:
        with _closed_in_background(client.get_queue_sender(queue), closing) as sender:
            sender.send_messages(ServiceBusMessage(bench.BODY))  # warm-up, received untimed below
            timings[SEND_ONE] = bench.time_single_sends(sender.send_messages, sizes[SEND_ONE])
            started = time.perf_counter()
            for _ in range(sizes[SEND_LIST] // LIST_SIZE):
                sender.send_messages([ServiceBusMessage(bench.BODY) for _ in range(LIST_SIZE)])
            timings[SEND_LIST] = time.perf_counter() - started, []
        with _closed_in_background(client.get_queue_receiver(queue), closing) as receiver:
            for message in receiver.receive_messages(max_message_count=1, max_wait_time=5):
                receiver.complete_message(message)
            seconds = _receive_loop(
                lambda n: receiver.receive_messages(max_message_count=n, max_wait_time=5),
                receiver.complete_message, sizes[PEEK_LOCK])
            timings[PEEK_LOCK] = seconds, []
        with _closed_in_background(client.get_queue_receiver(
            queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=PREFETCH
        ), closing) as receiver:
            seconds = _receive_loop(
                lambda n: receiver.receive_messages(max_message_count=n, max_wait_time=5),
                None, sizes[RECEIVE_DELETE])
            timings[RECEIVE_DELETE] = seconds, []
        for thread in closing:
            thread.join()
    return timings


async def _areceive_loop(receive: Callable[[int], Any], settle: Callable[[Any], Any] | None,
                         count: int) -> float:
    started = time.perf_counter()
    got, last_progress = 0, started
    while got < count:
        batch = await receive(min(LIST_SIZE, count - got))
        if settle is not None:
            for message in batch:
                await settle(message)
        last_progress = _progress(batch, got, count, last_progress)
        got += len(batch)
    return time.perf_counter() - started


async def run_async(cs: str, queue: str, sizes: dict[str, int]) -> Timings:
    timings: Timings = {}
    closing: list[asyncio.Task[None]] = []
    async with AsyncServiceBusClient.from_connection_string(cs, retry_total=1) as client:
        async with _aclosed_in_background(client.get_queue_sender(queue), closing) as sender:
            await sender.send_messages(ServiceBusMessage(bench.BODY))
            timings[SEND_ONE] = await bench.atime_single_sends(sender.send_messages, sizes[SEND_ONE])
            started = time.perf_counter()
            for _ in range(sizes[SEND_LIST] // LIST_SIZE):
                await sender.send_messages([ServiceBusMessage(bench.BODY) for _ in range(LIST_SIZE)])
            timings[SEND_LIST] = time.perf_counter() - started, []
        async with _aclosed_in_background(client.get_queue_receiver(queue), closing) as receiver:
            for message in await receiver.receive_messages(max_message_count=1, max_wait_time=5):
                await receiver.complete_message(message)
            seconds = await _areceive_loop(
                lambda n: receiver.receive_messages(max_message_count=n, max_wait_time=5),
                receiver.complete_message, sizes[PEEK_LOCK])
            timings[PEEK_LOCK] = seconds, []
        async with _aclosed_in_background(client.get_queue_receiver(
            queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=PREFETCH
        ), closing) as receiver:
            seconds = await _areceive_loop(
                lambda n: receiver.receive_messages(max_message_count=n, max_wait_time=5),
                None, sizes[RECEIVE_DELETE])
            timings[RECEIVE_DELETE] = seconds, []
        await asyncio.gather(*closing)
    return timings


# -- running ------------------------------------------------------------------------------


def scenario_sizes(messages: int) -> dict[str, int]:
    """Single sends and peek-lock use ``messages``; lists and prefetch about four times as many.

    The sends fill the queue that the receives then empty, so the two receive
    sizes add up to the two send sizes."""
    lists = -(-4 * messages // LIST_SIZE) * LIST_SIZE
    return {SEND_ONE: messages, SEND_LIST: lists, PEEK_LOCK: messages, RECEIVE_DELETE: lists}


def run_api(server: Server, api: str, sizes: dict[str, int]) -> Timings:
    queue = bench.queue_name(api)
    if api == "sync":
        timings = run_sync(server.connection_string, queue, sizes)
    else:
        timings = asyncio.run(run_async(server.connection_string, queue, sizes))
    held = server.counts().get(queue, 0)
    if held:  # every message sent was received, so a leftover is a server bug
        raise RuntimeError(f"{api}: the server still holds {held} messages in {queue}, expected none")
    return timings


def run_all(messages: int, rounds: int, log: Callable[[str], None]) -> list[Row]:
    sizes = scenario_sizes(messages)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="geobus-bench-") as scratch:
        for round_ in range(rounds):
            order = CONFIGS if round_ % 2 == 0 else tuple(reversed(CONFIGS))
            for placement, store_kind in order:
                store = Path(scratch, f"r{round_}-{placement}.sqlite") if store_kind == "sqlite" else None
                started = time.perf_counter()
                with Server(placement, store) as server:
                    for api in APIS:
                        for scenario, (seconds, latencies) in run_api(server, api, sizes).items():
                            rows.append(Row(placement, store_kind, api, scenario, sizes[scenario],
                                            seconds, latencies, round_))
                log(f"  round {round_ + 1}/{rounds}  {placement:<14} {store_kind:<6} "
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
        bench.machine_line(m, m["platform"]),
        f"azure-servicebus {m['azure-servicebus']} (pure-Python AMQP), python-qpid-proton "
        f"{m['python-qpid-proton']}; {result['body_bytes']}-byte bodies; best of {result['rounds']} "
        f"round(s); took {result['elapsed_s']:.0f} s",
        "messages per row: " + ", ".join(f"{s} {n:,}" for s, n in result["sizes"].items()),
        "",
        "headline: out-of-process (client and server in separate processes, no shared GIL)",
        "",
        f"{'msgs/s':<27}{'out-of-process':^24}{'in-process':^24}   reference*",
        f"{'':<27}" + "".join(f"{store:>12}" for _, store in CONFIGS) + "   (not measured)",
    ]
    for api in APIS:
        for scenario in SCENARIOS:
            cells = "".join(f"{best[(p, s, api, scenario)].msgs_per_s:>12,.0f}" for p, s in CONFIGS)
            lines.append(f"{api:<6}{scenario:<21}{cells}   {REFERENCE[(api, scenario)]}")
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
    lines += ["", "* reference: docs/sdk-behaviour.md \"Throughput seen\", figures from earlier runs on this kind of",
              "  machine (server and client sharing 2 cores); context only, not measured by this run."]
    return "\n".join(lines)


def _messages_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=None,
                        help="messages for single sends and peek-lock (4x for lists and prefetch); "
                             "default 2000, 300 with --quick")


def main(argv: list[str] | None = None) -> int:
    parser, args = bench.parse_args(__doc__, argv, quick_help="a smoke run: fewer messages, one round",
                              rounds_help="rounds over every configuration", more=_messages_option)
    messages = args.messages if args.messages is not None else (300 if args.quick else 2000)
    rounds = args.rounds
    if messages < 2 or rounds < 1:
        parser.error("--messages must be at least 2 (for percentiles) and --rounds at least 1")

    started = time.perf_counter()
    with bench.sigterm_as_interrupt():
        rows = run_all(messages, rounds, bench.log)
    best = best_rows(rows)
    result = {
        "machine": bench.machine({"azure-servicebus": version("azure-servicebus"),
                            "python-qpid-proton": version("python-qpid-proton")}),
        "rounds": rounds,
        "body_bytes": len(bench.BODY),
        "sizes": scenario_sizes(messages),
        "rows": [best[key].as_json() for key in sorted(best)],
        "all_rounds": [row.as_json() for row in rows],
        "ratios": ratios(best),
        "reference_not_measured": {f"{api} {s}": v for (api, s), v in REFERENCE.items()},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, indent=2) if args.json else render(result, best))
    return 0


def cli() -> NoReturn:
    """Run as a script (``benchmarks/local_namespace.py``, ``python -m geobus._tools.bench.local_namespace``)."""
    bench.run(main, interrupted="interrupted; every server started was stopped")


if __name__ == "__main__":
    cli()
