"""Session receive: geobus's session receiver against two plain SDK session receivers.

    .venv/bin/python benchmarks/sessions.py [--quick] [--json]
    python -m geobus._tools.bench.sessions ...      # the same, from an installed geobus
    geobus bench --only sessions [--quick]          # its rows in geobus bench's table of ratios

Two ``geobus local`` processes (one per namespace) with session-enabled queues.
Active mode (quorum ``all``) puts every message of ``sessions`` sessions on both
namespaces, so each session is there twice. Then, for the sync API and
``geobus.aio``:

- geobus: one ``GeoServiceBusClient`` session receiver per session, by name, over
  both namespaces (peek-lock + complete): each message is delivered once, in its
  producer's order, and its twin completed in the background;
- plain: a ``ServiceBusClient`` per namespace, each with a session receiver per
  session, the two namespaces read at once (a thread each, or ``gather``).

Both sides settle the same copies (every message on both namespaces), session by
session, and are timed from the first session's opening to the last one's last
completion; each receiver closes in the background while the next session is
read, on both sides (geobus's close waits for the twins it is still
completing). A warm-up session opens each side's connections untimed. Ratio = geobus / plain copies per second,
from the same run; the sides alternate between rounds and the best round of each
is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from azure.servicebus import ServiceBusMessage

from ...testing import process_pair
from . import common as bench
from .replication_shared import LIST_SIZE, client, plain_client
from .table import report_text

APIS = ("sync", "async")
SIDES = ("plain", "geobus")
WARM = "warm"  # the untimed session that opens each side's connections
RECEIVE_BATCH = 100
WAIT = 5.0  # a receive call's wait while messages are due
TAIL_WAIT = 0.02  # once every message is in: only twins are left to absorb


@dataclass(frozen=True)
class Sizes:
    messages: int  # in all, spread evenly over the sessions
    sessions: int


QUICK = Sizes(messages=120, sessions=4)
FULL = Sizes(messages=1200, sessions=10)


def _queues(rounds: int) -> list[str]:
    return [f"bench-sessions-{api}-{side}-{n}" for n in range(rounds) for api in APIS for side in SIDES]


@contextlib.contextmanager
def namespaces(queues: Sequence[str]) -> Iterator[bench.Pair]:
    """Two local namespaces, each in its own process, with ``queues`` session-enabled in both."""
    with tempfile.TemporaryDirectory(prefix="geobus-bench-sessions-") as scratch:
        entities = Path(scratch) / "entities.toml"
        entities.write_text("".join(f"[queues.{queue}]\nrequires_session = true\n" for queue in queues))
        started = time.perf_counter()
        with process_pair(args=["--host", "127.0.0.1"], entities=entities) as pair:
            bench.log(f"  two namespaces up in {time.perf_counter() - started:.1f} s")
            yield pair


def _names(sizes: Sizes) -> list[str]:
    return [f"s{n}" for n in range(sizes.sessions)]


async def fill(ns: bench.Pair, queues: Sequence[str], sizes: Sizes) -> None:
    """Active mode, quorum all: each queue gets every session's messages on both namespaces
    (geobus's sender stamps them), and the warm-up session one message."""
    per = sizes.messages // sizes.sessions
    async with client(ns, "async", "active", write_quorum="all") as filler:
        for queue in queues:
            async with filler.get_queue_sender(queue) as sender:
                await sender.send_messages(ServiceBusMessage(bench.BODY, session_id=WARM))
                for session in _names(sizes):
                    for start in range(0, per, LIST_SIZE):
                        count = min(LIST_SIZE, per - start)
                        await sender.send_messages([ServiceBusMessage(bench.BODY, session_id=session) for _ in range(count)])
            bench.expect_on_each(ns, queue, per * sizes.sessions + 1)


class _Session:
    """One session's drain on one side, decided without I/O: what to ask for, when it is done."""

    def __init__(self, what: str, count: int, *, geobus: bool) -> None:
        self.what, self.count, self.geobus = what, count, geobus
        self.ids: set[str] = set()
        self.got = self.absorbed = 0
        self._stall = bench.Stall(what)

    def ask(self) -> tuple[int, float] | None:
        """``(max_message_count, max_wait_time)`` of the next receive call; None: done."""
        if self.got < self.count:
            return RECEIVE_BATCH, WAIT
        if self.geobus and self.absorbed < self.count:
            return RECEIVE_BATCH, TAIL_WAIT
        return None

    def took(self, batch: list[Any], absorbed: int) -> None:
        """Raises RuntimeError: geobus delivered a message twice, or nothing moved for ``common.STALL`` s."""
        for message in batch:
            if self.geobus and message.message_id in self.ids:
                raise RuntimeError(f"{self.what}: message {message.message_id} was delivered twice")
            self.ids.add(message.message_id)
        self.got += len(batch)
        self.absorbed = absorbed
        self._stall.check((self.got, absorbed))


def _drain(receiver: Any, session: _Session) -> None:
    while (ask := session.ask()) is not None:
        batch = receiver.receive_messages(max_message_count=ask[0], max_wait_time=ask[1])
        for message in batch:
            receiver.complete_message(message)
        session.took(batch, receiver.stats.duplicates_absorbed if session.geobus else 0)


async def _adrain(receiver: Any, session: _Session) -> None:
    while (ask := session.ask()) is not None:
        batch = await receiver.receive_messages(max_message_count=ask[0], max_wait_time=ask[1])
        for message in batch:
            await receiver.complete_message(message)
        session.took(batch, receiver.stats.duplicates_absorbed if session.geobus else 0)


def _timed(sizes: Sizes) -> list[tuple[str, int]]:
    return [(name, sizes.messages // sizes.sessions) for name in _names(sizes)]


def _clients(ns: bench.Pair, api: str, side: str) -> list[Any]:
    """geobus: one client over both namespaces; plain: the SDK's own client per namespace."""
    if side == "geobus":
        return [client(ns, api, "active")]
    return [plain_client(api, connection_string) for connection_string in ns.connection_strings]


def sync_side(ns: bench.Pair, queue: str, sizes: Sizes, side: str, closing: list[threading.Thread]) -> float:
    """Seconds to drain every session of ``queue`` (both copies) on one side, after the warm-up."""
    clients = _clients(ns, "sync", side)
    receivers: list[threading.Thread] = []  # closing, each before its client
    started: list[float] = []
    # Every reader has drained the warm-up session when the clock starts.
    warmed = threading.Barrier(len(clients), action=lambda: started.append(time.perf_counter()))

    def read(one: Any) -> None:
        for name, count in [(WARM, 1), *_timed(sizes)]:
            receiver = one.get_queue_receiver(queue, session_id=name)
            try:
                _drain(receiver, _Session(f"sync {side} {name}", count, geobus=side == "geobus"))
            finally:
                bench.close_later(receivers, receiver)
            if name == WARM:
                warmed.wait(bench.STALL)

    try:
        threads = [threading.Thread(target=read, args=(one,)) for one in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if not started:
            raise RuntimeError(f"sync {side}: a reader did not finish (its traceback is above)")
        return time.perf_counter() - started[0]
    finally:
        bench.join_closing(receivers)  # a receiver closed after its client would leave its twins unsettled
        bench.close_later(closing, *clients)


async def async_side(ns: bench.Pair, queue: str, sizes: Sizes, side: str, closing: list[asyncio.Task[None]]) -> float:
    """As ``sync_side``, with ``geobus.aio`` and the SDK's async receivers."""
    clients = _clients(ns, "async", side)
    receivers: list[asyncio.Task[None]] = []  # closing, each before its client

    async def read(one: Any, sessions: list[tuple[str, int]]) -> None:
        for name, count in sessions:
            receiver = one.get_queue_receiver(queue, session_id=name)
            try:
                await _adrain(receiver, _Session(f"async {side} {name}", count, geobus=side == "geobus"))
            finally:
                bench.aclose_later(receivers, receiver)

    try:
        await asyncio.gather(*(read(one, [(WARM, 1)]) for one in clients))
        started = time.perf_counter()
        await asyncio.gather(*(read(one, _timed(sizes)) for one in clients))
        return time.perf_counter() - started
    finally:
        await asyncio.wait_for(asyncio.gather(*receivers), 30)
        bench.aclose_later(closing, *clients)


def run_round(ns: bench.Pair, sizes: Sizes, round_no: int) -> dict[str, dict[str, float]]:
    """Seconds per api and side for one round (the sides' order alternates between rounds)."""
    order = SIDES if round_no % 2 == 0 else SIDES[::-1]
    queues = {api: {side: f"bench-sessions-{api}-{side}-{round_no}" for side in SIDES} for api in APIS}
    asyncio.run(fill(ns, [q for per_api in queues.values() for q in per_api.values()], sizes))
    seconds: dict[str, dict[str, float]] = {"sync": {}, "async": {}}
    closing: list[threading.Thread] = []
    for side in order:
        seconds["sync"][side] = sync_side(ns, queues["sync"][side], sizes, side, closing)
    bench.join_closing(closing)

    async def run_async() -> None:
        aclosing: list[asyncio.Task[None]] = []
        try:
            for side in order:
                seconds["async"][side] = await async_side(ns, queues["async"][side], sizes, side, aclosing)
        finally:
            await asyncio.wait_for(asyncio.gather(*aclosing), 30)

    asyncio.run(run_async())
    for per_api in queues.values():
        for queue in per_api.values():
            bench.expect_on_each(ns, queue, 0)  # every copy was settled: a leftover is a bug
    bench.log(f"  round {round_no + 1}: " + ", ".join(f"{api} {side} {s:.2f} s" for api, per in seconds.items()
                                                      for side, s in per.items()))  # fmt: skip
    return seconds


def metrics(rounds: list[dict[str, dict[str, float]]], sizes: Sizes) -> list[bench.Metric]:
    messages = sizes.messages // sizes.sessions * sizes.sessions
    copies = 2 * messages
    found = []
    for api in APIS:
        ours = min(r[api]["geobus"] for r in rounds)
        plain = min(r[api]["plain"] for r in rounds)
        found.append(bench.Metric(
            f"{api} session receive, {sizes.sessions} sessions", "copies/s", bench.rate(copies, ours),
            bench.rate(copies, plain), "higher", note="both copies settled; plain: a receiver per namespace",
            extra={"geobus_unique_msgs_per_s": round(bench.rate(messages, ours), 1), "copies": copies},
        ))  # fmt: skip
    return found


def render(result: dict[str, Any]) -> str:
    sizes = result["sizes"]
    return report_text(result, machine=f"azure-servicebus {result['machine']['azure-servicebus']}", about=[
        f"two `geobus local` processes; {sizes['messages']:,} messages in {sizes['sessions']} sessions, "
        "each on both namespaces (active mode, quorum all)",
    ], ratio="geobus / plain (copies/s: higher is better)", notes=[
        "geobus: a session receiver per session over both namespaces (each message once, in order,",
        "  its twin completed in the background); plain: a ServiceBusClient per namespace, a session",
        "  receiver per session, both namespaces at once. Both settle every copy.",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = bench.parse_args(__doc__ or "", argv, sizes=(QUICK, FULL), rounds_help="rounds",
                            quick_help=f"{QUICK.messages} messages in {QUICK.sessions} sessions, one round")
    sizes: Sizes = args.sizes
    with namespaces(_queues(args.rounds)) as ns:
        done = [run_round(ns, sizes, round_no) for round_no in range(args.rounds)]
    result = {
        "machine": bench.machine({name: version(name) for name in ("azure-servicebus", "python-qpid-proton")}),
        "sizes": asdict(sizes),
    }
    return bench.report(result, metrics(done, sizes), args, render=render)


def cli() -> NoReturn:
    """Run as a script (``benchmarks/sessions.py``, ``python -m geobus._tools.bench.sessions``)."""
    bench.run(main, interrupted="interrupted; every server started was stopped")


if __name__ == "__main__":
    cli()
