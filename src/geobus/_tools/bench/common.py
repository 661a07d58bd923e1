"""What the benchmarks share: the namespaces, timing, closing handlers, the row, the command line.

Not a benchmark itself. The benchmarks live in the package, so that ``geobus
bench`` runs them from an installed geobus; ``benchmarks/*.py`` in a checkout
are thin scripts that call them. Each measures both sides of what it compares
in the same run, and reads geobus only through its public API (stats, the local
namespaces' control endpoints).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

from azure.servicebus import ServiceBusMessage

from ..._cli.output import INTERRUPTED, Out
from ..._cli.signals import sigterm_as_interrupt
from ..._version import __version__
from ...local import LocalNamespaceProcess
from ...testing import NamespacePair, process_pair

BODY = b"x" * 128
STALL = 60.0  # a loop that makes no progress for this long is a bug, not noise
OUT = Out("bench")

Pair = NamespacePair[LocalNamespaceProcess]


# -- the namespaces -------------------------------------------------------------------------


@contextlib.contextmanager
def namespaces() -> Iterator[Pair]:
    """Two local namespaces, each ``geobus local`` in its own process (as two regions would
    be), started at once; only ever stops what it started."""
    started = time.perf_counter()
    with process_pair(args=["--host", "127.0.0.1"]) as pair:
        log(f"  two namespaces up in {time.perf_counter() - started:.1f} s")
        yield pair


def held(pair: Pair, queue: str) -> tuple[int, int]:
    """Messages each namespace holds in ``queue`` (from its control endpoint)."""
    primary, secondary = (counts.get(queue, 0) for counts in pair.counts().values())
    return primary, secondary


def expect_on_each(pair: Pair, queue: str, count: int) -> None:
    """Each namespace holds ``count`` messages in ``queue``: a copy on both, say."""
    if held(pair, queue) != (count, count):
        raise RuntimeError(f"{queue}: the namespaces hold {held(pair, queue)} messages, expected {count} on each")


def expect_in_all(pair: Pair, queue: str, count: int) -> None:
    """Every message sent arrived once: the two namespaces hold ``count`` between them."""
    if sum(held(pair, queue)) != count:
        raise RuntimeError(f"{queue}: the namespaces hold {held(pair, queue)} messages, expected {count} in all")


# -- timing -------------------------------------------------------------------------------


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99, in the unit given, to three decimals."""
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return round(cuts[49], 3), round(cuts[98], 3)


def rate(count: int, seconds: float) -> float:
    return count / seconds


def queue_name(purpose: str) -> str:
    """A fresh queue per scenario, so no run reads what another left behind."""
    return f"bench-{purpose}-{uuid.uuid4().hex[:8]}"


def messages(count: int) -> list[ServiceBusMessage]:
    """``count`` new messages with the benchmark body."""
    return [ServiceBusMessage(BODY) for _ in range(count)]


def time_single_sends(send: Callable[[ServiceBusMessage], object], count: int) -> tuple[float, list[float]]:
    """``count`` sends of one new message each: seconds in all, and each call's latency in ms."""
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        message = ServiceBusMessage(BODY)
        before = time.perf_counter()
        send(message)
        latencies.append((time.perf_counter() - before) * 1000)
    return time.perf_counter() - started, latencies


async def atime_single_sends(send: Callable[[ServiceBusMessage], Awaitable[object]],
                             count: int) -> tuple[float, list[float]]:
    """As ``time_single_sends``, awaiting each send."""
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        message = ServiceBusMessage(BODY)
        before = time.perf_counter()
        await send(message)
        latencies.append((time.perf_counter() - before) * 1000)
    return time.perf_counter() - started, latencies


class Stall:
    """A deadline on silence rather than on the whole: ``check`` raises once ``state``
    has not changed for STALL seconds."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._state: Any = None
        self._since = time.perf_counter()

    def check(self, state: Any) -> None:
        """Raises:
        RuntimeError: ``state`` is what it was STALL seconds ago."""
        now = time.perf_counter()
        if state != self._state:
            self._state, self._since = state, now
        elif now - self._since > STALL:
            raise RuntimeError(f"{self.what}: stuck at {state} for {STALL:.0f} s")


# -- closing in the background ---------------------------------------------------------------
#
# Opening an SDK handler costs ~0.45 s (it polls every 50 ms between handshake steps) and
# closing one ~0.5 s of waiting (the sync one joins a keep-alive thread that sleeps in 1 s
# steps), so handlers finish closing in the background while the next scenario runs, and
# the round waits for them at its end. Only the loops are timed.


def close_later(closing: list[threading.Thread], *objects: Any, together: Sequence[Any] = ()) -> None:
    """Close ``objects`` in order on a thread, added to ``closing``; errors are ignored.

    ``together``: handlers closed first, all at once (a thread each), before ``objects``
    (their client, say): many handlers closed one after another would take seconds each."""

    def close_one(obj: Any) -> None:
        with contextlib.suppress(Exception):
            obj.close()

    def close_all() -> None:
        threads = [threading.Thread(target=close_one, args=(obj,), daemon=True) for obj in together]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for obj in objects:
            close_one(obj)

    thread = threading.Thread(target=close_all, name="close-handlers", daemon=True)
    thread.start()
    closing.append(thread)


def aclose_later(closing: list[asyncio.Task[None]], *objects: Any, together: Sequence[Any] = ()) -> None:
    """As ``close_later``, on a task of the running loop."""

    async def close_one(obj: Any) -> None:
        with contextlib.suppress(Exception):
            await obj.close()

    async def close_all() -> None:
        await asyncio.gather(*(close_one(obj) for obj in together))
        for obj in objects:
            await close_one(obj)

    closing.append(asyncio.create_task(close_all()))


def join_closing(closing: list[threading.Thread]) -> None:
    """Wait for ``close_later``'s threads; RuntimeError if one is still closing after 30 s."""
    for thread in closing:
        thread.join(timeout=30)
    if any(thread.is_alive() for thread in closing):
        raise RuntimeError("a handler did not close within 30 s")
    closing.clear()


