"""The ``replication`` benchmark's seen-set: what remembering ids costs a ``DedupReceiver``.

The in-memory ``DuplicateTracker`` against a plain Python ``set`` of the same
ids, at ``Sizes.seen_ids`` ids (1,000,000; 100,000 with ``--quick``): bytes per
remembered id (tracemalloc), new ids recorded per second, and duplicate checks
per second. Bytes include the key on both sides: the set keeps the id string,
the tracker what its ``SeenKeys`` makes of the id's ``Key`` (a packed int). The
tracker's rates include spelling each id as its ``Key``, once per copy, as a
receiver does, and its whole decision (``arrived``; ``completed``); ``extra``
holds the seen-set's own share: ``SeenKeys.get`` and ``record`` alone, spelling
included. No namespace is involved.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from geobus._decisions.dedup import Copy, DuplicateTracker, Outcome, Verdict, key_of
from geobus._decisions.seen_keys import SeenKeys

from .common import Metric

_AGE = 86_400.0  # no id ages out during the run


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


def _per_second(step: Callable[[str], object], ids: Iterable[str], count: int) -> tuple[float, list[object]]:
    """``step`` over every id: (calls per second, the answers)."""
    started = time.perf_counter()
    answers = [step(message_id) for message_id in ids]
    return count / (time.perf_counter() - started), answers


def _fill_tracker(ids: list[str]) -> DuplicateTracker:
    tracker = DuplicateTracker(max_entries=len(ids), max_age=_AGE)
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


def _tracker_rates(ids: list[str]) -> tuple[float, float]:
    """The tracker's new ids recorded per second, then its duplicate checks per second."""
    started = time.perf_counter()
    tracker = _fill_tracker(ids)
    records = len(ids) / (time.perf_counter() - started)
    twin = Copy("secondary", 1)
    checks, verdicts = _per_second(lambda message_id: tracker.arrived(key_of(message_id), twin), ids, len(ids))
    if tracker.processed != len(ids) or verdicts.count(Verdict.COMPLETE) != len(ids):
        raise RuntimeError("the seen-set forgot ids it should hold")
    return records, checks


def _set_rates(ids: list[str]) -> tuple[float, float]:
    """The plain set's: ids added per second, then membership checks per second."""
    started = time.perf_counter()
    seen = _fill_set(ids)
    records = len(ids) / (time.perf_counter() - started)
    checks, found = _per_second(seen.__contains__, ids, len(ids))
    assert all(found)
    return records, checks


def _seen_keys_alone(ids: list[str]) -> dict[str, float]:
    """The tracker's processed keys by themselves: ``record`` and ``get`` per second."""
    keys: SeenKeys[Outcome] = SeenKeys(len(ids), _AGE, time.time, common=Outcome.COMPLETED)
    records, _ = _per_second(lambda message_id: keys.record(key_of(message_id), Outcome.COMPLETED), ids, len(ids))
    checks, found = _per_second(lambda message_id: keys.get(key_of(message_id)), ids, len(ids))
    if found.count(Outcome.COMPLETED) != len(ids):
        raise RuntimeError("the seen-set forgot ids it should hold")
    return {"seen_keys_records_per_s": round(records), "seen_keys_checks_per_s": round(checks)}


def seen_set(count: int) -> list[Metric]:
    """The ids are made first (the messages hold them); tracemalloc counts the structure,
    which for the tracker includes the keys it keeps, and the set's ids are added."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    key_bytes, id_bytes = sys.getsizeof(key_of(ids[0])), sys.getsizeof(ids[0])
    tracker_bytes = _traced_bytes(lambda: _fill_tracker(ids)) / count
    set_bytes = _traced_bytes(lambda: _fill_set(ids)) / count + id_bytes

    tracker_records, tracker_checks = _tracker_rates(ids)
    set_records, set_checks = _set_rates(ids)
    alone = _seen_keys_alone(ids)

    how_many, note = f"{count:,} ids", "plain: a Python set"
    return [
        Metric(f"seen-set bytes/id, {how_many} (incl. key)", "bytes", tracker_bytes, set_bytes, "lower", note,
               {"key_string_bytes": key_bytes, "id_string_bytes": id_bytes}),
        Metric(f"seen-set duplicate checks/s at {how_many}", "checks/s", tracker_checks, set_checks, "higher", note,
               {"seen_keys_checks_per_s": alone["seen_keys_checks_per_s"]}),
        Metric(f"seen-set new ids recorded/s, up to {how_many}", "ids/s", tracker_records, set_records, "higher", note,
               {"seen_keys_records_per_s": alone["seen_keys_records_per_s"]}),
    ]
