"""What a duplicate check costs in each seen-set store, against the in-memory DuplicateTracker.

    .venv/bin/python benchmarks/seenset.py [--quick] [--rounds N] [--json] [--redis URL]
    python -m geobus._tools.bench.seenset ...     # the same, from an installed geobus

Each store (``memory``; ``sqlite:`` a file in the system temp directory, WAL;
``redis://`` a ``redis-server`` started for the run on 127.0.0.1, or the
server ``--redis URL`` names) is driven from one asyncio loop, one awaited call
at a time, through the states a message's key goes through:

1. claim of a new key (a first copy arrives): checks/s, p50/p99 latency (µs);
2. claim of that key by another owner while it is in flight (its twin): TAKEN;
3. complete (the application settled it): writes/s, p50/p99;
4. claim of the completed key by another owner (a late twin): COMPLETED;
5. claims of new keys by 32 concurrent tasks (a receiver's prefetch): checks/s;
6. ``claim_many`` of new keys, 100 a call: checks/s;
7. ``complete_many`` of those keys, 100 a call: writes/s;
8. claims of new keys asked 100 at once through a receiver's ``SharedKeys``
   (which puts them to the store as one ``claim_many``), as concurrent
   completions are put today: checks/s.

The reference ("plain" column) is what one receiver paid per copy before
shared stores: the same step on the in-process ``DuplicateTracker``
(``arrived``/``completed``, no event loop, no I/O; steps 5 to 8 against its
claim new or complete). ratio = store / tracker, so
far below 1 by nature: it says what sharing the state across processes costs.
Without ``redis-server`` on PATH (and no ``--redis``) the Redis rows are left
out, and the output says so. Best round of each row; figures drift from run to
run on a small shared machine, so compare ratios, not figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

from geobus._config import DedupPolicy
from geobus._decisions.actions import ClaimKey
from geobus._decisions.dedup import Copy, DuplicateTracker, Key, Verdict, key_of
from geobus._engine.shared_keys import SharedKeys
from geobus._storage.seenset import BatchSeenSet, Claim, SeenSet, open_seen_set

from . import common as bench
from .table import report_text

CONCURRENCY = 32  # tasks claiming at once in step 5
BATCH = 100  # keys per call in steps 6 to 8: a received batch
LEASE = 60.0
TTL = 120.0  # short, so a run's keys on a --redis server of the user's own go away soon
STEPS = ("claim new", "claim in flight", "complete", "claim completed", f"claim new x{CONCURRENCY} tasks",
         f"claim_many x{BATCH}", f"complete_many x{BATCH}", f"SharedKeys x{BATCH} at once")


@dataclass(frozen=True)
class Sizes:
    keys: int  # keys per store per round, through every step


QUICK = Sizes(keys=2_000)
FULL = Sizes(keys=20_000)


@dataclass
class Step:
    """One step over every key: seconds in all, and each call's latency in µs (none when concurrent)."""

    seconds: float
    latencies_us: list[float] = field(default_factory=list)


Metric = bench.Metric  # ``plain``: the in-memory DuplicateTracker's figure for the same step


# -- the stores -------------------------------------------------------------------------------


async def _timed(call: Callable[[Key], Awaitable[object]], keys: list[Key], expect: object) -> Step:
    latencies = []
    started = time.perf_counter()
    for key in keys:
        before = time.perf_counter()
        answer = await call(key)
        latencies.append((time.perf_counter() - before) * 1e6)
        if answer is not expect:
            raise RuntimeError(f"{key}: {answer!r}, expected {expect!r}")
    return Step(time.perf_counter() - started, latencies)


async def _concurrent(store: SeenSet, keys: list[Key]) -> Step:
    queue = iter(keys)

    async def worker(n: int) -> None:
        for key in queue:  # shared: each key once, in whichever task is free
            if await store.claim(key, f"bench-task-{n}", LEASE) is not Claim.CLAIMED:
                raise RuntimeError(f"{key} was not claimed")

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
    return Step(time.perf_counter() - started)


async def _in_batches(call: Callable[[list[Key]], Awaitable[Sequence[object]]], keys: list[Key], expect: object) -> Step:
    started = time.perf_counter()
    for start in range(0, len(keys), BATCH):
        answers = await call(keys[start:start + BATCH])
        if any(answer is not expect for answer in answers):
            raise RuntimeError(f"{answers!r}, expected {expect!r} for each")
    return Step(time.perf_counter() - started)