# -- the row ---------------------------------------------------------------------------------


@dataclass
class Metric:
    """One measurement taken on geobus and on plain azure-servicebus; ``ratio`` is geobus / plain.

    ``plain`` is None where the plain side has no figure: none exists (``note`` says
    why), or ``plain_source`` is ``cut-off`` (still running when the benchmark gave up
    on it; ``extra["ratio_below"]`` bounds the ratio)."""

    name: str
    unit: str
    geobus: float
    plain: float | None
    better: str  # "higher" or "lower"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    plain_source: str | None = None  # None: "measured" when there is a plain figure

    @property
    def ratio(self) -> float | None:
        return self.geobus / self.plain if self.plain else None

    def as_json(self) -> dict[str, Any]:
        """The row's fields and its ratio, to four significant figures."""
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else float(f"{self.ratio:.4g}")
        data["plain_source"] = self.plain_source or ("measured" if self.plain is not None else None)
        return data


# -- the machine ----------------------------------------------------------------------------


def machine(more: dict[str, Any]) -> dict[str, Any]:
    """Cores, Python and geobus, then ``more`` (package versions and the like) in its order."""
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "geobus": __version__,
        **more,
    }


# -- the command line -----------------------------------------------------------------------


def parse_args(doc: str, argv: list[str] | None, *, quick_help: str, rounds_help: str | None,
               sizes: tuple[Any, Any] | None = None,
               more: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """``--quick``, the script's own options (added by ``more``), ``--rounds``, ``--json``.

    ``args.rounds`` comes back filled in (3, or 1 with ``--quick``) and at least 1; without
    ``rounds_help`` there is no ``--rounds`` (the script measures once) and it is 1;
    ``args.sizes`` is the first of ``sizes`` (quick, full) with ``--quick``, else the second;
    ``args.started`` is when the run began (``report`` takes its time from it)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if more is not None:
        more(parser)
    if rounds_help is not None:
        parser.add_argument("--rounds", type=int, default=None, help=f"{rounds_help} (default 3, 1 with --quick)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if rounds_help is None:
        args.rounds = 1
    elif args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if sizes is not None:
        args.sizes = sizes[0] if args.quick else sizes[1]
    args.started = time.perf_counter()
    return args


def report(
    result: dict[str, Any], rows: Sequence[Metric], args: argparse.Namespace, *, render: Callable[[dict[str, Any]], str]
) -> int:
    """How a comparison benchmark ends: a measurement that is not positive and finite is a
    broken run, not a result (RuntimeError); else ``result`` gets ``quick``, ``rounds``,
    ``metrics`` and ``elapsed_s`` and is printed as JSON (``--json``) or as ``render``'s
    table. Returns the exit status."""
    bad = [row.name for row in rows if not math.isfinite(row.geobus) or row.geobus <= 0]
    if bad:
        raise RuntimeError(f"not a positive finite measurement: {bad}")
    result = {"quick": args.quick, "rounds": args.rounds, **result, "metrics": [row.as_json() for row in rows],
              "elapsed_s": round(time.perf_counter() - args.started, 1)}
    if args.json:
        OUT.json(result)
    else:
        OUT.line(render(result))
    return 0


def log(line: str) -> None:
    """Progress, on stderr, so that stdout holds only the table or the JSON."""
    OUT.note(line)


def run(main: Callable[[], int], *, interrupted: str) -> NoReturn:
    """Exits with ``main()``'s status, or 130 after printing ``interrupted`` on Ctrl-C or SIGTERM.

    Each benchmark's ``main`` runs under ``sigterm_as_interrupt``, so every server it
    started is stopped on the way out."""
    try:
        with sigterm_as_interrupt():
            status = main()
    except KeyboardInterrupt:
        OUT.error(interrupted)
        sys.exit(INTERRUPTED)
    sys.exit(status)

