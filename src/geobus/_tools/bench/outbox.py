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
for the context row. The measurements are in ``outbox_sends``; the rounds, the
rows and the table here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from . import common as bench
from .outbox_sends import (
    BATCH,
    COOLDOWN,
    FULL,
    QUICK,
    WARM_UP,
    GeobusTiming,
    PlainTiming,
    Sizes,
    async_geobus,
    async_plain,
    outbox_appends,
    sync_geobus,
    sync_plain,
)
from .table import report_text

APIS = ("sync", "async")
Metric = bench.Metric  # ``plain``: the plain SDK's figure, None where it has no counterpart


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Round:
    plain: dict[str, PlainTiming]  # api -> timing
    geobus: dict[str, GeobusTiming]
    append_s: float


def run_api(ns: bench.Pair, sizes: Sizes, api: str, outbox: Path,
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


def run_round(ns: bench.Pair, sizes: Sizes, scratch: Path, round_no: int) -> Round:
    started = time.perf_counter()
    plain, ours = {}, {}
    even = round_no % 2 == 0
    for api in APIS if even else APIS[::-1]:
        plain[api], ours[api] = run_api(ns, sizes, api, scratch / f"r{round_no}-{api}.sqlite", even)
    append_s = outbox_appends(sizes.single, scratch / f"r{round_no}-append.sqlite")
    bench.log(f"  round {round_no + 1}: {time.perf_counter() - started:.1f} s")
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
    })


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    return report_text(result, about=[
        f"sqlite {m['sqlite']}, outbox on {m['outbox_file_system']}; azure-servicebus {m['azure-servicebus']}",
        f"two `geobus local` processes; {result['body_bytes']}-byte bodies; messages: "
        + ", ".join(f"{k} {v:,}" for k, v in result["sizes"].items()),
    ], ratio="geobus / plain (msgs/s: higher is better; ms, s: lower is better)", notes=[
        "geobus: passive ReplicatedSender, outbox synchronous=FULL, both namespaces refusing connections",
        "  while buffering; plain: one ServiceBusSender on a healthy namespace, same run.",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = bench.parse_args(__doc__ or "", argv, quick_help="a smoke run: fewer messages, one round",
                               sizes=(QUICK, FULL), rounds_help="rounds")
    sizes: Sizes = args.sizes
    with tempfile.TemporaryDirectory(prefix="geobus-bench-outbox-") as scratch, bench.namespaces() as ns:
        done = [run_round(ns, sizes, Path(scratch), n) for n in range(args.rounds)]
    rows = metrics(done, sizes)
    result = {
        "machine": _machine(),
        "body_bytes": len(bench.BODY),
        "batch_size": BATCH,
        "sizes": {"warm-up": WARM_UP, "single": sizes.single, "lists": sizes.lists, "drained": sizes.drained},
    }
    return bench.report(result, rows, args, render=render)


def cli() -> NoReturn:
    """Run as a script (``benchmarks/outbox.py``, ``python -m geobus._tools.bench.outbox``)."""
    bench.run(main, interrupted="interrupted; both servers started were stopped")


if __name__ == "__main__":
    cli()
