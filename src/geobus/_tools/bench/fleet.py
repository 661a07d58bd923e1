"""The fleet benchmark: three worker processes sharing a seen-set, against the same fleet in memory.

The queues of two ``geobus local`` processes are filled first (active mode: every
message on both), then three worker processes (``geobus drill``'s agents, async
API, a 2 ms handler) start together and drain them; throughput is messages
completed per second, from the first delivery to the last completion. Each
shared store (``sqlite``, and ``redis`` when a ``redis-server`` is on PATH) is
compared with the same fleet on the in-memory seen-set (ratio = shared / memory),
which is faster but lets duplicates through: the ``duplicates`` column says how
many reached a handler. One shared 2-core machine: compare ratios, not figures.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from . import common as bench
from .seenset import redis_server
from .table import report_text

QUICK, FULL = 600, 3000  # messages
WORKERS = 3
HANDLE_TIME = 0.002


Metric = bench.Metric  # ``plain``: the same fleet on in-memory seen-sets


def fleet_run(store_env: dict[str, str], messages: int, workdir: Path) -> tuple[float, int, list[str]]:
    """Fills both queues, then drains them with the fleet; (completed/s, duplicates, violations)."""
    from ..drill import execute
    from ..drill.harness import Run, Settings
    from ..drill.scenarios import Scenario

    def start_fleet_when_filled(run: Run) -> None:
        run.producers_done(timeout=600)
        for _ in range(WORKERS):
            run.start_worker()

    runs: list[Run] = []
    scenario = Scenario("fleet-bench", "a filled queue, then the fleet", start_fleet_when_filled,
                        env=store_env, handle_time=HANDLE_TIME, workers=0)
    row = execute(scenario, "async", "active", Settings(messages=messages, rate=100_000, seed="0", workdir=workdir),
                  progress=lambda run: runs.append(run) if not runs else None)
    events = runs[0].log.events
    first = min(e["t"] for e in events if e["e"] == "deliver")
    last = max(e["t"] for e in events if e["e"] == "complete")
    completed = len({e["id"] for e in events if e["e"] == "complete"})
    return completed / (last - first), row.duplicates_delivered, row.violations


def main(argv: list[str] | None = None) -> int:
    args = bench.parse_args(__doc__ or "", argv, quick_help=f"{QUICK} messages instead of {FULL}",
                               sizes=(QUICK, FULL), rounds_help="rounds per store")
    messages: int = args.sizes
    skipped: dict[str, str] = {}
    best: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="geobus-bench-fleet-") as scratch:
        with contextlib.ExitStack() as stack:
            stores = {"memory": {}, "sqlite": {"GEOBUS_DEDUP_STORE": "sqlite:{dir}/seen.db"}}
            redis_url = stack.enter_context(redis_server())
            if redis_url:
                # Every round sends the same message ids: each has keys of its own.
                stores["redis"] = {"GEOBUS_DEDUP_STORE": redis_url + "?prefix=geobus:bench:{round}:"}
            else:
                skipped["redis"] = "redis-server not found on PATH (apt-get install redis-server)"
                bench.log(f"  skipping redis: {skipped['redis']}")
            for round_no in range(args.rounds):
                for name, env in stores.items():
                    env = {key: value.replace("{round}", str(round_no)) for key, value in env.items()}
                    rate, duplicates, violations = fleet_run(env, messages, Path(scratch) / f"{name}-{round_no}")
                    if name != "memory" and violations:
                        raise RuntimeError(f"the {name} fleet broke a promise: {violations}")
                    bench.log(f"  round {round_no + 1}: {name} {rate:,.0f} msgs/s, {duplicates} duplicate(s)")
                    if name not in best or rate > best[name][0]:
                        best[name] = (rate, duplicates)
    memory_rate, memory_duplicates = best["memory"]
    metrics = [
        Metric(f"{WORKERS} workers, {name} seen-set, completed", "msgs/s", rate, memory_rate, "higher",
               note=f"duplicates to handlers: {duplicates} (memory: {memory_duplicates})")
        for name, (rate, duplicates) in best.items()
        if name != "memory"
    ]
    result = {
        "machine": bench.machine({}),
        "sizes": {"messages": messages, "workers": WORKERS, "handle_time_s": HANDLE_TIME},
        "memory": {"msgs_per_s": memory_rate, "duplicates": memory_duplicates},
        "skipped": skipped,
    }
    return bench.report(result, metrics, args, render=_render)


def _render(result: dict[str, Any]) -> str:
    return report_text(result, about=[
        f"{result['sizes']['messages']:,} messages on both namespaces, {WORKERS} worker processes",
    ], ratio="shared seen-set / in-memory seen-set (msgs/s: higher is better)", labels=("shared", "memory"))


def cli() -> NoReturn:
    """Run as a script (``benchmarks/fleet.py``, ``python -m geobus._tools.bench.fleet``)."""
    bench.run(main, interrupted="interrupted; the processes it started were stopped")


if __name__ == "__main__":
    cli()
