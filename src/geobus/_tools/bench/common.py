"""What the benchmarks share: servers, timing, the machine, the command line.

Not a benchmark itself. The benchmarks live in the package, so that ``geobus
bench`` runs them from an installed geobus; ``benchmarks/*.py`` in a checkout
are thin scripts that call them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

from azure.servicebus import ServiceBusMessage

from geobus.local import LocalNamespaceProcess, development_key

from ..._cli.signals import sigterm_as_interrupt as sigterm_as_interrupt

BODY = b"x" * 128


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


@dataclass
class Comparison:
    """One measurement taken on geobus and on plain azure-servicebus; ``ratio`` is geobus / plain.

    ``plain`` is None where the plain side has no figure; scripts subclass this to
    add their own columns (after these, in ``asdict`` order) and ``as_json``."""

    name: str
    unit: str
    geobus: float
    plain: float | None
    better: str  # "higher" or "lower"

    @property
    def ratio(self) -> float | None:
        return self.geobus / self.plain if self.plain else None

    def as_json(self) -> dict[str, Any]:
        """The row's fields and its ratio, to four decimals."""
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        return data


@dataclass
class Metric(Comparison):
    """A table row with a note."""

    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- servers ------------------------------------------------------------------------------


class Namespaces:
    """Two local namespaces, each in its own child process; only ever stops what it started."""

    def __init__(self) -> None:
        self._processes = [
            LocalNamespaceProcess(args=["--host", "127.0.0.1"], key=development_key(n)) for n in (1, 2)
        ]

    def __enter__(self) -> Namespaces:
        try:
            with ThreadPoolExecutor(2) as pool:
                for future in [pool.submit(p.start) for p in self._processes]:
                    future.result()
        except BaseException:  # one failed, or Ctrl-C: the other may be listening already
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in self._processes:
            process.stop()  # SIGTERM to the pid it started, SIGKILL after 15 s

    @property
    def primary(self) -> str:
        return self._processes[0].connection_string

    @property
    def secondary(self) -> str:
        return self._processes[1].connection_string

    @property
    def primary_control(self) -> Any:
        return self._processes[0].control

    def refuse(self) -> None:
        for process in self._processes:
            process.control.refuse()  # returns once the server applied it

    def heal(self) -> None:
        for process in self._processes:
            process.control.heal()

    def counts(self, queue: str) -> tuple[int, int]:
        return tuple(p.control.status()["counts"].get(queue, 0) for p in self._processes)

    def expect_on_each(self, queue: str, held: int) -> None:
        """Each namespace holds ``held`` messages in ``queue``: a copy on both, say."""
        counts = self.counts(queue)
        if counts != (held, held):
            raise RuntimeError(f"{queue}: the namespaces hold {counts} messages, expected {held} on each")

    def expect_in_all(self, queue: str, held: int) -> None:
        """Every message sent arrived once: the two namespaces hold ``held`` between them."""
        counts = list(self.counts(queue))
        if sum(counts) != held:
            raise RuntimeError(f"{queue}: the namespaces hold {counts} messages, expected {held} in all")


# -- the machine ----------------------------------------------------------------------------


def machine(more: dict[str, Any]) -> dict[str, Any]:
    """Cores and Python, then ``more`` (package versions and the like) in its order."""
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        **more,
    }


def machine_line(m: dict[str, Any], rest: str) -> str:
    """The table's first line: ``machine()``'s cores and Python, then ``rest``."""
    return f"machine: {m['cores']} cores ({m['usable_cores']} usable), {m['implementation']} {m['python']}, {rest}"


# -- the command line -----------------------------------------------------------------------


def parse_args(doc: str, argv: list[str] | None, *, quick_help: str, rounds_help: str,
               more: Callable[[argparse.ArgumentParser], None] | None = None,
               ) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """``--quick``, the script's own options (added by ``more``), ``--rounds``, ``--json``.

    ``args.rounds`` comes back filled in (3, or 1 with ``--quick``) but unchecked,
    so each script words its own ``parser.error``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if more is not None:
        more(parser)
    parser.add_argument("--rounds", type=int, default=None, help=f"{rounds_help} (default 3, 1 with --quick)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    return parser, args


def report(
    result: dict[str, Any],
    rows: Sequence[Comparison],
    started: float,
    *,
    as_json: bool,
    render: Callable[[dict[str, Any]], str],
) -> int:
    """How a comparison benchmark ends: a measurement that is not positive and finite is a
    broken run, not a result (RuntimeError); else ``result`` gets ``metrics`` and
    ``elapsed_s`` and is printed as JSON or as ``render``'s table. Returns the exit status."""
    bad = [row.name for row in rows if not math.isfinite(row.geobus) or row.geobus <= 0]
    if bad:
        raise RuntimeError(f"not a positive finite measurement: {bad}")
    result["metrics"] = [row.as_json() for row in rows]
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2) if as_json else render(result))
    return 0


def log(line: str) -> None:
    """Progress, on stderr, so that stdout holds only the table or the JSON."""
    print(line, file=sys.stderr, flush=True)


def run(main: Callable[[], int], *, interrupted: str) -> NoReturn:
    """Exits with ``main()``'s status, or 130 after printing ``interrupted`` on Ctrl-C or SIGTERM."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