async def _batch_steps(store: BatchSeenSet, keys: list[Key]) -> dict[str, Step]:
    """Steps 6 to 8: ``keys`` claimed and completed 100 a call; fresh keys claimed as a receiver asks."""

    async def complete_many(chunk: list[Key]) -> list[object]:
        await store.complete_many([(key, Claim.COMPLETED) for key in chunk], "bench-a", TTL)
        return [None] * len(chunk)

    shared = SharedKeys(store, DedupPolicy(lease=LEASE, max_age=TTL), owned=False)
    copy = Copy("primary", 1)

    async def receiver_batch(chunk: list[Key]) -> list[object]:
        return list(await asyncio.gather(*(shared.ask(ClaimKey(key, copy)) for key in chunk)))

    return {
        STEPS[5]: await _in_batches(lambda chunk: store.claim_many(chunk, "bench-a", LEASE), keys, Claim.CLAIMED),
        STEPS[6]: await _in_batches(complete_many, keys, None),
        STEPS[7]: await _in_batches(receiver_batch, new_keys(len(keys)), Claim.CLAIMED),
    }


def new_keys(count: int) -> list[Key]:
    """``count`` fresh keys, spelt as a receiver hands them to its tracker and its store."""
    return [key_of(uuid.uuid4().hex) for _ in range(count)]


async def store_steps(store: SeenSet, keys: list[Key]) -> dict[str, Step]:
    """The steps on ``store``, each over every key (fresh ones for steps 5 to 8)."""
    steps = {
        STEPS[0]: await _timed(lambda k: store.claim(k, "bench-a", LEASE), keys, Claim.CLAIMED),
        STEPS[1]: await _timed(lambda k: store.claim(k, "bench-b", LEASE), keys, Claim.TAKEN),
        STEPS[2]: await _timed(lambda k: store.complete(k, "bench-a", Claim.COMPLETED, TTL), keys, None),
        STEPS[3]: await _timed(lambda k: store.claim(k, "bench-b", LEASE), keys, Claim.COMPLETED),
    }
    steps[STEPS[4]] = await _concurrent(store, new_keys(len(keys)))
    if isinstance(store, BatchSeenSet):
        steps.update(await _batch_steps(store, new_keys(len(keys))))
    return steps


