"""A receiver's shared seen-set, as I/O: the ``Deduplicator``'s questions put to a ``SeenSet``.

When the configuration names a shared store (``[dedup] store``), the receiver's
``Deduplicator`` asks it about keys new to this process, and keeps the leases of
the keys this process holds. What to ask, and what each answer means (waiting
copies, unrecorded completions, the breaker that leaves a failed store alone), is
decided there; here each question becomes one store call under this receiver's
name, and a failure (``SeenSetError``) becomes an answer like any other.
"""

from __future__ import annotations

import os
import socket
import uuid

from .._config import DedupPolicy
from .._decisions.actions import (
    ClaimKey,
    RecheckKey,
    RecordOutcome,
    ReleaseKey,
    RenewLease,
    StoreAnswer,
    StoreQuestion,
)
from .._storage.seenset import SeenSet, SeenSetError, open_seen_set


def _owner_id() -> str:
    """This receiver's name in the store: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SharedKeys:
    """One receiver's conversation with a shared ``SeenSet``. Task-safe within one event loop."""

    def __init__(self, store: SeenSet, policy: DedupPolicy, *, owned: bool) -> None:
        self.store = store
        self.owner = _owner_id()
        self._lease = policy.lease
        self._ttl = policy.max_age
        self._owned = owned  # a store given to the receiver is the caller's to close

    @classmethod
    def open(cls, policy: DedupPolicy, given: SeenSet | None = None) -> SharedKeys | None:
        """``given``, or the store ``policy`` names; None when there is none (``memory``: this process only).

        Raises:
            ValueError, ImportError: as ``open_seen_set``, for a store URL it cannot open.
        """
        if given is not None:
            return cls(given, policy, owned=False)
        if policy.store == "memory":
            return None
        return cls(open_seen_set(policy.store, max_entries=policy.max_entries), policy, owned=True)

    async def ask(self, question: StoreQuestion) -> StoreAnswer:
        """Put ``question`` to the store; its answer, or the ``SeenSetError`` it raised."""
        try:
            if isinstance(question, ClaimKey | RecheckKey):
                return await self.store.claim(question.key, self.owner, self._lease)
            if isinstance(question, RenewLease):
                return await self.store.renew(question.key, self.owner, self._lease)
            if isinstance(question, RecordOutcome):
                await self.store.complete(question.key, self.owner, question.outcome, self._ttl)
            elif isinstance(question, ReleaseKey):
                await self.store.release(question.key, self.owner)
        except SeenSetError as exc:
            return exc
        return None

    @property
    def evictions(self) -> int:
        """Keys the store dropped for room (SQLite, memory keep count; Redis does not)."""
        count = getattr(self.store, "evictions", 0)
        return count if isinstance(count, int) else 0

    async def close(self) -> None:
        if self._owned:
            await self.store.close()
