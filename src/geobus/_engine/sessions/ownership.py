"""Owning one session in both namespaces at once, and in the fleet's shared store.

The rule (docs/sessions.md has it for users):

1. With a shared seen-set store (``[dedup] store`` sqlite/redis), the session is
   the fleet's to give: a receiver first takes a lease on the session id in the
   store (``SessionLease``) and holds it, renewed, for as long as it owns the
   session. A lease another receiver holds means the session is taken.
2. A **named** session is locked in both namespaces. A **next-available** one is
   taken from whichever namespace offers one first, then locked by name in the other.
3. A namespace that says another receiver holds the session
   (``SessionCannotBeLockedError``) makes the receiver let go of everything it
   took (locks, lease) and try again after a jittered backoff, at most
   ``lock_attempts`` times: two receivers racing for one session in the two
   namespaces cannot both keep half of it. Next-available skips a session found
   held elsewhere for the rest of this acquire (a namespace keeps offering the
   session with the oldest message); with nothing else on offer it raises
   ``OperationTimeoutError``, as the SDK's next-available does when no session comes.
4. A namespace that cannot be reached does not stop the receiver: it owns the
   session on the other and attaches the missing one in the background when it
   is back (``attach``).

Without a shared store, rule 3 is what keeps two receivers apart; a partition in
which each receiver reaches only one namespace can then give a session two
owners. The store's lease closes that: it is the one lock both sides must pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence

from azure.servicebus import NEXT_AVAILABLE_SESSION
from azure.servicebus.exceptions import OperationTimeoutError, SessionCannotBeLockedError

from ..._decisions.actions import Claim, SeenSetError
from ..._decisions.dedup import Key
from ..._storage.seenset import SeenSet
from .channel import SessionChannel, SessionTarget

_LOG = logging.getLogger("geobus")


def lease_key(entity: str, session_id: str) -> Key:
    """The store key of a session's lease: its own tag (``x:``), apart from every message key.
    The entity path is lower-cased (Service Bus names are case-insensitive: ``Orders`` is
    ``orders``); a session id is case-sensitive, as Service Bus keeps it."""
    return Key(f"x:session:{entity.lower()}:{session_id}")


class SessionLease:
    """A receiver's lease on one session id in a shared ``SeenSet``. Task-safe within one loop."""

    def __init__(self, store: SeenSet, owner: str, entity: str, *, lease: float) -> None:
        self.store = store
        self.owner = owner
        self.lease = lease
        self._entity = entity
        self.held: Key | None = None

    async def take(self, session_id: str) -> bool:
        """Take the lease on ``session_id``; False when another receiver holds it.

        Raises:
            SeenSetError: the store did not answer.
        """
        key = lease_key(self._entity, session_id)
        claim = await self.store.claim(key, self.owner, self.lease)
        if claim is Claim.CLAIMED:
            self.held = key
            return True
        return False

    async def renew(self) -> bool:
        """Extend the lease; False when it was lost (it ran out, or another receiver took it).

        Raises:
            SeenSetError: the store did not answer.
        """
        if self.held is None:
            return False
        return await self.store.renew(self.held, self.owner, self.lease)

    async def give_up(self) -> None:
        """Let the session go in the store (a failing store lets the lease run out instead)."""
        key, self.held = self.held, None
        if key is not None:
            with contextlib.suppress(SeenSetError):
                await self.store.release(key, self.owner)


class Contested(Exception):
    """Another receiver holds the session in a namespace, or its lease in the store."""


