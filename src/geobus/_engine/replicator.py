"""One sender's two namespaces and every call to them: the replicator.

``Replicator`` owns what a ``ReplicatedSender`` and its outbox ``Drainer`` both
need of the namespaces: the channels, the shared ``Health`` (breakers, passive
roles, the operator's override), the deadlines, and the per-namespace counters.
Every call that stores or cancels passes through ``attempt``: skipped without
waiting while the breaker or the operator holds the namespace back, cut off at
the call's deadline, its outcome told to the breaker. ``passive`` (in order, with
failover) and ``concurrently`` (both at once, as active mode sends) are built on
it. Calls that prove nothing about a namespace (sizing a batch, warming the
standby's link) go only to a namespace that is clear, and never close a breaker.
The sender and the drainer decide what to send and what a result means
(``SendJudge``); they reach the namespaces only through here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from .._config import Deadlines
from .._decisions.health import Health
from .._decisions.judge import SendJudge
from .._errors import NamespaceTimeoutError, ReplicationError
from .._models import SendResult
from .channels import SendChannel
from .tasks import cancel_and_wait

_LOG = logging.getLogger("geobus")
_T = TypeVar("_T")

# One call to one namespace: given its channel and the seconds it may take.
Call = Callable[[SendChannel, float], Awaitable[_T]]


class Replicator:
    """The channels, health, deadlines and counters of one sender's two namespaces.

    ``health`` is shared by every sender of a client (a namespace's health is
    not per entity); the counters are this sender's. Task-safe within one event
    loop; not thread-safe, but for ``landed``, which the sync sender's fast lane calls
    from its callers' threads (the counters are kept under a lock).

    Raises:
        ValueError: not exactly two channels (on construction).
    """

    def __init__(
        self,
        channels: Sequence[SendChannel],
        *,
        health: Health | None = None,
        deadlines: Deadlines | None = None,
        entity: str = "",
    ) -> None:
        if len(channels) != 2:
            raise ValueError(f"replication needs exactly two namespaces, not {len(channels)}")
        self._channels = {channel.name: channel for channel in channels}
        self.names = tuple(self._channels)
        self.health = health or Health(list(self.names))
        self.deadlines = deadlines or Deadlines()
        self.entity = entity
        self._counting = threading.Lock()  # the counters: the sync fast lane counts from its threads
        self._sent = dict.fromkeys(self.names, 0)
        self._failures = dict.fromkeys(self.names, 0)
        self._failovers = 0
        self._partial_writes = 0
        self._missing: set[str] = set()  # namespaces missing copies since their last success
        self._batch_limits: dict[str, int] = {}  # the last batch size limit each namespace told
        self._warming: asyncio.Task[None] | None = None

    # -- what it has done ----------------------------------------------------------------

    @property
    def active_namespace(self) -> str:
        """The namespace passive mode tries first."""
        return self.health.passive_order()[0]

    @property
    def messages_sent(self) -> dict[str, int]:
        """Messages each namespace stored (sends, schedules and drains)."""
        return dict(self._sent)

    @property
    def send_failures(self) -> dict[str, int]:
        """Calls that sent messages to a namespace and failed (a skipped namespace is not tried)."""
        return dict(self._failures)

    @property
    def failovers(self) -> int:
        """Times passive mode moved the active role to the other namespace."""
        return self._failovers

    @property
    def partial_writes(self) -> int:
        """Calls whose messages landed on one namespace while the other missed them."""
        return self._partial_writes

    # -- one call --------------------------------------------------------------------------

    def begin(self, timeout: float | None) -> float:
        """Start a call: apply a changed override file (cheap when none is due: the drainer
        calls it too, so an un-paused namespace is seen while nothing else is sent), and
        return the loop time by which the whole call, failover included, must end.

        Raises:
            ValueError: ``timeout`` is not positive.
        """
        seconds = self.deadlines.send if timeout is None else timeout
        if seconds <= 0:
            raise ValueError("timeout must be positive")
        deadline = asyncio.get_running_loop().time() + seconds
        self.health.refresh()
        return deadline

    async def attempt(self, name: str, deadline: float, call: Call[_T], *, messages: int | None = None) -> _T:
        """One call to namespace ``name``: how every send, schedule and cancel reaches it.

        Skipped without a call while its breaker is open or the operator paused it;
        otherwise given the smaller of ``deadlines.attempt`` and what is left until
        ``deadline``, and its outcome told to the breaker (an outage counts against
        it, as ``SendJudge.counts_against`` says; a cancellation says nothing).
        ``messages``: how many messages the call stores, for the counters; None for a
        call that stores none (a cancellation), which is not counted.

        Raises:
            NamespaceUnavailableError: skipped; the namespace was not called.
            NamespaceTimeoutError: ``deadline`` passed, or the call outlasted its share.
            Exception: what the channel raised.
        """
        skipped = self.health.unavailable(name)
        if skipped is not None:
            raise skipped
        # From here the breaker may have given this call its half-open slot: every way
        # out records the outcome.
        try:
            result = await self._call(name, deadline, call)
        except Exception as exc:
            self._failed(name, exc)
            if messages is not None:
                self._count(self._failures, name, 1)
            raise
        except BaseException as exc:  # cancelled: says nothing about the namespace
            self.health.record(name, exc, availability=False)
            raise
        self.health.record(name, None)
        if messages is not None:
            self._count(self._sent, name, messages)
        return result

    def landed(self, name: str, messages: int) -> None:
        """``messages`` stored on ``name`` by a call made outside ``attempt`` (the sync sender's
        fast lane, on its own thread): counted as ``attempt`` counts them."""
        self._count(self._sent, name, messages)

    def failed_outside(self, name: str, error: Exception) -> None:
        """A call to ``name`` made outside ``attempt`` (the sync fast lane) failed: told to its
        breaker and counted as ``attempt`` does. On the loop."""
        self._failed(name, error)
        self._count(self._failures, name, 1)

    def _count(self, table: dict[str, int], name: str, count: int) -> None:
        with self._counting:
            table[name] += count

    async def _call(self, name: str, deadline: float, call: Call[_T]) -> _T:
        """``call`` on ``name``, given the smaller of ``deadlines.attempt`` and what is left."""
        seconds = min(self.deadlines.attempt, deadline - asyncio.get_running_loop().time())
        if seconds <= 0:
            raise NamespaceTimeoutError(name, 0.0)
        return await call(self._channels[name], seconds)

    def _failed(self, name: str, error: Exception) -> None:
        self.health.record(name, error, availability=SendJudge.counts_against(error))

    # -- the two strategies ------------------------------------------------------------------

    async def passive(
        self,
        call: Call[object],
        deadline: float,
        *,
        messages: int,
        judge: SendJudge,
        failed: Mapping[str, Exception] | None = None,
    ) -> SendResult:
        """The active namespace, then the other while ``judge.tries_next`` says so.

        ``judge``: the sender's, or the drainer's (under which a namespace's refusal,
        a rotated key or a missing entity, sends the message to the other too).
        ``failed``: namespaces already tried outside ``attempt`` (the sync fast lane) and
        how they failed (``failed_outside`` recorded it): not tried again.

        Raises:
            ReplicationError: no namespace took it (every error an outage or a skip).
            Exception: what stopped the failover, as ``SendJudge.passive`` says.
        """
        errors: dict[str, BaseException] = {}
        for name in self.health.passive_order():
            try:
                if failed and name in failed:
                    raise failed[name]
                await self.attempt(name, deadline, call, messages=messages)
            except Exception as exc:
                errors[name] = exc
                if judge.tries_next(exc):
                    continue
                break
            # Only a send that had to pass a namespace by may swap the roles: one that went
            # straight to its first choice, decided before a concurrent failover or failback
            # moved the roles, would otherwise swap them back with nothing wrong.
            if errors and self.health.succeeded_on(name):
                self._failovers += 1
                _LOG.warning(
                    "geobus: %s; sent to %r, which is now active",
                    ", ".join(f"namespace {n!r} unavailable ({type(e).__name__})" for n, e in errors.items()),
                    name,
                )
            return judge.passive(errors, landed=name)
        return judge.passive(errors, landed=None)

    async def concurrently(
        self,
        call: Call[_T],
        deadline: float,
        names: Iterable[str] | None = None,
        *,
        messages: int | None = None,
    ) -> dict[str, _T | Exception]:
        """``attempt`` on ``names`` (both namespaces by default) at once.

        Returns each namespace's result, or the error it raised (a skipped namespace's
        is a ``NamespaceUnavailableError``), in the order of ``names``.
        """
        chosen = list(self.names if names is None else names)

        async def one(name: str) -> _T | Exception:
            # The breaker's half-open slot is taken here, in the task that then records
            # the outcome: a call cancelled before its tasks ran takes no slot.
            try:
                return await self.attempt(name, deadline, call, messages=messages)
            except Exception as exc:
                return exc

        if not chosen:
            return {}
        # The first runs in this task, the others in their own, started first: all are on the
        # wire together (each waits on its own namespace), for one task less than ``gather``.
        others = [asyncio.ensure_future(one(name)) for name in chosen[1:]]
        try:
            outcomes = [await one(chosen[0])]
            outcomes += [await task for task in others]
        except BaseException:  # cancelled: so are the others, and each records its outcome first
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            raise
        return dict(zip(chosen, outcomes, strict=True))

    # -- missing copies ----------------------------------------------------------------------

    def stores_again(self, name: str) -> None:
        """``name`` took a copy again (a send, or its outbox lane drained to the last one)."""
        if name in self._missing:
            self._missing.discard(name)
            _LOG.info("geobus: %s stores its copies again (%s)", name, self.entity)

    def noted(self, result: SendResult, fate: str) -> SendResult:
        """Counts a partial write; logs when a namespace starts (or stops) missing copies,
        not once per message: an outage at 1,000 messages/s is one warning. ``fate``
        says where the missing copies are (``"are missing"``, ``"wait in the outbox"``)."""
        for name in result.landed:
            self.stores_again(name)
        if not result.partial:
            return result
        self._partial_writes += 1
        starting = [name for name in result.missed if name not in self._missing]
        self._missing.update(result.missed)
        if starting:
            _LOG.warning(
                "geobus: partial writes to %s: stored on %s; copies for %s %s (counted in stats.partial_writes)",
                self.entity,
                ", ".join(result.landed),
                ", ".join(f"{name} ({type(result.missed[name]).__name__})" for name in starting),
                fate,
            )
        return result

    # -- calls that prove nothing ---------------------------------------------------------

    async def batch_limit(self, deadline: float) -> int:
        """The smallest batch size limit, in bytes, known for the two namespaces.

        Each namespace that is clear (``Health.is_clear``) is asked; one held back is
        not, but the limit it told last still counts: a batch sized for the larger
        of a Standard/Premium pair would be refused, as the message's fault, by the
        smaller when it is back. The SDK answers from its link, usually without a
        round trip, so an answer proves nothing: it is never told to the breaker
        (it would end a failure streak, or close a half-open breaker, on no
        evidence); a failure counts against it as a send's would.

        Raises:
            ReplicationError: no limit is known and no namespace answered (``causes``
                names why, a namespace held back as ``NamespaceUnavailableError``).
        """
        causes: dict[str, BaseException] = {}

        async def size(channel: SendChannel, seconds: float) -> int:
            return await channel.max_batch_size(timeout=seconds)

        async def ask(name: str) -> None:
            try:
                self._batch_limits[name] = await self._call(name, deadline, size)
            except Exception as exc:
                self._failed(name, exc)
                causes[name] = exc

        for name in self.names:
            held_back = self.health.held_back(name)
            if held_back is not None:
                causes[name] = held_back
        await asyncio.gather(*(ask(name) for name in self.names if name not in causes))
        if not self._batch_limits:
            ordered = {name: causes[name] for name in self.names if name in causes}
            raise ReplicationError("no namespace could be reached to size a batch", causes=ordered)
        return min(self._batch_limits.values())

    # -- links -----------------------------------------------------------------------------

    @property
    def warming(self) -> bool:
        """``warm_standby`` has run (the standby's link is open, or was tried)."""
        return self._warming is not None

    def warm_standby(self) -> None:
        """Open the passive standby's link in the background, once, so a failover costs one send.

        A standby the operator paused, or whose breaker is not closed, is left alone.
        The warm-up stores nothing and proves nothing, so it neither takes a breaker's
        half-open slot nor is counted against the breaker when it fails.
        """
        if self._warming is not None:
            return
        standby = self.health.passive_order()[1]
        if not self.health.is_clear(standby):
            return
        self._warming = asyncio.get_running_loop().create_task(self._warm(self._channels[standby]))

    async def _warm(self, channel: SendChannel) -> None:
        try:
            await channel.warm(timeout=self.deadlines.attempt)
        except Exception as exc:  # the standby may be down: the failover will open it, or fail
            _LOG.debug("geobus: could not pre-open %r: %s", channel.name, type(exc).__name__)

    async def probe(self, name: str) -> None:
        """Open a fresh link to ``name`` and close it: does it take senders now?

        The client's failback probe. Not gated by the breaker: it is the check that
        finds a namespace well again, and ``Health.observe_probe`` records its result
        (closing the breaker). It runs only while ``Health.wants_failback``, which no
        paused or overridden namespace does.

        Raises:
            NamespaceTimeoutError: no answer within ``deadlines.attempt``.
            Exception: the namespace refused.
        """
        await self._channels[name].probe(timeout=self.deadlines.attempt)

    async def close(self) -> None:
        """Stop the warm-up and close both channels. Safe to call twice."""
        if self._warming is not None:
            await cancel_and_wait([self._warming])
        await asyncio.gather(*(channel.close() for channel in self._channels.values()), return_exceptions=True)
