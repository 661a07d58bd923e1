"""A session receiver's background loops: a pump per namespace (attaching it when it is missing)
and the keeper (the namespaces' session locks, the store's lease, the order marks).

Each runs until ``Loops.stop``. What a copy becomes is not decided here: the pump
hands each batch to the receiver's ``arrived``. How much a pump fetches is
(``fetch_size``): with ``prefetch`` 0, and always in receive-and-delete mode, what
``receive_messages`` waits for, plus what a producer's gap needs from a namespace
that may hold its missing number; with ``prefetch`` N, up to N fetched ahead.
Every message fetched is locked under the session: if the worker dies, each one's
delivery count goes up, so fetching ahead of the application can send a poison
message's neighbours to the dead-letter queue along with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from typing import TYPE_CHECKING

from azure.servicebus.exceptions import SessionLockLostError

from ..._decisions.actions import SeenSetError
from ..pumps import every
from ..tasks import cancel_and_wait
from .ownership import Contested

if TYPE_CHECKING:
    from .receiver import DedupSessionReceiver

_LOG = logging.getLogger("geobus")
FIRST_POLL = 0.3  # seconds: a namespace just attached answers soon (an undecided start waits for it)


class Loops:
    """The background work of one ``DedupSessionReceiver``, started once it owns its session."""

    def __init__(self, receiver: DedupSessionReceiver) -> None:
        self._receiver = receiver
        self.tasks: list[asyncio.Task[None]] = []
        self._renewing: dict[str, asyncio.Task[None]] = {}
        self._marking: asyncio.Task[None] | None = None
        self._marks_written = time.monotonic()
        self._lease_renewed = time.monotonic()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        receiver = self._receiver
        self.tasks = [loop.create_task(self._pump(name)) for name in receiver.channels]
        interval = receiver.timings.keeper_interval
        self.tasks.append(loop.create_task(every(interval, self._keep, "keeping a session")))

    async def stop(self) -> None:
        marking = [self._marking] if self._marking is not None else []
        await cancel_and_wait([*self.tasks, *self._renewing.values(), *marking])

    # -- a namespace's pump ---------------------------------------------------------------------------

    async def _pump(self, name: str) -> None:
        receiver = self._receiver
        channel = receiver.channels[name]
        timings = receiver.timings
        backoff = timings.reconnect_backoff[0]
        poll = min(timings.poll_wait, FIRST_POLL)
        while receiver.lost is None:
            if name not in receiver.ownership.attached:
                if not await self._attach(name):
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, timings.reconnect_backoff[1])
                    continue
                poll = min(timings.poll_wait, FIRST_POLL)
            while not (size := self.fetch_size(name)):
                receiver._settled.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(receiver._settled.wait(), timings.poll_wait)
            try:
                batch = await channel.receive(size, poll, timeout=poll + receiver.deadlines.receive_stall)
            except Exception as exc:
                receiver._counters[name].errors += 1
                _LOG.warning("geobus: receiving session %r from %r failed (%s); attaching again in %.1f s",
                             receiver.ownership.session_id, name, type(exc).__name__, backoff)  # fmt: skip
                self._detach(name)
                await channel.reset()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, timings.reconnect_backoff[1])
                continue
            backoff, poll = timings.reconnect_backoff[0], timings.poll_wait
            counters = receiver._counters[name]
            counters.received += len(batch)
            enqueued = batch[-1].enqueued_time_utc if batch else None
            if enqueued is not None:
                counters.lag = max(0.0, time.time() - enqueued.timestamp())
            await receiver._arrived(channel, batch)

    def fetch_size(self, name: str) -> int:
        """How many messages namespace ``name``'s pump may fetch now (see the module); 0: it
        waits — also while a session operation is under way there, and, fetching ahead, while
        the application holds one of its messages unsettled (a settlement on an SDK receiver
        waits for its receive call). Fetching what the application waits for, it does not
        wait for that: the SDK's receiver with no prefetch asks the service then too."""
        receiver = self._receiver
        order = receiver.order
        if order is None or receiver.channels[name].managing:
            return 0
        fetched = sum(deliver.copy.namespace == name for deliver in order.held_items())
        if receiver.prefetch and not receiver._already_settled:
            if any(record.copy.namespace == name for record in receiver._delivered.values()):
                return 0
            return receiver.prefetch if fetched < receiver.prefetch else 0
        wanted = receiver.wanted - order.ready()
        if wanted <= 0:
            return 0
        return wanted if fetched < receiver.wanted or order.needs(name) else 0

    async def _attach(self, name: str) -> bool:
        receiver = self._receiver
        try:
            attached = await receiver.ownership.attach(name)
        except Contested:
            if not receiver.ownership.attached:
                receiver._lose(SessionLockLostError(message="another receiver holds the session in every namespace"))
            else:
                _LOG.warning("geobus: another receiver holds session %r on %r; trying again",
                             receiver.ownership.session_id, name)  # fmt: skip
            return False
        if attached:
            if receiver.order is not None:
                receiver.order.region_live(name, True)
            await receiver.state.catch_up(name)
            _LOG.info("geobus: session %r attached on %r", receiver.ownership.session_id, name)
        return attached

    def _detach(self, name: str) -> None:
        receiver = self._receiver
        receiver.ownership.detached(name)
        if receiver.order is not None:
            receiver.order.region_live(name, False)
        receiver.changed.set()  # a gap waiting on it may now be decided
        self.mark_soon()  # a namespace failed: where the order stands goes to the others now, for the next owner

    def mark_soon(self) -> None:
        """Write the order marks now, in the background (once at a time), where the session is held."""
        receiver = self._receiver
        if receiver.ownership.attached and (self._marking is None or self._marking.done()):
            self._marking = asyncio.get_running_loop().create_task(receiver.state.write_marks())

    # -- the keeper --------------------------------------------------------------------------------------

    async def _keep(self) -> None:
        receiver = self._receiver
        receiver.changed.set()  # a gap's wait may have run out
        self._renew_locks()
        lease = receiver.ownership.lease
        now = time.monotonic()
        if lease is not None and lease.held is not None and now - self._lease_renewed >= lease.lease / 3:
            try:
                kept = await lease.renew()
            except SeenSetError as exc:
                _LOG.warning("geobus: renewing the lease of session %r failed (%s)", receiver.ownership.session_id, exc)
            else:
                self._lease_renewed = now
                if not kept:
                    receiver._lose(SessionLockLostError(message="the session's lease in the shared store was lost"))
        if now - self._marks_written >= receiver.timings.marks_interval and receiver.ownership.attached:
            self._marks_written = now
            await receiver.state.write_marks()

    def _renew_locks(self) -> None:
        """Renew each namespace's session lock a while before it runs out, each in its own task."""
        receiver = self._receiver
        ahead = receiver.timings.renew_ahead
        now = datetime.datetime.now(datetime.timezone.utc)
        for name in sorted(receiver.ownership.attached):
            until = receiver.channels[name].locked_until
            task = self._renewing.get(name)
            due = until is None or (until - now).total_seconds() <= ahead
            if due and (task is None or task.done()):
                self._renewing[name] = asyncio.get_running_loop().create_task(self._renew(name))

    async def _renew(self, name: str) -> None:
        receiver = self._receiver
        try:
            await receiver.channels[name].renew_session(timeout=receiver.deadlines.attempt + receiver.timings.poll_wait)
        except Exception as exc:
            _LOG.info("geobus: renewing session %r on %r failed (%s)", receiver.ownership.session_id, name, type(exc).__name__)
            # The pump's next receive fails too, if the lock is gone, and attaches again.