class Ownership:
    """Takes one session in both namespaces (see the module) for one receiver.

    ``channels``: the namespaces' session channels, by name. ``sleep`` and ``rng`` pace
    the retries (injected for tests).
    """

    def __init__(
        self,
        channels: Mapping[str, SessionChannel],
        *,
        target: SessionTarget,
        attempts: int,
        attach_timeout: float,
        lease: SessionLease | None = None,
        backoff: tuple[float, float] = (0.2, 2.0),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._channels = dict(channels)
        self.target = target
        self._attempts = attempts
        self._attach_timeout = attach_timeout
        self.lease = lease
        self._backoff = backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.session_id: str | None = None if target == NEXT_AVAILABLE_SESSION else str(target)
        self.attached: set[str] = set()
        self._contested: set[str] = set()  # next-available: sessions found held elsewhere, this acquire

    async def acquire(self) -> str:
        """Own the session in every namespace that answers; returns its id.

        Raises:
            SessionCannotBeLockedError: a named session: another receiver kept it after ``attempts`` tries.
            OperationTimeoutError: next-available, and no namespace offered a session not held
                elsewhere (as the SDK's next-available raises when no session comes).
            The last namespace's error, when no namespace could be reached.
        """
        self._contested.clear()
        for attempt in range(self._attempts):
            try:
                return await self._try()
            except Contested:
                await self.release()
                if self.target == NEXT_AVAILABLE_SESSION:
                    if self.session_id is not None:
                        self._contested.add(self.session_id)
                    self.session_id = None  # the next attempt takes another session
                if attempt + 1 < self._attempts:
                    first, largest = self._backoff
                    await self._sleep(min(largest, first * 2**attempt) * (0.5 + self._rng.random()))
        if self.target == NEXT_AVAILABLE_SESSION:
            raise OperationTimeoutError(message="no session was available: those offered are held by other receivers")
        raise SessionCannotBeLockedError(message=f"session {self.session_id} is held by another receiver")

    async def _try(self) -> str:
        names = list(self._channels)
        if self.target == NEXT_AVAILABLE_SESSION:
            first, session_id = await self._next_available(names)
            rest = [name for name in names if name != first and name not in self.attached]
        else:
            session_id, rest = str(self.target), names
        if self.lease is not None and not await self._take_lease(session_id):
            raise Contested()
        results = await asyncio.gather(*(self._lock(name, session_id) for name in rest), return_exceptions=True)
        errors = {}
        for name, result in zip(rest, results, strict=True):
            if isinstance(result, SessionCannotBeLockedError):
                raise Contested()
            if isinstance(result, BaseException):
                errors[name] = result
        if not self.attached:
            raise next(iter(errors.values()))
        for name, error in errors.items():
            _LOG.warning("geobus: session on %r not locked now (%s); attaching it in the background", name, type(error).__name__)
        return session_id

    async def _next_available(self, names: Sequence[str]) -> tuple[str, str]:
        """The first namespace to offer a session not found held elsewhere, and its id; others
        that offered one let go of it."""
        tasks = {asyncio.ensure_future(self._channels[n].lock(NEXT_AVAILABLE_SESSION, timeout=self._attach_timeout)): n for n in names}
        winner: tuple[str, str] | None = None
        errors: list[BaseException] = []
        try:
            pending = set(tasks)
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is not None:
                        errors.append(error)
                    elif task.result() in self._contested:
                        errors.append(OperationTimeoutError(message=f"only session {task.result()} was offered, held elsewhere"))
                    elif winner is None:
                        winner = (tasks[task], task.result())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if winner is None:
            await asyncio.gather(*(self._channels[n].reset() for n in names), return_exceptions=True)
            timeouts = [e for e in errors if isinstance(e, OperationTimeoutError)]
            raise timeouts[0] if timeouts else errors[0]
        name, session_id = winner
        self.session_id = session_id
        self.attached = {name}
        for task, other in tasks.items():
            done_ok = task.done() and not task.cancelled() and task.exception() is None
            if other != name and done_ok and task.result() == session_id:
                self.attached.add(other)  # both offered the same session: keep it
            elif other != name:
                await self._channels[other].reset()  # let go of whatever it took, or was taking
        return name, session_id

    async def _take_lease(self, session_id: str) -> bool:
        assert self.lease is not None
        try:
            return await self.lease.take(session_id)
        except SeenSetError as exc:
            # The store is down: the namespaces' locks alone keep receivers apart meanwhile.
            _LOG.warning("geobus: the shared store did not answer for a session lease (%s); going on without it", exc)
            return True

    async def _lock(self, name: str, session_id: str) -> None:
        await self._channels[name].lock(session_id, timeout=self._attach_timeout)
        self.attached.add(name)

    async def attach(self, name: str) -> bool:
        """Lock the owned session in namespace ``name`` (back after an outage, or its lock lost);
        True once it holds it.

        Raises:
            Contested: another receiver holds it there.
        """
        assert self.session_id is not None
        try:
            await self._lock(name, self.session_id)
        except SessionCannotBeLockedError as exc:
            raise Contested() from exc
        except Exception as exc:
            _LOG.debug("geobus: attaching session on %r failed: %s", name, type(exc).__name__)
            return False
        return True

    def detached(self, name: str) -> None:
        """Namespace ``name``'s lock is gone (a fault dropped its receiver)."""
        self.attached.discard(name)

    async def release(self) -> None:
        """Let go of the session everywhere: the namespaces' locks and the store's lease."""
        await asyncio.gather(*(channel.reset() for channel in self._channels.values()), return_exceptions=True)
        self.attached.clear()
        if self.lease is not None:
            await self.lease.give_up()
