"""``geobus drill``: rehearse outages against local namespaces and count the damage.

Each run starts two ``geobus local`` processes (SQLite stores), a producer and a
worker process (``ReplicatedSender`` / ``DedupReceiver``, sync or async, passive
or active), breaks something mid-stream, mends it, and prints one row:
attempted, acknowledged, buffered, lost, unexpected, duplicates delivered to the
handler, duplicates absorbed, slowest send, failover time. Exit status 1 if any
row broke a promise of its mode (see ``_report`` for the definitions).
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..._cli.common import number
from ..._cli.output import FAILED, INTERRUPTED, OK, Out
from ..._cli.signals import sigterm_as_interrupt
from ..._redact import redact
from ..._version import __version__
from .harness import Run, Settings, agent_tail
from .report import Row, header, line, tally
from .scenarios import SCENARIOS, Scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"scenario to run (repeatable; default all): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--api", choices=["sync", "async", "both"], default="both")
    parser.add_argument("--mode", choices=["passive", "active", "both"], default="both")
    parser.add_argument(
        "--messages", type=number(int, "a whole number", at_least=40), default=200,
        help="messages per run (default 200, at least 40)",
    )
    parser.add_argument(
        "--rate", type=number(float, "a number"), default=100.0, help="producer's messages per second (default 100)"
    )
    parser.add_argument(
        "--fault-seconds", type=number(float, "a number"), default=1.5, help="how long each fault lasts (default 1.5)"
    )
    parser.add_argument("--seed", help="seed for message sizes and ids (default: random, printed)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--keep", type=Path, help="keep each run's stores, events and logs under this directory"
    )


def run(args: argparse.Namespace) -> int:
    """Every run asked for, one row each; 0 if every run kept its promises, 1 if not, 130 if
    interrupted (every process a run started is stopped on the way out)."""
    out = Out("drill", text=sys.stderr if args.json else sys.stdout)  # stdout: the JSON, if asked
    if args.list:
        for scenario in SCENARIOS.values():
            out.line(f"{scenario.name:<16} {scenario.summary}")
        return OK
    seed = args.seed if args.seed is not None else str(random.randrange(1_000_000))
    names = args.scenario or list(SCENARIOS)
    apis = ["sync", "async"] if args.api == "both" else [args.api]
    modes = ["passive", "active"] if args.mode == "both" else [args.mode]
    out.line(
        f"geobus drill {__version__}: {len(names) * len(apis) * len(modes)} run(s), "
        f"{args.messages} messages each, seed {seed} ({platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()})"
    )
    out.line(header())
    rows = []
    with tempfile.TemporaryDirectory(prefix="geobus-drill-") as scratch, out.logging():
        settings = Settings(args.messages, args.rate, args.fault_seconds, seed, args.keep or Path(scratch))
        try:
            with sigterm_as_interrupt():  # every process a run started is stopped on the way out
                for name in names:
                    for api in apis:
                        for mode in modes:
                            rows.append(execute(SCENARIOS[name], api, mode, settings, _progress(out)))
                            out.line(line(rows[-1]))
        except KeyboardInterrupt:
            out.error(f"interrupted after {len(rows)} run(s); its processes are stopped")
            return INTERRUPTED
    failed = [row for row in rows if not row.ok]
    for row in failed:
        out.line(f"\n{row.scenario} {row.api} {row.mode}: " + "; ".join(row.violations))
        for entry in row.timeline:
            out.line(f"    {entry}")
    if args.json:
        out.json({"seed": seed, "rows": [row.as_json() for row in rows]})
    verdict = "FAILED" if failed else "OK"
    out.line(f"\n{verdict}: {len(rows) - len(failed)} of {len(rows)} run(s) kept every promise")
    return FAILED if failed else OK


def execute(
    scenario: Scenario,
    api: str,
    mode: str,
    settings: Settings,
    progress: Callable[[Run], None] | None = None,
) -> Row:
    """One run of ``scenario``: start everything, break and mend, wait, count, stop."""
    drill = Run(
        scenario.name,
        api,
        mode,
        settings,
        dict(scenario.env),
        scenario.handle_time,
        scenario.workers,
        lock_duration=scenario.lock_duration,
        max_delivery_count=scenario.max_delivery_count,
        worker_args=scenario.worker_args,
        producer_args=scenario.producer_args,
        requires_session=scenario.requires_session,
        progress=progress,
    )
    problems = []
    started = time.monotonic()
    try:
        drill.start()
        drill.mark("started")
        scenario.act(drill)
        if not drill.producers_done():
            problems.append("the producer did not finish")
        if not drill.settled():
            depths = drill.queue_depths()
            problems.append(
                f"not settled in time (queued: primary {depths[0]}, secondary {depths[1]})"
            )
    except Exception as exc:  # a run that could not be carried out is a failed row
        drill.mark(f"drill error: {type(exc).__name__}: {redact(str(exc))}")
        problems.append(f"the drill itself failed: {type(exc).__name__}")
    finally:
        drill.stop()
        drill.log.poll()
    row = tally(drill, time.monotonic() - started)
    row.violations.extend(problems)
    if not row.ok:  # what the agents said on their way out, keys and signatures redacted
        for role in ("producer", "worker"):
            tail = agent_tail(drill, role)
            if tail:
                row.timeline.append(f"{role} stderr: {tail}")
    return row


def _progress(out: Out) -> Callable[[Run], None]:
    """The live line on a terminal: what the run has acknowledged and delivered so far."""

    def show(run: Run) -> None:
        out.progress(
            f"{run.scenario} {run.api} {run.mode}",
            lambda: {"acknowledged": run.count("ack"), "delivered": run.count("deliver"),
                     "completed": run.count("complete")},
        )  # fmt: skip

    return show
