"""``geobus bench``: run the benchmarks and print one table of ratios against plain azure-servicebus.

Each benchmark (``geobus._tools.bench.<name>``; in a checkout also ``benchmarks/<name>.py``)
runs in its own process with ``--json``, as it would alone; this module only
runs them one after another and reads their JSON. In every row both figures
come from the same run on the same machine, so ``ratio`` (geobus / plain) is
what to compare across machines, not the figures themselves.

It imports nothing heavy: each benchmark runs in its own process.
The benchmarks need the ``local`` extra (python-qpid-proton).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..._cli.output import FAILED, INTERRUPTED, OK, Out
from ..._cli.signals import sigterm_as_interrupt
from ..._extras import require_local_extra
from .table import cell, ratio_cell

# In the order they run: the plain SDK's own speed against a local namespace first, the
# baseline every later row's plain side runs on.
BENCHMARKS = ("local_namespace", "latency", "replication", "outbox", "seenset", "fleet", "sessions")
HEADLINE = ("out-of-process", "memory")  # local_namespace's rows matching the others' servers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="smoke runs: fewer messages, one round each")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=BENCHMARKS,
        metavar="NAME",
        help=f"run only these benchmarks (of {', '.join(BENCHMARKS)})",
    )


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmarks; print the table (or JSON). Exit 0, 1 (a benchmark failed),
    2 (the local extra is missing) or 130 (interrupted; every server was stopped)."""
    require_local_extra("this command")  # MissingExtraError: exit status 2 (geobus._cli)
    out = Out("bench")
    names = [name for name in BENCHMARKS if name in (args.only or BENCHMARKS)]
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    try:
        with sigterm_as_interrupt():
            for name in names:
                out.note(f"geobus bench: {name}{' --quick' if args.quick else ''}")
                outcome, result = run_benchmark(benchmark_command(name, quick=args.quick))
                runs.append({"name": name, **outcome})
                if result is not None:
                    results[name] = result
    except KeyboardInterrupt:
        out.error("interrupted; every server started was stopped")
        return INTERRUPTED
    report = {
        "machine": _machine(),
        "quick": args.quick,
        "benchmarks": runs,
        "rows": [row for name in names if name in results for row in table_rows(name, results[name])],
        "results": results,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        out.json(report)
    else:
        out.line(render(report))
    failed = [r for r in runs if r["status"] != "ok"]
    for failure in failed:
        out.error(f"{failure['name']} failed: {failure['status']}")
    return FAILED if failed else OK


def _machine() -> dict[str, Any]:
    from .common import machine  # imports the local namespace, hence proton: only now

    return machine({name: _version(name) for name in ("azure-servicebus", "python-qpid-proton", "geobus")})


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def benchmark_command(name: str, *, quick: bool) -> list[str]:
    """The command that runs one benchmark with ``--json``, from wherever geobus is installed."""
    return [sys.executable, "-m", f"geobus._tools.bench.{name}", "--json", *(["--quick"] if quick else [])]


def run_benchmark(command: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run ``command`` (its progress goes straight to stderr); its outcome and its JSON.

    On Ctrl-C or SIGTERM (raised here as KeyboardInterrupt) the child gets SIGTERM, so it
    stops the servers it started, and the interrupt is raised again once it is gone."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = child.communicate()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    outcome: dict[str, Any] = {"exit_status": child.returncode, "elapsed_s": round(time.perf_counter() - started, 1)}
    if child.returncode != 0:
        return {"status": f"exit status {child.returncode} (its error is above)", **outcome}, None
    try:
        result = json.loads(out)
    except ValueError:
        return {"status": "its output is not JSON", **outcome}, None
    if not isinstance(result, dict):
        return {"status": "its output is not a JSON object", **outcome}, None
    return {"status": "ok", **outcome}, result


# -- one table -----------------------------------------------------------------------------


def _row(benchmark: str, scenario: str, unit: str, geobus: float | None, plain: float | None,
         better: str, plain_source: str | None, note: str = "") -> dict[str, Any]:
    ratio = geobus / plain if geobus is not None and plain else None
    return {
        "benchmark": benchmark,
        "scenario": scenario,
        "unit": unit,
        "geobus": geobus,
        "plain": plain,
        "ratio": None if ratio is None else float(f"{ratio:.4g}"),
        "better": better,
        "plain_source": plain_source,
        "note": note,
    }


def table_rows(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """One benchmark's JSON as table rows; ``ratio`` is recomputed from the two figures.

    Raises:
        KeyError: the JSON does not have the benchmark's shape.
    """
    if name == "local_namespace":
        placement, store = HEADLINE
        scenarios = list(result["sizes"])  # in the benchmark's own order
        headline = sorted(
            (r for r in result["rows"] if (r["placement"], r["store"]) == HEADLINE),
            key=lambda r: (r["api"] != "sync", scenarios.index(r["scenario"])),
        )
        return [
            _row(name, f"{r['api']} {r['scenario']}", "msgs/s", None, r["msgs_per_s"], "higher", "measured",
                 f"plain SDK alone, {placement} {store} server")
            for r in headline
        ]
    return [
        _row(name, m["name"], m["unit"], m["geobus"], m["plain"], m["better"], m["plain_source"], m["note"])
        for m in result["metrics"]
    ]


def render(report: dict[str, Any]) -> str:
    """The table, with the machine first and what the columns mean after."""
    m = report["machine"]
    ran = ", ".join(f"{r['name']} {r['elapsed_s']:.0f} s" + ("" if r["status"] == "ok" else " FAILED")
                    for r in report["benchmarks"])
    lines = [
        f"machine: {m['platform']}, {m['implementation']} {m['python']}, {m['cores']} cores "
        f"({m['usable_cores']} usable); azure-servicebus {m['azure-servicebus']}, "
        f"python-qpid-proton {m['python-qpid-proton']}, geobus {m['geobus']}",
        f"geobus bench{' --quick' if report['quick'] else ''}: {ran}; took {report['elapsed_s']:.0f} s",
        "ratio = geobus / plain azure-servicebus, both measured in this run against local namespaces",
        "  (msgs/s, copies/s, checks/s, writes/s, ids/s: higher is better; ms, us, s, bytes: lower is better)",
        "",
        f"{'benchmark':<16}{'scenario':<52}{'unit':<9}{'geobus':>10}{'plain':>12}{'ratio':>8}   note",
    ]
    for row in report["rows"]:
        lines.append(f"{row['benchmark']:<16}{row['scenario']:<52}{row['unit']:<9}"
                     f"{cell(row['geobus'], row['unit']):>10}{cell(row['plain'], row['unit']):>12}"
                     f"{ratio_cell(row['ratio']):>8}   {row['note']}")
    ran_names = {r["name"] for r in report["benchmarks"]}
    lines.append("")
    if "local_namespace" in ran_names:
        lines += ["local_namespace: plain azure-servicebus alone against one `geobus local` process (memory",
                  "  store), the server every other row runs on: no geobus side, no ratio."]
    if "latency" in ran_names:
        lines += ["latency: geobus's ReplicatedSender / DedupReceiver against plain ServiceBusSender /",
                  "  ServiceBusReceiver, directly (loopback) and through a proxy process before each namespace",
                  "  (4ms RTT); each throughput row has a CPU row: this process's CPU per message (us)."]
    if ran_names & {"replication", "outbox"}:
        lines += ["replication, outbox: geobus's failover, seen-set and outbox against the plain SDK by hand,",
                  "  a Python set, and a plain ServiceBusSender, on the same local namespaces, in the same run."]
    if "seenset" in ran_names:
        lines += ["seenset: each seen-set store (one awaited call at a time) against the in-memory",
                  "  DuplicateTracker a single receiver uses: the plain column is that tracker."]
    if "fleet" in ran_names:
        lines += ["fleet: three worker processes draining both namespaces with a shared seen-set,",
                  "  against the same fleet on in-memory seen-sets (which lets duplicates through)."]
    if "sessions" in ran_names:
        lines += ["sessions: geobus's session receiver (a session at a time, over both namespaces) against",
                  "  two plain session receivers, one per namespace, on the same sessions and copies."]
    if any(row["plain_source"] == "cut-off" for row in report["rows"]):
        lines.append("cut-off: the plain SDK was still waiting when the benchmark gave up on it (no bound).")
    lines += [f"FAILED {r['name']}: {r['status']}" for r in report["benchmarks"] if r["status"] != "ok"]
    return "\n".join(lines)