def tracker_steps(keys: list[Key]) -> dict[str, Step]:
    """The same steps on one receiver's DuplicateTracker: no loop, no I/O."""
    tracker = DuplicateTracker(max_entries=2 * len(keys), max_age=TTL)
    first, twin = Copy("primary", 1, locked_until=math.inf), Copy("secondary", 1)

    def timed(call: Callable[[Key], object], expect: object) -> Step:
        latencies = []
        started = time.perf_counter()
        for key in keys:
            before = time.perf_counter()
            answer = call(key)
            latencies.append((time.perf_counter() - before) * 1e6)
            if answer != expect:
                raise RuntimeError(f"{key}: {answer!r}, expected {expect!r}")
        return Step(time.perf_counter() - started, latencies)

    steps = {
        STEPS[0]: timed(lambda k: tracker.arrived(k, first), Verdict.DELIVER),
        STEPS[1]: timed(lambda k: tracker.arrived(k, twin), Verdict.HOLD),
        STEPS[2]: timed(lambda k: tracker.completed(k), [(twin, Verdict.COMPLETE)]),
        STEPS[3]: timed(lambda k: tracker.arrived(k, twin), Verdict.COMPLETE),
    }
    # One receiver's tracker has no concurrency or batches to speak of.
    steps[STEPS[4]] = steps[STEPS[5]] = steps[STEPS[7]] = steps[STEPS[0]]
    steps[STEPS[6]] = steps[STEPS[2]]
    return steps


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A ``redis-server`` on a free loopback port, nothing saved, for the run; None if not installed.

    Stops (by its pid) only the server it started."""
    from ...testing import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        yield None
        return
    with RedisServer() as server:
        yield server.url


# -- the run -----------------------------------------------------------------------------------


def run_round(urls: dict[str, str], sizes: Sizes, round_no: int) -> dict[str, dict[str, Step]]:
    """Every store, then the tracker; stores in a rotated order from round to round."""
    started = time.perf_counter()
    names = list(urls)
    names = names[round_no % len(names):] + names[:round_no % len(names)]
    out = {}
    for name in names:
        keys = new_keys(sizes.keys)
        url = urls[name]
        if name == "redis":
            url += ("&" if "?" in url else "?") + f"prefix=geobus:bench:{uuid.uuid4().hex[:8]}:"

        async def one(url: str = url, keys: list[Key] = keys) -> dict[str, Step]:
            store = open_seen_set(url, max_entries=4 * sizes.keys)
            gc.collect()  # a collection owed by the setup does not land in a store's steps
            try:
                return await store_steps(store, keys)
            finally:
                await store.close()

        out[name] = asyncio.run(one())
    out["tracker"] = tracker_steps(new_keys(sizes.keys))
    bench.log(f"  round {round_no + 1}: {time.perf_counter() - started:.1f} s")
    return out


def metrics(rounds: list[dict[str, dict[str, Step]]], stores: list[str], sizes: Sizes) -> list[Metric]:
    out = []
    for name in stores:
        for step in STEPS:
            if step not in rounds[0][name]:
                continue  # a store without batch methods
            best = min((r[name][step] for r in rounds), key=lambda s: s.seconds)
            ref = min((r["tracker"][step] for r in rounds), key=lambda s: s.seconds)
            unit = "writes/s" if step.startswith("complete") else "checks/s"
            out.append(Metric(f"{name}: {step}", unit, sizes.keys / best.seconds, sizes.keys / ref.seconds,
                              "higher", "tracker: one receiver" if step in STEPS[4:] else ""))
            if best.latencies_us:
                for label, value, ref_value in zip(("p50", "p99"), bench.percentiles(best.latencies_us),
                                                   bench.percentiles(ref.latencies_us), strict=True):
                    out.append(Metric(f"{name}: {step} {label}", "us", value, ref_value, "lower"))
    return out


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _machine(temp: str, redis_source: str) -> dict[str, Any]:
    return bench.machine({
        "sqlite": sqlite3.sqlite_version,
        "sqlite_dir": temp,
        "redis-py": _version("redis"),
        "redis_server": redis_source,
    })


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    return report_text(result, about=[
        f"sqlite {m['sqlite']} (file in {m['sqlite_dir']}); redis-py {m['redis-py']}, {m['redis_server']}",
        f"{result['sizes']['keys']:,} keys per store per round",
    ], ratio="store / in-memory DuplicateTracker (checks/s, writes/s: higher is better; us: lower)",
        labels=("store", "tracker"),
        notes=[f"one asyncio loop, one awaited call at a time (but the x{CONCURRENCY} rows; the x{BATCH} rows: "
               f"{BATCH} keys a call); tracker: sync calls, no I/O."])


def main(argv: list[str] | None = None) -> int:
    def more(parser: Any) -> None:
        parser.add_argument("--redis", metavar="URL",
                            help="use this Redis instead of starting a redis-server (keys expire within "
                                 f"{TTL:.0f} s)")

    args = bench.parse_args(__doc__ or "", argv, quick_help="a smoke run: fewer keys, one round",
                               sizes=(QUICK, FULL), rounds_help="rounds", more=more)
    sizes: Sizes = args.sizes
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="geobus-bench-seenset-") as scratch:
        with contextlib.ExitStack() as stack:
            redis_url = args.redis or stack.enter_context(redis_server())
            urls = {"memory": "memory", "sqlite": f"sqlite:{Path(scratch) / 'seen.sqlite'}"}
            if redis_url:
                urls["redis"] = redis_url
            else:
                skipped["redis"] = "redis-server not found on PATH (apt-get install redis-server), and no --redis URL"
                bench.log(f"  skipping redis: {skipped['redis']}")
            redis_source = ("--redis (yours)" if args.redis else "redis-server started for the run"
                            ) if redis_url else "no redis"
            done = [run_round(urls, sizes, n) for n in range(args.rounds)]
    rows = metrics(done, list(urls), sizes)
    result = {
        "machine": _machine(os.path.realpath(tempfile.gettempdir()), redis_source),
        "sizes": {"keys": sizes.keys, "concurrency": CONCURRENCY},
        "stores": list(urls),
        "skipped": skipped,
    }
    return bench.report(result, rows, args, render=render)


def cli() -> NoReturn:
    """Run as a script (``benchmarks/seenset.py``, ``python -m geobus._tools.bench.seenset``)."""
    bench.run(main, interrupted="interrupted; the redis-server it started was stopped")


if __name__ == "__main__":
    cli()
