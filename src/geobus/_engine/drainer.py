"""The outbox on the event loop: its file on one worker thread, and a sender's drainer.

``AsyncOutbox`` runs every SQLite call on a single thread of its own, so an
fsync never blocks the event loop and the connection is only ever used by one
thread. ``Drainer`` belongs to one ``ReplicatedSender`` (one entity) and sends
through that sender's ``Replicator``: a task per lane sends buffered messages,
oldest first, when the lane's namespace is back, with tenacity's jittered
exponential backoff while it is not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, wait_exponential, wait_random

from .._config import OutboxPolicy, ReplicationMode
from .._decisions.judge import SendJudge
from .._storage.outbox import ANY_LANE, Entry, Outbox
from .tasks import cancel_and_wait

if TYPE_CHECKING:
    from .channels import SendChannel
    from .replicator import Replicator

_LOG = logging.getLogger("geobus")
_T = TypeVar("_T")
# How often an idle lane re-reads the file: `geobus outbox retry` may have refilled it.
RESCAN_INTERVAL = 15.0


class AsyncOutbox:
    """An ``Outbox`` whose I/O runs on one worker thread."""

    def __init__(self, outbox: Outbox) -> None:
        self.sync = outbox
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geobus-outbox")
        # One drainer per entity runs at a time (two would send every message twice);
        # the others wait their turn, in the order their senders started.
        self._drainers: dict[str, list[Drainer]] = {}

    def claim(self, drainer: Drainer) -> bool:
        """Register ``drainer``; True if it is the one to run for its entity now."""
        queue = self._drainers.setdefault(drainer.entity, [])
        queue.append(drainer)
        return queue[0] is drainer

    def wake(self, entity: str, lanes: Sequence[str]) -> None:
        """New messages wait in ``lanes``: wake the drainer running for ``entity``."""
        for drainer in self._drainers.get(entity, [])[:1]:
            drainer.wake(lanes)

    def release(self, drainer: Drainer) -> None:
        """Unregister ``drainer``; if it was the one running, the next for its entity starts."""
        queue = self._drainers.get(drainer.entity, [])
        was_running = bool(queue) and queue[0] is drainer
        if drainer in queue:
            queue.remove(drainer)
        if was_running and queue:
            queue[0].run()

    def pending(self, entity: str, lane: str) -> int:
        return self.sync.pending(entity, lane)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    async def append(self, entity: str, lanes: Sequence[str], messages: Sequence[Any]) -> None:
        await self.run(self.sync.append, entity, lanes, messages)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.sync.close()


# The drainer's judge: a buffered message goes wherever a namespace will take it, so a
# namespace's refusal (a rotated key, a missing entity) sends it to the other one.
_JUDGE = SendJudge(draining=True)


class Drainer:
    """Sends one entity's buffered messages when their namespace can take them.

    Lanes are independent: a namespace that stays down holds back only its own
    lane. What an error means is the sender's judge's call (``SendJudge``): an
    outage is waited out with backoff; anything else (the message's fault, every
    namespace refusing, an error geobus cannot classify) refuses the batch for
    good, which is then retried one message at a time, so only the message at
    fault is dead-lettered, with the reason.
    """

    def __init__(
        self,
        replicator: Replicator,
        outbox: AsyncOutbox,
        policy: OutboxPolicy,
        mode: Callable[[], ReplicationMode],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._replicator = replicator
        self._outbox = outbox
        self.policy = policy
        self._mode = mode  # read at each drain: the sender's mode may be changed while it runs
        self.entity = replicator.entity
        self._sleep = sleep
        self._lanes = [ANY_LANE, *replicator.names]
        self._wakes = {lane: asyncio.Event() for lane in self._lanes}
        self._one_at_a_time = dict.fromkeys(self._lanes, False)
        self._tasks: list[asyncio.Task[None]] = []
        self.drained = 0

    def depth(self) -> int:
        return sum(self._outbox.pending(self.entity, lane) for lane in self._lanes)

    def oldest_age(self) -> float | None:
        """Seconds the oldest of this entity's buffered messages has waited (None: none wait).

        Never blocks the loop: it reads the outbox's in-memory lane heads, not the file.
        """
        return self._outbox.sync.head_age(self.entity, self._lanes)

    @property
    def dead_lettered(self) -> int:
        """Messages of this entity moved to the dead-letter table (refused, expired, unreadable)."""
        return self._outbox.sync.dead_lettered[self.entity]

    def start(self) -> None:
        """Register with the outbox; run now if no other drainer runs for this entity."""
        if self._outbox.claim(self):
            self.run()

    def run(self) -> None:
        """Start a task per lane: this drainer's turn has come (``start``, ``AsyncOutbox.release``)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._lane(lane), name=f"geobus-drain-{lane}") for lane in self._lanes]

    def wake(self, lanes: Sequence[str]) -> None:
        for lane in lanes:
            self._wakes[lane].set()

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        self._outbox.release(self)

    async def _lane(self, lane: str) -> None:
        first, cap = self.policy.backoff_initial, self.policy.backoff_max
        retrying = AsyncRetrying(
            # first, 2*first, 4*first ... up to cap, each plus up to `first` of jitter
            wait=wait_exponential(multiplier=first, max=cap) + wait_random(0, first),
            retry=retry_if_exception(_JUDGE.worth_waiting),
            sleep=self._sleep,
            reraise=True,
        )
        while True:
            try:
                if not self._outbox.pending(self.entity, lane):
                    self._wakes[lane].clear()
                    try:
                        await asyncio.wait_for(self._wakes[lane].wait(), RESCAN_INTERVAL)
                    except asyncio.TimeoutError:
                        await self._outbox.run(self._outbox.sync.recount)
                    continue
                async for attempt in retrying:
                    with attempt:
                        await self._drain(lane)
            except Exception as exc:  # an unexpected error: say so, wait, go on
                _LOG.error("geobus: draining the outbox lane %s/%s failed: %r", self.entity, lane, exc)
                await self._sleep(cap)

    async def _drain(self, lane: str) -> None:
        """Send the lane's messages until it is empty.

        Raises:
            Exception: a transient error (the lane keeps its messages; tenacity backs off).
        """
        outbox = self._outbox
        singles, sent = 0, False
        while outbox.pending(self.entity, lane):
            limit = 1 if self._one_at_a_time[lane] else self.policy.batch_size
            entries = await outbox.run(outbox.sync.head, self.entity, lane, limit)
            if not entries:
                return  # every message left was expired and dead-lettered
            ids = [entry.id for entry in entries]
            try:
                await self._send(lane, entries)
            except Exception as exc:
                if _JUDGE.worth_waiting(exc):
                    await outbox.run(outbox.sync.record_failure, ids, f"{type(exc).__name__}: {exc}"[:500])
                    raise
                if len(entries) > 1:
                    self._one_at_a_time[lane] = True  # find the one message at fault
                    continue
                reason = f"refused by the namespace: {type(exc).__name__}: {exc}"[:1000]
                _LOG.error("geobus: outbox message %s dead-lettered: %s", entries[0].message_id, reason)
                await outbox.run(outbox.sync.dead_letter, ids, reason)
                self._one_at_a_time[lane] = False
                continue
            await outbox.run(outbox.sync.remove, ids)
            self.drained += len(entries)
            sent = True
            if self._one_at_a_time[lane]:
                singles += 1
                if singles >= self.policy.batch_size or not outbox.pending(self.entity, lane):
                    # Past the culprit (or a batch too large as a whole): batches again.
                    self._one_at_a_time[lane], singles = False, 0
        _LOG.info("geobus: outbox lane %s/%s drained", self.entity, lane)
        if sent and lane != ANY_LANE:
            self._replicator.stores_again(lane)  # caught up: every copy it missed is there now

    async def _send(self, lane: str, entries: list[Entry]) -> None:
        replicator = self._replicator
        messages = [entry.message for entry in entries]

        async def send(channel: SendChannel, seconds: float) -> None:
            await channel.send(messages, timeout=seconds)

        deadline = replicator.begin(None)
        if lane == ANY_LANE:
            if self._mode() == ReplicationMode.PASSIVE:
                await replicator.passive(send, deadline, messages=len(messages), judge=_JUDGE)
                return
            # Written in passive mode, drained in active: every namespace must get it.
            results = await replicator.concurrently(send, deadline, messages=len(messages))
            missed = list(_JUDGE.active(results).missed)  # raises when it landed nowhere
            if missed:
                # Landed on one: the other's copy waits in that namespace's own lane, where
                # a refusal for good is dead-lettered and an outage is waited out.
                await self._outbox.append(self.entity, missed, messages)
                self._outbox.wake(self.entity, missed)
            return
        _JUDGE.active(await replicator.concurrently(send, deadline, [lane], messages=len(messages)))
