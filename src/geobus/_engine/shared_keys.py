"""A receiver's shared seen-set, as I/O: the ``Deduplicator``'s questions put to a ``SeenSet``.

When the configuration names a shared store (``[dedup] store``), the receiver's
``Deduplicator`` asks it about keys new to this process, and keeps the leases of
the keys this process holds. What to ask, and what each answer means (waiting
copies, unrecorded completions, the breaker that leaves a failed store alone), is
decided there; here each question becomes a store call under this receiver's
name, and a failure (``SeenSetError``) becomes an answer like any other.

Claims and completions asked within one turn of the event loop — settlements
made at the same time, claims asked concurrently — go to the store as one call
(``claim_many``, ``complete_many``: one Redis round trip), each asker awaiting its
own answer (``_Coalesced``). A store without those methods is asked one key at a
time. The receiver looks at everything its pumps fetched together, so a fetched
batch's claims are one call too; the copies it makes ready keep their namespace's
pump waiting (``locks.namespace_busy``), so none of their settlements waits behind
a receive call.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from azure.servicebus import ServiceBusSubQueue

from .._config import DedupPolicy
from .._decisions.actions import (
    Claim,
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
from .._storage.seenset import BatchSeenSet, DeferringSeenSet, SeenSet, SeenSetError, open_seen_set
from .tasks import cancel_and_wait

_In = TypeVar("_In")
_Out = TypeVar("_Out")


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
        # ... or batches: it is asked one key at a time.
        self._claims: _Coalesced[Key, Claim] | None = None
        self._completions: _Coalesced[tuple[Key, Claim], None] | None = None
        if isinstance(store, BatchSeenSet):
            self._claims = _Coalesced(self._claim, self._claim_many)
            self._completions = _Coalesced(self._complete, self._complete_many)

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
                return await (self._claim(key) if self._claims is None else self._claims(key))
            if isinstance(question, ReclaimKey):
                if isinstance(self.store, DeferringSeenSet):
                    return await self.store.claim_deferred(key, self.owner, self._lease)
                return await self.store.claim(key, self.owner, self._lease)
            if isinstance(question, RenewLease):
                return await self.store.renew(key, self.owner, self._lease)
            if isinstance(question, RecordOutcome):
                outcome = (key, question.outcome)
                await (self._complete(outcome) if self._completions is None else self._completions(outcome))
            elif isinstance(question, ReleaseKey):
                await self.store.release(key, self.owner)
        except SeenSetError as exc:
            return exc
        return None

    def _claim(self, key: Key) -> Awaitable[Claim]:
        return self.store.claim(key, self.owner, self._lease)

    def _complete(self, outcome: tuple[Key, Claim]) -> Awaitable[None]:
        return self.store.complete(outcome[0], self.owner, outcome[1], self._ttl)

    async def _claim_many(self, keys: list[Key]) -> list[Claim]:
        assert isinstance(self.store, BatchSeenSet)
        return await self.store.claim_many(keys, self.owner, self._lease)

    async def _complete_many(self, outcomes: list[tuple[Key, Claim]]) -> list[None]:
        assert isinstance(self.store, BatchSeenSet)
        await self.store.complete_many(outcomes, self.owner, self._ttl)
        return [None] * len(outcomes)

    @property
    def evictions(self) -> int:
        """Keys the store dropped for room (SQLite, memory keep count; Redis does not)."""
        count = getattr(self.store, "evictions", 0)
        return count if isinstance(count, int) else 0

    async def close(self) -> None:
        """Stop the calls still under way (nobody waits for them), and close the store if it is ours."""
        for coalesced in (self._claims, self._completions):
            if coalesced is not None:
                await coalesced.close()
        if self._owned:
            await self.store.close()


class _Coalesced(Generic[_In, _Out]):
    """Calls asked within one turn of the event loop, made as one: ``one`` for a lone call,
    ``many`` (the answers in order) for several. Each asker awaits its own answer, or the
    call's error; the call is cancelled once every asker has stopped waiting."""

    def __init__(self, one: Callable[[_In], Awaitable[_Out]],
                 many: Callable[[list[_In]], Awaitable[Sequence[_Out]]]) -> None:
        self._one = one
        self._many = many
        self._gathering: list[tuple[_In, asyncio.Future[_Out]]] | None = None  # asked this turn
        self._calls: set[asyncio.Task[None]] = set()

    async def __call__(self, item: _In) -> _Out:
        loop = asyncio.get_running_loop()
        if self._gathering is None:
            self._gathering = []
            loop.call_soon(self._send)  # after the tasks ready now have run, and asked
        future: asyncio.Future[_Out] = loop.create_future()
        self._gathering.append((item, future))
        return await future

    def _send(self) -> None:
        asked = [(item, future) for item, future in self._gathering or [] if not future.cancelled()]
        self._gathering = None
        if not asked:
            return  # every asker stopped waiting already
        call = asyncio.get_running_loop().create_task(self._call(asked))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        waiting = len(asked)

        def stopped_waiting(future: asyncio.Future[_Out]) -> None:
            nonlocal waiting
            if future.cancelled():
                waiting -= 1
                if not waiting:
                    call.cancel()

        for _, future in asked:
            future.add_done_callback(stopped_waiting)

    async def _call(self, asked: list[tuple[_In, asyncio.Future[_Out]]]) -> None:
        futures = [future for _, future in asked]
        try:
            answers = [await self._one(asked[0][0])] if len(asked) == 1 else await self._many(
                [item for item, _ in asked])
            for future, answer in zip(futures, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        finally:
            for future in futures:
                future.cancel()  # a no-op for the answered; this call was cancelled for the rest

    async def close(self) -> None:
        await cancel_and_wait(self._calls)
