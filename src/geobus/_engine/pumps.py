"""A ``DedupReceiver``'s background loops, and their timings: a pump per namespace, the lock keeper.

Each loop runs until the receiver stops it with ``tasks.cancel_and_wait`` (the
one home of the cancellation workaround they need). What they do with a copy is
not decided here: pumps only fetch (when ``locks.namespace_busy`` allows), the
keeper only renews the locks of the copies the receiver's ``Deduplicator``
holds that ``locks.due_for_renewal`` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields

from azure.servicebus import ServiceBusReceivedMessage

from .._config import Deadlines
from .._decisions.dedup import Copy
from .._decisions.faults import Fault, classify
from .._decisions.locks import due_for_renewal
from .channels import ReceiveChannel
from .tasks import cancel_and_wait

_LOG = logging.getLogger("geobus")


@dataclass(frozen=True)
class ReceiverTimings:
    """How a ``DedupReceiver``'s background loops pace themselves, in seconds.

    ``poll_wait``: one SDK receive call waits this long; pumps loop on it.
    ``keeper_interval``: between lock renewals and shared seen-set rechecks.
    ``renew_ahead``: a held copy's lock is renewed when it has this long left.
    ``reconnect_backoff``: the first and the largest wait before reconnecting a
    namespace whose receive call failed (doubling in between).
    ``store_backoff``: the shared seen-set is left alone this long after it failed.
    ``marks_interval``: a session receiver writes its order marks this often when they
    moved (also at once after a gap, a namespace failing, and at close).

    Raises:
        ValueError: a time that is not above 0, or a largest backoff below the first.
    """

    poll_wait: float = 1.0
    keeper_interval: float = 1.0
    renew_ahead: float = 10.0
    reconnect_backoff: tuple[float, float] = (0.2, 5.0)
    store_backoff: float = 5.0
    marks_interval: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            for seconds in value if isinstance(value, tuple) else (value,):
                if not seconds > 0:
                    raise ValueError(f"ReceiverTimings.{f.name} must be above 0, not {seconds!r}")
        first, largest = self.reconnect_backoff
        if largest < first:
            raise ValueError("ReceiverTimings.reconnect_backoff: its largest wait is below its first")


async def every(interval: float, turn: Callable[[], Awaitable[None]], what: str) -> None:
    """Run ``turn`` every ``interval`` seconds until cancelled; a failed turn is logged, not fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            await turn()
        except Exception:  # one bad turn must not end every later one
            _LOG.exception("geobus: %s failed; trying again", what)


@dataclass
class PumpCounters:
    """One namespace's receive counters; read by the receiver's stats, possibly from another thread."""

    received: int = 0
    errors: int = 0  # failed receive calls, each followed by a reconnect
    lag: float | None = None  # enqueued-to-received seconds of the newest message


async def pump(
    channel: ReceiveChannel,
    counters: PumpCounters,
    *,
    fetch_size: Callable[[], int],
    timings: ReceiverTimings,
    receive_stall: float,
    busy: Callable[[], bool],
    settled: asyncio.Event,
    fetched: Callable[[ReceiveChannel, list[ServiceBusReceivedMessage]], None],
) -> None:
    """Feed one namespace's messages to the receiver (``fetched``), ``fetch_size()`` at a time,
    until cancelled; reconnect the namespace when a receive call fails, or stalls
    ``receive_stall`` past its wait.

    A namespace is asked for more only when this process holds none of its
    messages, or the application waits for more with nothing ready (``busy``,
    ``locks.namespace_busy``): the SDK makes a settlement wait for an in-flight receive
    call on the same receiver (up to its socket timeout), so receive-process-settle
    in turn, as the SDK's own loop does, is what keeps settlements fast. ``settled``
    is set whenever that may have changed.
    """
    poll = timings.poll_wait
    backoff = timings.reconnect_backoff[0]
    while True:
        while busy():
            settled.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(settled.wait(), poll)
        try:
            batch = await channel.receive(fetch_size(), poll, timeout=poll + receive_stall)
        except Exception as exc:
            counters.errors += 1
            _LOG.warning(
                "geobus: receiving from %r failed (%s); reconnecting in %.1f s", channel.name, type(exc).__name__, backoff
            )
            await channel.reset()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, timings.reconnect_backoff[1])
            continue
        backoff = timings.reconnect_backoff[0]
        counters.received += len(batch)
        enqueued = batch[-1].enqueued_time_utc if batch else None
        if enqueued is not None:
            counters.lag = max(0.0, time.time() - enqueued.timestamp())
        fetched(channel, batch)


class LockKeeper:
    """Renews the locks of held copies, so that a slow twin does not run them to the dead-letter queue.

    Each namespace renews in a task of its own, started again only once its last
    one has ended: a namespace that does not answer delays its own renewals only,
    never the other's, nor the shared seen-set's leases (on a loop of their own).
    """

    def __init__(
        self,
        channels: Mapping[str, ReceiveChannel],
        *,
        clock: Callable[[], float],
        renew_ahead: float,
        deadlines: Deadlines,
    ) -> None:
        self._channels = channels
        self._clock = clock
        self._renew_ahead = renew_ahead
        self._deadlines = deadlines
        self._renewing: dict[str, asyncio.Task[None]] = {}

    def renew_due(self, held: list[Copy]) -> dict[str, asyncio.Task[None]]:
        """Start renewing, on each namespace not still busy with its last run, the copies due
        (``locks.due_for_renewal``). Returns the runs it started, by namespace."""
        started: dict[str, asyncio.Task[None]] = {}
        for namespace, due in due_for_renewal(held, self._clock(), self._renew_ahead).items():
            task = self._renewing.get(namespace)
            if task is None or task.done():
                task = asyncio.get_running_loop().create_task(self._renew_on(namespace, due))
                self._renewing[namespace] = started[namespace] = task
        return started

    async def _renew_on(self, namespace: str, copies: list[Copy]) -> None:
        """Renew in turn (settlements on one SDK receiver go one at a time anyway). A
        namespace that does not answer is left until the next turn: a black-holed region
        costs one attempt deadline per turn, not one per message it holds."""
        channel = self._channels[namespace]
        for copy in copies:
            try:
                until = await channel.renew_lock(copy.payload, timeout=self._deadlines.attempt)
            except Exception as exc:
                if classify(exc) is Fault.AVAILABILITY:  # a lost lock is not an outage
                    return
                continue  # this lock is gone (its copy comes back, or its twin is delivered)
            copy.locked_until = until.timestamp() if until is not None else None

    async def close(self) -> None:
        await cancel_and_wait(self._renewing.values())
