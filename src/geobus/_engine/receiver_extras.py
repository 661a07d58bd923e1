"""Deferral and peek over both namespaces, for both receivers; the rest of ``DedupReceiver``'s SDK surface.

``DeferralsAndPeeks`` is the one home of what a receiver keeps to defer, receive
back and browse across two namespaces: its deferrals (``_decisions/deferrals.py``),
where each peeked message was seen, where the next peek starts. ``DedupReceiver``
(through the ``ReceiverExtras`` mixin below) and ``DedupSessionReceiver`` (through
``sessions/extras.py``) each hold one and settle through their own records; the
duplicate decisions stay with their ``Deduplicator``. What changes over two
namespaces — sequence numbers, deferral handles, peek positions — is in
docs/receiving.md.
"""

from __future__ import annotations

import contextlib
import inspect
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusSubQueue

from .._config import Deadlines
from .._decisions.actions import Deliver
from .._decisions.dedup import Copy, Key
from .._decisions.deferrals import Deferrals
from .channels import ReceiveChannel
from .deferral import Request, fetch_deferred
from .peek import peek_both, starts

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from .dedup_runner import DedupRunner
    from .pumps import ReceiverTimings
    from .receiver import _Delivered


FIRST_SEQUENCE_NUMBER = 1  # Service Bus numbers an entity's messages from 1
# What the SDK's receiver of a sub-queue puts after the entity in its entity_path.
_SUB_QUEUE_SUFFIXES = {
    ServiceBusSubQueue.DEAD_LETTER: "/$DeadLetterQueue",
    ServiceBusSubQueue.TRANSFER_DEAD_LETTER: "/$Transfer/$DeadLetterQueue",
}


def requests_of(sequence_numbers: Request | Sequence[Request]) -> list[Request]:
    """``receive_deferred_messages``' argument as a list: one int or handle, or several."""
    return [sequence_numbers] if isinstance(sequence_numbers, int | str) else list(sequence_numbers)


