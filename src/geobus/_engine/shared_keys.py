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

from azure.servicebus import ServiceBusSubQueue

from .._config import DedupPolicy
from .._decisions.actions import (
    ClaimKey,
    RecheckKey,
    ReclaimKey,
    RecordOutcome,
    ReleaseKey,
    RenewLease,
    StoreAnswer,
    StoreQuestion,
)
from .._decisions.dedup import Key
from .._storage.seenset import DeferringSeenSet, SeenSet, SeenSetError, open_seen_set


def key_scope(sub_queue: ServiceBusSubQueue | str | None) -> str:
    """What a receiver of ``sub_queue`` puts before its keys in a shared seen-set: nothing for
    the entity itself (as before sub-queues were read), ``dlq|`` for its dead-letter queue,
    ``tdlq|`` for its transfer dead-letter queue. ``key_of``'s spellings start with a one-letter
    tag and ``:``, so a scoped key never equals an unscoped one.

    Raises:
        ValueError: not a sub-queue the SDK knows.
    """
    if sub_queue is None:
        return ""
    return {ServiceBusSubQueue.DEAD_LETTER: "dlq|", ServiceBusSubQueue.TRANSFER_DEAD_LETTER: "tdlq|"}[
        ServiceBusSubQueue(sub_queue)
    ]


def _owner_id() -> str:
    """This receiver's name in the store: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SharedKeys:
    """One receiver's conversation with a shared ``SeenSet``. Task-safe within one event loop."""

    def __init__(self, store: SeenSet, policy: DedupPolicy, *, owned: bool, scope: str = "") -> None:
        self.store = store
        self._scope = scope
        self.owner = _owner_id()
        self._lease = policy.lease
        self._ttl = policy.max_age
        self._owned = owned  # a store given to the receiver is the caller's to close
        # A store of the application's own may predate deferral: it is not told of deferred keys.
        self.defers = isinstance(store, DeferringSeenSet)

    @classmethod
    def open(cls, policy: DedupPolicy, given: SeenSet | None = None, *, scope: str = "") -> SharedKeys | None:
        """``given``, or the store ``policy`` names; None when there is none (``memory``: this process only).

        ``scope`` is put before every key in the store (``key_scope``): one store serves a
        queue and its dead-letter queues, whose copies share message ids but not outcomes.

        Raises:
            ValueError, ImportError: as ``open_seen_set``, for a store URL it cannot open.
        """
        if given is not None:
            return cls(given, policy, owned=False, scope=scope)
        if policy.store == "memory":
            return None
        return cls(open_seen_set(policy.store, max_entries=policy.max_entries), policy, owned=True, scope=scope)

    async def ask(self, question: StoreQuestion) -> StoreAnswer:
        """Put ``question`` to the store; its answer, or the ``SeenSetError`` it raised."""
        key = Key(self._scope + question.key)
        try:
            if isinstance(question, ClaimKey | RecheckKey):
                return await self.store.claim(key, self.owner, self._lease)
            if isinstance(question, ReclaimKey):
                if isinstance(self.store, DeferringSeenSet):
                    return await self.store.claim_deferred(key, self.owner, self._lease)
                return await self.store.claim(key, self.owner, self._lease)
            if isinstance(question, RenewLease):
                return await self.store.renew(key, self.owner, self._lease)
            if isinstance(question, RecordOutcome):
                await self.store.complete(key, self.owner, question.outcome, self._ttl)
            elif isinstance(question, ReleaseKey):
                await self.store.release(key, self.owner)
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
