"""What a duplicate is, for the demo and the drill alike: one ledger of deliveries and settlements.

A handler's delivery of a message is one of:

- **first**: no handler had it before.
- **redelivered**: a handler had it, and its settlement failed or its worker
  died before settling: at-least-once delivery doing its job, not a duplicate.
- **duplicate**: a handler had it again after a completion of it had
  succeeded, or while it was still in a handler (this worker's or another's).
- **restart duplicate**: a worker killed with an in-memory seen-set may see
  twins of what it completed that were still queued at its death; only a
  persistent seen-set can remember across a restart, so those are counted
  apart, against that bound (``restart_allowed``), once each at most.

The demo and the drill feed it the same facts (``delivered``, ``completed``,
``settle_failed``, ``died``; a worker is a ``life``), in the order they happened.
No I/O, no clock; thread-safe (the demo's worker writes while its producer reads).
"""

from __future__ import annotations

import enum
import threading
from collections import Counter
from collections.abc import Iterable


class Delivery(enum.Enum):
    FIRST = "first"
    REDELIVERED = "redelivered"
    DUPLICATE = "duplicate"
    RESTART_DUPLICATE = "restart duplicate"


class Ledger:
    """Classifies each delivery to a handler (``Delivery``) and counts them."""

    def __init__(self, restart_allowed: Iterable[str] = ()) -> None:
        self.restart_allowed = set(restart_allowed)
        self.counts: Counter[Delivery] = Counter()
        self._completed_in: dict[str, int] = {}  # id -> the worker life that last completed it
        self._in_handler: dict[str, set[int]] = {}  # id -> the live workers holding it unsettled
        self._restarted: set[str] = set()  # ids already counted as a restart duplicate
        self._seen: set[str] = set()  # ids a handler got at least once
        self._lock = threading.Lock()

    def delivered(self, message_id: str, life: int = 0) -> Delivery:
        """A handler of worker ``life`` got ``message_id``: which kind of delivery it was."""
        with self._lock:
            holders = self._in_handler.setdefault(message_id, set())
            kind = self._classify(message_id, life, holders)
            holders.add(life)
            self._seen.add(message_id)
            self.counts[kind] += 1
            return kind

    def _classify(self, message_id: str, life: int, holders: set[int]) -> Delivery:
        if holders:
            return Delivery.DUPLICATE
        completer = self._completed_in.get(message_id)
        if completer is None:
            return Delivery.REDELIVERED if message_id in self._seen else Delivery.FIRST
        if completer != life and message_id in self.restart_allowed and message_id not in self._restarted:
            self._restarted.add(message_id)
            return Delivery.RESTART_DUPLICATE
        return Delivery.DUPLICATE

    def completed(self, message_id: str, life: int = 0) -> None:
        with self._lock:
            self._in_handler.setdefault(message_id, set()).discard(life)
            self._completed_in[message_id] = life

    def settle_failed(self, message_id: str, life: int = 0) -> None:
        """Its settlement failed: it will come back, and that will be a redelivery."""
        with self._lock:
            self._in_handler.setdefault(message_id, set()).discard(life)

    def died(self, life: int) -> None:
        """Worker ``life`` is gone: what it held is in no handler any more."""
        with self._lock:
            for holders in self._in_handler.values():
                holders.discard(life)

    @property
    def delivered_ids(self) -> set[str]:
        """Every message id a handler got at least once."""
        with self._lock:
            return set(self._seen)

    @property
    def deliveries(self) -> int:
        return sum(self.counts.values())

    @property
    def duplicates(self) -> int:
        """Duplicates that broke the promise (restart duplicates are counted apart)."""
        return self.counts[Delivery.DUPLICATE]
