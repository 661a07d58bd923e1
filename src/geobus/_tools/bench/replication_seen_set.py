"""The ``replication`` benchmark's seen-set: what remembering ids costs a ``DedupReceiver``.

The in-memory ``DuplicateTracker`` against a plain Python ``set`` of the same
ids: bytes per remembered id (tracemalloc; the string each keeps counted on
both sides: the set keeps the id, the tracker the id's ``Key``), new ids
recorded per second, and duplicate checks per second. The tracker's figures
include spelling each id as its ``Key``, once per copy, as a receiver does. No
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

from geobus._decisions.dedup import Copy, DuplicateTracker, Verdict, key_of

from .common import Metric


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


def _fill_tracker(ids: list[str]) -> DuplicateTracker:
    tracker = DuplicateTracker(max_entries=len(ids), max_age=86_400.0)
    first = Copy("primary", 1)
    for message_id in ids:
        key = key_of(message_id)  # read once per copy, kept for its settlement
        tracker.arrived(key, first)
        tracker.completed(key)
    return tracker


def _fill_set(keys: list[str]) -> set[str]:
    seen: set[str] = set()
    for key in keys:
        seen.add(key)
    return seen


def seen_set(count: int) -> list[Metric]:
    """The ids are made first (the messages hold them); tracemalloc counts the structure,
    which for the tracker includes the ``Key`` strings it made, and the set's ids are added."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    key_bytes, id_bytes = sys.getsizeof(key_of(ids[0])), sys.getsizeof(ids[0])
    tracker_bytes = _traced_bytes(lambda: _fill_tracker(ids)) / count
    set_bytes = _traced_bytes(lambda: _fill_set(ids)) / count + id_bytes

    started = time.perf_counter()
    tracker = _fill_tracker(ids)
    tracker_records = count / (time.perf_counter() - started)
    started = time.perf_counter()
    seen = _fill_set(ids)
    set_records = count / (time.perf_counter() - started)

    twin = Copy("secondary", 1)
    started = time.perf_counter()
    verdicts = [tracker.arrived(key_of(message_id), twin) for message_id in ids]
    tracker_checks = count / (time.perf_counter() - started)
    if tracker.processed != count or verdicts.count(Verdict.COMPLETE) != count:
        raise RuntimeError("the seen-set forgot ids it should hold")
    started = time.perf_counter()
    found = [message_id in seen for message_id in ids]
    set_checks = count / (time.perf_counter() - started)
    assert all(found)

    how_many, note = f"{count:,} ids", "plain: a Python set"
    return [
        Metric(f"seen-set bytes/id, {how_many} (incl. id string)", "bytes", tracker_bytes, set_bytes, "lower", note,
               {"key_string_bytes": key_bytes, "id_string_bytes": id_bytes}),
        Metric(f"seen-set duplicate checks/s at {how_many}", "checks/s", tracker_checks, set_checks, "higher", note),
        Metric(f"seen-set new ids recorded/s, up to {how_many}", "ids/s", tracker_records, set_records, "higher", note),
    ]