class DeferralsAndPeeks:
    """One receiver's deferrals and peeks over its namespaces (``channels``).

    ``key`` spells a message's dedup key; ``runner`` is the receiver's ``DedupRunner``,
    told of deferred messages taken back. ``poll_wait``: a management call waits its
    turn behind a receive call in flight on the same SDK receiver, one poll at most.
    ``peek_from_start``: a namespace not peeked yet is peeked from its first message, not
    from the SDK's own start (after the last message its receiver received), which for a
    receiver whose pumps fetch ahead from the start would skip what they fetched.
    Not thread-safe: the receiver's event loop owns it.
    """

    def __init__(
        self,
        channels: Sequence[ReceiveChannel],
        key: Callable[[ServiceBusReceivedMessage], Key | None],
        runner: DedupRunner,
        *,
        already_settled: bool,
        deadlines: Deadlines,
        poll_wait: float,
        peek_from_start: bool = False,
    ) -> None:
        self._channels = list(channels)
        self._channel_of = {c.name: c for c in channels}
        self._key = key
        self._runner = runner
        self._already_settled = already_settled
        self._deadlines = deadlines
        self._poll_wait = poll_wait
        self.book = Deferrals()
        self._peeked: weakref.WeakKeyDictionary[ServiceBusReceivedMessage, dict[str, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._peek_from: dict[str, int] = {}
        self._first_peek = FIRST_SEQUENCE_NUMBER if peek_from_start else None

    def timeout(self, timeout: float | None) -> float:
        """The deadline of a management call (peek, receive deferred) given ``timeout``.

        Raises:
            ValueError: ``timeout`` not above 0.
        """
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be above 0")
        return (timeout if timeout is not None else self._deadlines.attempt) + self._poll_wait

    # -- deferral ------------------------------------------------------------------------------------

    def deferred(self, key: Key | None, copy: Copy) -> None:
        """The application deferred ``copy`` (settled on its namespace)."""
        self.book.deferred(key, copy.namespace, copy.sequence_number or 0)

    def twin_deferred(self, copy: Copy) -> None:
        """A twin is being deferred, as its key's copy was: its number is what receives it back."""
        if copy.sequence_number is not None:
            self.book.twin_deferred(self._key(copy.payload), copy.namespace, copy.sequence_number)

    def settled(self, key: Key | None, copy: Copy) -> None:
        """The application completed or dead-lettered ``copy``: a deferral of it is over."""
        self.book.settled(key, copy.namespace, copy.sequence_number)

    def handle(self, message: ServiceBusReceivedMessage) -> str:
        """``deferral_handle``'s answer. Raises ``ValueError`` for a message not deferred here."""
        deferral = self.book.of_key(self._key(message))
        if deferral is None:
            deferral = self.book.keyless(message.sequence_number or 0)
        if deferral is None:
            raise ValueError("this receiver has not deferred this message")
        return str(deferral.handle)

    async def take_back(
        self,
        sequence_numbers: Request | Sequence[Request],
        *,
        timeout: float,
        deciding: contextlib.AbstractAsyncContextManager[Any] | None = None,
    ) -> list[Deliver]:
        """Receive deferred messages back (``receive_deferred_messages``), each once: the copies to
        hand to the application now (``deciding``: the receiver's lock around its decisions, if it
        has one). Which, and what becomes of the others, is the deduplicator's
        (``Deduplicator.taken_back``): twins are held; copies of a key already completed or
        dead-lettered are settled so and left out; a key another worker has in flight waits.
        Raises as ``fetch_deferred``."""
        requests = requests_of(sequence_numbers)
        if not requests:
            return []
        returned = await fetch_deferred(self._channel_of, requests, self.book, self._key, timeout=timeout)
        if not self._already_settled:
            for group in returned:
                for copy in (group.owner, *group.twins):
                    self.book.deferred(group.key, copy.namespace, copy.sequence_number or 0)
        dedup = self._runner.dedup
        with self._runner.handing_back([group.owner for group in returned]) as handed:
            for group in returned:
                async with deciding or contextlib.nullcontext():
                    await self._runner.run(dedup.taken_back(group.key, group.owner, group.twins))
        for group in returned:
            if dedup.is_processed(group.key):  # settled as its key was: the deferral is over
                self.book.settled(group.key, group.owner.namespace, group.owner.sequence_number)
        return handed

    # -- peek ------------------------------------------------------------------------------------------

    async def peek(
        self, max_message_count: int, sequence_number: int | str | None, *, timeout: float
    ) -> list[ServiceBusReceivedMessage]:
        """``peek_messages``' answer (see there). Raises as it says."""
        if max_message_count < 1:
            raise ValueError("max_message_count must be at least 1")
        start = starts(sequence_number, list(self._channel_of), self._peek_from)
        start = {name: self._first_peek if at is None else at for name, at in start.items()}
        peeked = await peek_both(self._channels, max_message_count, start, self._key, timeout=timeout)
        self._peek_from.update(peeked.next_from)
        for message in peeked.messages:
            self._peeked[message] = peeked.seen_in[id(message)]
        return peeked.messages

    # -- what this receiver saw of a message ----------------------------------------------------------

    def sequence_numbers(self, message: ServiceBusReceivedMessage) -> dict[str, int] | None:
        """Where a peeked ``message`` and its twins were seen, or a deferred one's copies; None if neither."""
        if message in self._peeked:
            return dict(self._peeked[message])
        deferral = self.book.of_key(self._key(message))
        return dict(deferral.sequence_numbers) if deferral is not None else None

    def seen_in(self, message: ServiceBusReceivedMessage) -> str | None:
        """The namespace ``message`` was peeked from, or deferred on; None if neither here."""
        seen = self._peeked.get(message)
        if seen:
            return next(iter(seen))
        deferral = self.book.of_key(self._key(message))
        if deferral is not None and deferral.first[1] == message.sequence_number:
            return deferral.first[0]
        return None


class ReceiverExtras:
    """``DedupReceiver``'s deferral, peek and SDK receiver properties, over both namespaces."""

    # Supplied by DedupReceiver.
    deadlines: Deadlines
    _sub_queue: ServiceBusSubQueue | str | None
    _channels: list[ReceiveChannel]
    _key: Callable[[ServiceBusReceivedMessage], Key | None]
    _runner: DedupRunner
    _timings: ReceiverTimings
    _already_settled: bool
    _closed: bool

    if TYPE_CHECKING:

        def _record(self, message: ServiceBusReceivedMessage) -> _Delivered: ...
        async def _settle(self, record: _Delivered, settlement: Awaitable[None]) -> None: ...
        def _hand_out(self, deliver: Deliver) -> ServiceBusReceivedMessage: ...
        def namespace_of(self, message: ServiceBusReceivedMessage) -> str: ...

    def _init_extras(self) -> None:
        given = [name for c in self._channels if (name := getattr(c, "client_identifier", None))]
        self._identifier: str = given[0] if given else f"DedupReceiver-{uuid.uuid4()}"
        self._extras = DeferralsAndPeeks(
            self._channels,
            self._key,
            self._runner,
            already_settled=self._already_settled,
            deadlines=self.deadlines,
            poll_wait=self._timings.poll_wait,
        )

    # -- the SDK receiver's properties ---------------------------------------------------------

    @property
    def sub_queue(self) -> ServiceBusSubQueue | str | None:
        """The sub-queue read in both namespaces (``DEAD_LETTER``...), None for the entity itself."""
        return self._sub_queue

    @property
    def client_identifier(self) -> str:
        """This receiver's identifier: the ``client_identifier`` it was given (both namespaces'
        SDK receivers carry it), or one made up for it."""
        return self._identifier

    @property
    def fully_qualified_namespace(self) -> str | None:
        """The primary namespace's host name (the first of the two; see ``fully_qualified_namespaces``)."""
        return self._channels[0].fully_qualified_namespace

    @property
    def fully_qualified_namespaces(self) -> dict[str, str | None]:
        """Each namespace's host name, by geobus's name for it (``primary``, ``secondary``)."""
        return {c.name: c.fully_qualified_namespace for c in self._channels}

    @property
    def entity_path(self) -> str | None:
        """The queue, or ``topic/Subscriptions/subscription``: the same in both namespaces. As in the
        SDK, a sub-queue's receiver adds the sub-queue (``q/$DeadLetterQueue``,
        ``q/$Transfer/$DeadLetterQueue``)."""
        path = self._channels[0].entity_path
        if path is None or self._sub_queue is None:
            return path
        return path + _SUB_QUEUE_SUFFIXES[ServiceBusSubQueue(self._sub_queue)]

    @property
    def session(self) -> None:
        """None: this is not a session receiver (as the SDK's non-session receiver answers)."""
        return None

    # -- deferral --------------------------------------------------------------------------------

    async def defer_message(self, message: ServiceBusReceivedMessage) -> None:
        """Defer ``message`` on its namespace; its held twin is deferred at once, and a twin that
        arrives later is deferred when it arrives. Receive it back with
        ``receive_deferred_messages``: its ``sequence_number`` in this receiver, its
        ``deferral_handle`` in any receiver of the same entity.

        Raises:
            As ``complete_message``.
        """
        record = self._record(message)
        await self._settle(record, record.channel.defer(message, timeout=self.deadlines.attempt))
        self._extras.deferred(record.key, record.copy)
        await self._runner.run(self._runner.dedup.deferred(record.key))

    def _twin_deferred(self, copy: Copy) -> None:
        self._extras.twin_deferred(copy)

    def deferral_handle(self, message: ServiceBusReceivedMessage) -> str:
        """The handle that names ``message``'s deferred copies in both namespaces
        (``geobus:primary=12;secondary=9``), for ``receive_deferred_messages`` in any receiver of
        the same entity, in any process. A namespace whose copy this receiver has not seen is
        left out (that copy, when it arrives at another receiver, is not known to be deferred).

        Raises:
            ValueError: this receiver has not deferred ``message``.
        """
        return self._extras.handle(message)

    def sequence_numbers_of(self, message: ServiceBusReceivedMessage) -> dict[str, int]:
        """Each namespace's sequence number of ``message`` as far as this receiver saw its copies:
        for a peeked message, where it and its twins were peeked; for a deferred one, its and its
        twin's deferred copies; for another handed out, its own.

        Raises:
            ValueError: this receiver did not hand out, peek or defer ``message``.
        """
        seen = self._extras.sequence_numbers(message)
        return seen if seen is not None else {self.namespace_of(message): message.sequence_number or 0}

    def _management_deadline(self, timeout: float | None) -> float:
        deadline = self._extras.timeout(timeout)
        if self._closed:
            raise RuntimeError("this DedupReceiver is closed")
        return deadline

    async def receive_deferred_messages(
        self, sequence_numbers: Request | Sequence[Request], *, timeout: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Receive deferred messages back, each once, from whichever namespace answers within
        ``timeout`` (default: ``deadlines.attempt``); both are asked at once.

        ``sequence_numbers``, one or a list: ints as the SDK takes them — the
        ``sequence_number`` of a message this receiver deferred (it knows its twin's), or any
        other, asked of each namespace under its own numbering — and deferral handles
        (``deferral_handle``), mixed as needed. A twin that comes back is held, and settled as
        the message returned is; abandoning that message, or losing its lock, defers it again
        (as Service Bus does), and its twin with it.

        Unlike the SDK, the list can be shorter than what came back: a message whose key was
        already completed or dead-lettered (by this receiver, or by a worker sharing the seen-set)
        is settled the same way and left out; one another worker of the fleet has in flight is
        held, and handed out later by ``receive_messages`` if that worker lets it go.

        Raises:
            ValueError: a malformed handle, an int that names deferrals of two different messages
                (one per namespace: use ``deferral_handle``), or ``timeout`` not above 0.
            TypeError: an item that is neither an int nor a handle.
            RuntimeError: the receiver is closed.
            The SDK's error (``MessageNotFoundError``...) or ``NamespaceTimeoutError``, when no
            namespace returned any of them.
        """
        deadline = self._management_deadline(timeout)
        returned = await self._extras.take_back(sequence_numbers, timeout=deadline)
        return [self._hand_out(deliver) for deliver in returned]

    # -- peek ----------------------------------------------------------------------------------------

    async def peek_messages(
        self, max_message_count: int = 1, *, sequence_number: int | str | None = None, timeout: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Browse both namespaces without taking a lock: up to ``max_message_count`` messages, each
        once (twins by dedup key), in the order they were enqueued. They cannot be settled.

        ``sequence_number``: an int starts each namespace at that number in its own numbering; a
        handle (``geobus:primary=12;secondary=9``) names each one's start; None goes on where
        this receiver's last peek left off in each. ``sequence_numbers_of(message)`` tells where
        a peeked message and its twins were seen, ``namespace_of`` where the copy returned was.
        A namespace that does not answer within ``timeout`` (default: ``deadlines.attempt``) is
        left out of this peek.

        Raises:
            ValueError: ``max_message_count`` below 1, a malformed handle, or ``timeout`` not above 0.
            The first namespace's error, when neither answered.
        """
        deadline = self._management_deadline(timeout)
        return await self._extras.peek(max_message_count, sequence_number, timeout=deadline)

    def _seen_in(self, message: ServiceBusReceivedMessage) -> str | None:
        return self._extras.seen_in(message)

    # -- lock renewal -----------------------------------------------------------------------------

    @staticmethod
    def _renews_on_loop(renewer: Any) -> bool:
        """``renewer`` is an ``azure.servicebus.aio.AutoLockRenewer`` (its ``close`` a coroutine),
        registered with by this async receiver; a sync one is the sync shell's to register with."""
        return renewer is not None and inspect.iscoroutinefunction(getattr(renewer, "close", None))
