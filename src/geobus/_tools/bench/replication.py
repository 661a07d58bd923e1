"""What failing over costs, and what remembering ids costs: geobus against plain azure-servicebus.

    .venv/bin/python benchmarks/replication.py [--quick] [--json]
    python -m geobus._tools.bench.replication ...     # the same, from an installed geobus
    geobus bench --only replication [--quick]   # its rows in geobus bench's table of ratios

Two local namespaces, each ``geobus local`` in its own process (as two regions
would be), serve both sides of every comparison in the same run:

1. failover: a passive sender whose primary is refused, then black-holed:
   seconds from the fault to the first send stored on the secondary, against
   an application doing the same by hand with the SDK's default retry settings
   (the black hole has no bound there, so it is cut off: 10 s with ``--quick``,
   20 s without);
2. the seen-set (``DuplicateTracker``): bytes per remembered id (tracemalloc)
   and checks per second, against a plain Python ``set`` of the same ids.

Each is measured once. ``--quick`` is a smoke run: 100,000 ids, a 10 s cut-off.
Ratios are geobus / plain, from one run: the machine is small and shared, so
absolute figures drift from run to run. Every plain figure is measured here.
What sends and receives cost, message by message, at loopback and at a 4 ms
round trip, is the ``latency`` benchmark's.

The measurements live in one module each: failover in ``replication_failover``,
the seen-set in ``replication_seen_set``; what they share (sizes, clients) in
``replication_shared``; this module runs them and prints the table.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from importlib.metadata import version
from typing import Any, NoReturn

import geobus

from . import common as bench
from .replication_failover import run_failover
from .replication_seen_set import seen_set
from .replication_shared import FULL, QUICK, Sizes
from .table import report_text


def render(result: dict[str, Any]) -> str:
    m, sizes = result["machine"], result["sizes"]
    return report_text(result, machine=f"azure-servicebus {m['azure-servicebus']}", about=[
        f"two `geobus local` processes (one per namespace); {result['body_bytes']}-byte bodies; "
        f"seen-set: {sizes['seen_ids']:,} ids",
    ], ratio="geobus / plain (checks/s, ids/s: higher is better; s, bytes: lower is better)", name_width=52, notes=[
        "failover: fault injected on the primary of a passive sender whose standby link is open; plain",
        "  = catch the error, send to the secondary, with the SDK's default retry settings.",
        f"  geobus uses its default deadlines (attempt {result['attempt_deadline_s']:g} s), which is what bounds",
        "  the black hole; the plain side has no bound there and is cut off (ratio: an upper bound).",
        "seen-set: DuplicateTracker (TTLCache, default clock) against a plain Python set of the same ids.",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = bench.parse_args(__doc__ or "", argv, sizes=(QUICK, FULL), rounds_help=None,
                            quick_help="a smoke run: 100,000 ids, a 10 s cut-off on the black hole")
    sizes: Sizes = args.sizes
    with bench.namespaces() as ns:
        metrics = run_failover(ns, sizes, bench.log)
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
