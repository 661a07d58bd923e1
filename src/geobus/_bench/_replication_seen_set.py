"""The ``replication`` benchmark's seen-set: what remembering ids costs a ``DedupReceiver``.

The in-memory ``DuplicateTracker`` against a plain Python ``set`` of the same
ids: bytes per remembered id (tracemalloc, the id string counted on both
sides), new ids recorded per second, and duplicate checks per second. No
namespace is involved.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

from geobus._dedup import Copy, DuplicateTracker, Verdict

from ._replication_shared import Metric


def _traced_bytes(build: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        size = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del kept
    return size


def _fill_tracker(keys: list[str]) -> DuplicateTracker:
    tracker = DuplicateTracker(max_entries=len(keys), max_age=86_400.0)
    first = Copy("primary", 1)
    for key in keys:
        tracker.arrived(key, first)
        tracker.completed(key, first)
    return tracker


def _fill_set(keys: list[str]) -> set[str]:
    seen: set[str] = set()
    for key in keys:
        seen.add(key)
    return seen


def seen_set(count: int) -> list[Metric]:
    """The keys are made first, so tracemalloc counts the structure; every structure also
    keeps the id string, whose size is added to both sides."""
    keys = [str(uuid.uuid4()) for _ in range(count)]
    key_bytes = sys.getsizeof(keys[0])
    tracker_bytes = _traced_bytes(lambda: _fill_tracker(keys)) / count + key_bytes
    set_bytes = _traced_bytes(lambda: _fill_set(keys)) / count + key_bytes

    started = time.perf_counter()
    tracker = _fill_tracker(keys)
    tracker_records = count / (time.perf_counter() - started)
    started = time.perf_counter()
    seen = _fill_set(keys)
    set_records = count / (time.perf_counter() - started)

    twin = Copy("secondary", 1)
    started = time.perf_counter()
    verdicts = [tracker.arrived(key, twin) for key in keys]
    tracker_checks = count / (time.perf_counter() - started)
    if tracker.processed != count or verdicts.count(Verdict.COMPLETE) != count:
        raise RuntimeError("the seen-set forgot ids it should hold")
    started = time.perf_counter()
    found = [key in seen for key in keys]
    set_checks = count / (time.perf_counter() - started)
    assert all(found)

    ids = f"{count:,} ids"
    return [
        Metric(
            f"seen-set bytes/id, {ids} (incl. id string)",
            "bytes",
            tracker_bytes,
            set_bytes,
            "lower",
            extra={"key_string_bytes": key_bytes, "plain": "Python set"},
        ),
        Metric(
            f"seen-set duplicate checks/s at {ids}",
            "checks/s",
            tracker_checks,
            set_checks,
            "higher",
            extra={"plain": "Python set"},
        ),
        Metric(
            f"seen-set new ids recorded/s, up to {ids}",
            "ids/s",
            tracker_records,
            set_records,
            "higher",
            extra={"plain": "Python set"},
        ),
    ]
