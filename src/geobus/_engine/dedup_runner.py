"""Carrying out a ``Deduplicator``'s actions: the receiver's hands, as tenacity's loop is its retrier's.

The ``Deduplicator`` decides; a ``DedupRunner`` does what it says, in order:
copies to deliver join the ready line (the receiver hands them out), duplicates
are settled in the background, questions go to the shared seen-set and each
answer goes straight back to the ``Deduplicator``, whose reply is carried out in
turn (a question cancelled before its answer goes back to it too, given up). Nothing here decides what a copy is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from .._config import Deadlines, DedupPolicy
from .._decisions.actions import (
    Action,
    Deliver,
    Drop,
    GiveBack,
    Hold,
    Settle,
    StoreAnswer,
    StoreQuestion,
)
from .._decisions.dedup import Copy, Key, Outcome
from .._decisions.deduplicator import Deduplicator
from .._storage.seenset import SeenSet
from .channels import ReceiveChannel
from .shared_keys import SharedKeys
from .turns import in_background

_LOG = logging.getLogger("geobus")


class DedupRunner:
    """Runs one receiver's ``Deduplicator`` (``dedup``) against its namespaces and its shared
    seen-set (``store``: ``seen_set``, or the one ``policy`` names; None for none).

    ``settled`` is set whenever a background settlement ends (a pump may then ask
    its namespace again); ``on_deferred`` is told of each duplicate deferred (as its
    twin was). ``key_scope`` prefixes every key put to the shared seen-set (a
    dead-letter receiver's keys are not the main queue's). Task-safe within one event loop.

    Raises:
        ValueError, ImportError: as ``open_seen_set``, for a store URL it cannot open.
    """

    def __init__(
        self,
        policy: DedupPolicy,
        channels: Mapping[str, ReceiveChannel],
        *,
        seen_set: SeenSet | None,
        already_settled: bool,
        clock: Callable[[], float],
        store_backoff: float,
        deadlines: Deadlines,
        settled: asyncio.Event,
        on_deferred: Callable[[Copy], None] | None = None,
        key_scope: str = "",
    ) -> None:
        # A shared seen-set (``[dedup] store``): the fleet's memory of keys, asked about new ones.
        self.store = SharedKeys.open(policy, seen_set, scope=key_scope)
        self.dedup = Deduplicator(
            policy,
            shared=self.store is not None,
            defers_shared=self.store is not None and self.store.defers,
            already_settled=already_settled,
            clock=clock,
            store_backoff=store_backoff,
        )
        self._ready: collections.deque[Deliver] = collections.deque()  # for the application, in turn
        # Deferred copies received back, each to its caller (None until the deduplicator says so).
        self._handing_back: dict[Copy, Deliver | None] = {}
        self._settling = {name: 0 for name in channels}  # duplicates being settled, per namespace
        self.absorbed = 0  # duplicates that never reached the application
        self._channels = channels
        self._deadlines = deadlines
        self._settled = settled
        self._on_deferred = on_deferred
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what it holds ----------------------------------------------------------------------------

    def take_ready(self) -> Deliver | None:
        """The next copy to hand to the application, in turn; None when none is ready."""
        return self._ready.popleft() if self._ready else None

    @property
    def has_ready(self) -> bool:
        """A copy waits to be handed to the application."""
        return bool(self._ready)

    def ready_on(self, namespace: str) -> list[Copy]:
        """The copies of ``namespace`` waiting to be handed to the application."""
        return [deliver.copy for deliver in self._ready if deliver.copy.namespace == namespace]

    def is_ready(self, copy: Copy) -> bool:
        """``copy`` waits to be handed to the application."""
        return any(deliver.copy is copy for deliver in self._ready)

    def ready_keys(self) -> list[Key | None]:
        """The keys of the copies waiting to be handed to the application (or to the caller of
        ``receive_deferred_messages``)."""
        handing = [deliver.key for deliver in self._handing_back.values() if deliver is not None]
        return [deliver.key for deliver in self._ready] + handing

    @contextlib.contextmanager
    def handing_back(self, owners: list[Copy]) -> Iterator[list[Deliver]]:
        """While in this block, a ``Deliver`` of one of ``owners`` (deferred copies received back)
        is kept for the caller of ``receive_deferred_messages`` instead of joining the ready line;
        the list yielded holds them once the block is left. A block left by an exception (or a
        cancellation) puts them in the ready line instead: handed out by ``receive_messages``."""
        for owner in owners:
            self._handing_back[owner] = None
        handed: list[Deliver] = []
        ok = False
        try:
            yield handed
            ok = True
        finally:
            kept = [d for d in (self._handing_back.pop(owner, None) for owner in owners) if d is not None]
            if ok:
                handed += kept
            else:
                self._ready.extend(kept)

    def settling_on(self, namespace: str) -> int:
        """Duplicates of ``namespace`` being settled in the background now."""
        return self._settling[namespace]

    # -- carrying out ------------------------------------------------------------------------------

    async def run(self, actions: Iterable[Action]) -> None:
        """Do what the deduplicator says, in order; each store answer goes back to it at once,
        and so does a question cancelled before its answer (``store_given_up``)."""
        for action in actions:
            if isinstance(action, Deliver):
                if action.copy in self._handing_back:
                    self._handing_back[action.copy] = action
                else:
                    self._ready.append(action)
            elif isinstance(action, Hold):
                pass  # locked and unsettled until its twin's outcome; the keeper renews its lock
            elif isinstance(action, Settle):
                self._settle_in_background(action)
            elif isinstance(action, Drop):
                self.absorbed += 1
            else:
                try:
                    answer = await self._ask(action)
                except asyncio.CancelledError:
                    self.dedup.store_given_up(action)
                    raise
                await self.run(self.dedup.store_answered(action, answer))

    async def _ask(self, question: StoreQuestion) -> StoreAnswer:
        if self.store is None:  # pragma: no cover - a deduplicator without a store asks nothing
            raise RuntimeError(f"{question!r} without a shared seen-set")
        return await self.store.ask(question)

    def _settlement(self, action: Settle | GiveBack) -> Awaitable[None]:
        channel = self._channels[action.copy.namespace]
        message, timeout = action.copy.payload, self._deadlines.attempt
        if isinstance(action, GiveBack):
            return channel.abandon(message, timeout=timeout)
        if action.outcome is Outcome.COMPLETED:
            return channel.complete(message, timeout=timeout)
        if action.outcome is Outcome.DEFERRED:
            if self._on_deferred is not None:
                self._on_deferred(action.copy)  # now: its sequence number receives it back, whenever deferred
            return channel.defer(message, timeout=timeout)
        return channel.dead_letter(message, reason=action.reason, description=action.description, timeout=timeout)

    def _settle_in_background(self, action: Settle) -> None:
        self.absorbed += 1
        namespace = action.copy.namespace
        self._settling[namespace] += 1
        task = asyncio.get_running_loop().create_task(self._quietly(self._settlement(action), namespace))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quietly(self, settlement: Awaitable[None], namespace: str) -> None:
        try:
            with in_background():  # the application's own settlements go first
                await settlement
        except Exception as exc:
            # Not lost: an unsettled copy comes back after its lock expires, and is settled then.
            _LOG.info("geobus: settling a duplicate on %r failed (%s)", namespace, type(exc).__name__)
        finally:
            self._settling[namespace] -= 1
            self._settled.set()

    # -- closing --------------------------------------------------------------------------------

    async def give_back(self, unread: list[tuple[Key | None, Copy]]) -> None:
        """Settle what was fetched and never handed out — the ready line, the copies waiting
        on another worker, ``unread`` ones — so it does not sit locked (which, and how:
        ``Deduplicator.closing``). Waits for the duplicates being settled first; takes at
        most ``deadlines.attempt`` more."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        ready = [deliver.copy for deliver in self._ready]
        self._ready.clear()

        async def quietly(settlement: Awaitable[None]) -> None:
            with contextlib.suppress(Exception):  # it comes back when its lock expires instead
                await settlement

        settling = [quietly(self._settlement(action)) for action in self.dedup.closing(ready, unread)]
        if settling:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*settling), self._deadlines.attempt)

    async def close(self) -> None:
        """Free every key still claimed here for the fleet, and close the store if it is ours."""
        if self.store is not None:
            await self.run(self.dedup.let_go())
            await self.store.close()
