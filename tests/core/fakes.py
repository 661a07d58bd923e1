"""Fakes at geobus's seam: ``SendChannel`` and ``ReceiveChannel`` without a network.

They keep the seam's contract the way the SDK channels do: every call takes a
``timeout`` and, when the scripted behaviour outlasts it, raises
``NamespaceTimeoutError`` after exactly that long (so "hang" means "hang until
the timeout"). Each fake records what it was asked and what it stored.

Received messages are real ``ServiceBusReceivedMessage`` objects built from an
AMQP message, so the receiver reads ids, subjects, properties, sequence numbers
and lock times through the SDK's own properties.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus._pyamqp.message import Message, Properties
from azure.servicebus.amqp import AmqpAnnotatedMessage
from azure.servicebus.exceptions import MessageNotFoundError

from geobus._errors import NamespaceTimeoutError
from geobus.testing import FakeClock as FakeClock  # the suite's one fake clock, shipped to users


@dataclass(frozen=True)
class Act:
    """One scripted behaviour: take ``delay`` seconds, then succeed or raise ``error``."""

    delay: float = 0.0
    error: BaseException | None = None


def ok(delay: float = 0.0) -> Act:
    return Act(delay=delay)


def fail(error: BaseException) -> Act:
    return Act(error=error)


def hang() -> Act:
    return Act(delay=math.inf)


class Script:
    """Behaviours for successive calls; the last one repeats."""

    def __init__(self, *acts: Act) -> None:
        self._acts = list(acts) or [ok()]

    def next(self) -> Act:
        return self._acts.pop(0) if len(self._acts) > 1 else self._acts[0]

    async def play(self, name: str, timeout: float) -> None:
        act = self.next()
        if act.delay > timeout:
            await asyncio.sleep(timeout)
            raise NamespaceTimeoutError(name, timeout)
        if act.delay:
            await asyncio.sleep(act.delay)
        if act.error is not None:
            raise act.error


@dataclass
class SendCall:
    """One call a send channel received, with loop times it started and ended."""

    method: str
    timeout: float
    started: float
    ended: float | None = None
    message_ids: tuple[str, ...] = ()
    error: BaseException | None = None


def message_id_of(message: Any) -> str:
    """The MessageId of a ServiceBusMessage or an AmqpAnnotatedMessage."""
    if isinstance(message, AmqpAnnotatedMessage):
        value = message.properties.message_id if message.properties else None
    else:
        value = message.message_id
    return value.decode() if isinstance(value, bytes) else str(value)


def _message_ids(payload: Any) -> tuple[str, ...]:
    messages = payload if isinstance(payload, Sequence) else [payload]
    return tuple(message_id_of(m) for m in messages)


class FakeSendChannel:
    """A scriptable ``SendChannel``: ``FakeSendChannel("weu", fail(exc), ok())``."""

    def __init__(self, name: str, *acts: Act) -> None:
        self.name = name
        self.script = Script(*acts)
        self.calls: list[SendCall] = []
        self.stored: list[str] = []  # MessageIds this namespace accepted, in order
        self.warmed = 0
        self.closed = False
        self.batch_limit = 256 * 1024  # what max_batch_size answers (a Standard namespace's)
        self._next_sequence = itertools.count(1)

    def behave(self, *acts: Act) -> None:
        self.script = Script(*acts)

    @property
    def sends(self) -> list[SendCall]:
        return [call for call in self.calls if call.method == "send"]

    async def _run(self, method: str, timeout: float, ids: tuple[str, ...]) -> None:
        loop = asyncio.get_running_loop()
        call = SendCall(method, timeout, loop.time(), message_ids=ids)
        self.calls.append(call)
        try:
            await self.script.play(self.name, timeout)
        except Exception as exc:
            call.error = exc
            raise
        finally:
            call.ended = loop.time()
        self.stored.extend(ids)

    async def send(self, payload: Any, *, timeout: float) -> None:
        await self._run("send", timeout, _message_ids(payload))

    async def schedule(
        self, messages: Sequence[Any], when: datetime.datetime, *, timeout: float
    ) -> list[int]:
        await self._run("schedule", timeout, _message_ids(list(messages)))
        return [next(self._next_sequence) for _ in messages]

    async def cancel_scheduled(self, sequence_numbers: Sequence[int], *, timeout: float) -> None:
        await self._run("cancel_scheduled", timeout, ())

    async def max_batch_size(self, *, timeout: float) -> int:
        await self._run("max_batch_size", timeout, ())
        return self.batch_limit

    async def warm(self, *, timeout: float) -> None:
        self.warmed += 1

    async def probe(self, *, timeout: float) -> None:
        await self._run("probe", timeout, ())

    async def close(self) -> None:
        self.closed = True


_SEQUENCE = b"x-opt-sequence-number"
_LOCKED_UNTIL = b"x-opt-locked-until"


def received_message(
    message_id: str | None,
    *,
    sequence_number: int,
    locked_until: float | None,
    subject: str | None = None,
    application_properties: dict[bytes, Any] | None = None,
    receive_mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
) -> ServiceBusReceivedMessage:
    """A real SDK received message, as the pure-Python transport builds it."""
    annotations: dict[bytes, Any] = {_SEQUENCE: sequence_number}
    if locked_until is not None:
        annotations[_LOCKED_UNTIL] = int(locked_until * 1000)
    amqp = Message(
        data=[b"body"],
        properties=Properties(message_id=message_id, subject=subject),
        application_properties=application_properties,
        message_annotations=annotations,
    )
    return ServiceBusReceivedMessage(amqp, receive_mode=receive_mode, receiver=None)


@dataclass
class Settlement:
    """One settlement a receive channel was asked for."""

    action: str
    message: ServiceBusReceivedMessage
    reason: str | None = None
    description: str | None = None


@dataclass
class _Failures:
    by_action: dict[str, list[BaseException]] = field(default_factory=dict)

    def take(self, action: str) -> BaseException | None:
        queue = self.by_action.get(action)
        return queue.pop(0) if queue else None


class FakeReceiveChannel:
    """A scriptable ``ReceiveChannel`` holding the messages its namespace would hand out.

    ``publish`` stores messages; ``receive`` returns them (waiting up to its
    ``max_wait`` for some to appear). ``receives`` scripts the receive calls
    (fail, hang); ``fail_next`` makes the next settlement of a kind raise.
    ``defer`` keeps a message for ``receive_deferred`` (a fresh copy, locked anew;
    scripted by ``deferred_receives``); ``peek`` browses what is published and
    not settled, from a sequence number (scripted by ``peeks``).
    """

    fully_qualified_namespace: str | None
    entity_path: str | None = "orders"
    client_identifier: str | None = None

    def __init__(
        self,
        name: str,
        *,
        clock: FakeClock,
        lock_duration: float = 60.0,
        receive_mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
    ) -> None:
        self.name = name
        self.clock = clock
        self.lock_duration = lock_duration
        self.receive_mode = receive_mode
        self.receives = Script()
        self.receive_calls = 0
        self.asks: list[int] = []  # max_count of each receive call
        self.settlements: list[Settlement] = []
        self.renewals: list[ServiceBusReceivedMessage] = []
        self.renews = Script()  # scripts the lock renewals (e.g. hang: a black-holed namespace)
        self.renew_attempts = 0
        self.resets = 0
        self.closed = False
        self.published: list[ServiceBusReceivedMessage] = []
        self.fully_qualified_namespace = f"{name}.servicebus.windows.net"
        self.deferred: dict[int, ServiceBusReceivedMessage] = {}  # by sequence number
        self.deferred_receives = Script()
        self.deferred_asks: list[list[int]] = []
        self.peeks = Script()
        self.peek_asks: list[tuple[int, int | None]] = []
        self._pending: list[ServiceBusReceivedMessage] = []
        self._arrival: asyncio.Event | None = None
        self._failures = _Failures()
        self._sequence = itertools.count(1)

    # -- test controls ---------------------------------------------------------------

    def message(self, message_id: str | None, *, sequence_number: int | None = None, **options: Any) -> ServiceBusReceivedMessage:
        """A message as this namespace would hand it out now (locked from the clock)."""
        locked = None if self.receive_mode == ServiceBusReceiveMode.RECEIVE_AND_DELETE else self.clock() + self.lock_duration
        return received_message(
            message_id,
            sequence_number=next(self._sequence) if sequence_number is None else sequence_number,
            locked_until=locked,
            receive_mode=self.receive_mode,
            **options,
        )

    def publish(self, *messages: ServiceBusReceivedMessage | str) -> list[ServiceBusReceivedMessage]:
        """Make messages (or MessageIds, built with ``message``) available to ``receive``."""
        built = [self.message(m) if isinstance(m, str) else m for m in messages]
        self.published.extend(built)
        self._pending.extend(built)
        if self._arrival is not None:
            self._arrival.set()
        return built

    def fail_next(self, action: str, error: BaseException) -> None:
        self._failures.by_action.setdefault(action, []).append(error)

    def settled(self, action: str) -> list[ServiceBusReceivedMessage]:
        return [s.message for s in self.settlements if s.action == action]

    # -- the ReceiveChannel protocol ------------------------------------------------------

    async def receive(self, max_count: int, max_wait: float, *, timeout: float) -> list[ServiceBusReceivedMessage]:
        self.receive_calls += 1
        self.asks.append(max_count)
        await self.receives.play(self.name, timeout)
        if not self._pending:
            self._arrival = asyncio.Event()
            try:
                await asyncio.wait_for(self._arrival.wait(), min(max_wait, timeout))
            except asyncio.TimeoutError:
                return []
        batch, self._pending = self._pending[:max_count], self._pending[max_count:]
        return batch

    async def _settle(self, settlement: Settlement) -> None:
        error = self._failures.take(settlement.action)
        if error is not None:
            raise error
        self.settlements.append(settlement)

    async def complete(self, message: ServiceBusReceivedMessage, *, timeout: float) -> None:
        await self._settle(Settlement("complete", message))

    async def abandon(self, message: ServiceBusReceivedMessage, *, timeout: float) -> None:
        await self._settle(Settlement("abandon", message))

    async def defer(self, message: ServiceBusReceivedMessage, *, timeout: float) -> None:
        await self._settle(Settlement("defer", message))
        self.deferred[message.sequence_number or 0] = message

    async def receive_deferred(
        self, sequence_numbers: Sequence[int], *, timeout: float
    ) -> list[ServiceBusReceivedMessage]:
        self.deferred_asks.append(list(sequence_numbers))
        await self.deferred_receives.play(self.name, timeout)
        missing = [n for n in sequence_numbers if n not in self.deferred]
        if missing:
            raise MessageNotFoundError(message=f"no deferred message {missing} on {self.name}")
        return [self._again(self.deferred[n]) for n in sequence_numbers]

    def _again(self, message: ServiceBusReceivedMessage) -> ServiceBusReceivedMessage:
        """A fresh copy of ``message``, locked anew, as receive-by-sequence-number hands it out."""
        return self.message(
            _text(message.message_id),
            sequence_number=message.sequence_number,
            subject=message.subject,
            application_properties=message.application_properties,
        )

    async def peek(
        self, max_count: int, sequence_number: int | None, *, timeout: float
    ) -> list[ServiceBusReceivedMessage]:
        self.peek_asks.append((max_count, sequence_number))
        await self.peeks.play(self.name, timeout)
        gone = {id(s.message) for s in self.settlements if s.action in ("complete", "dead_letter")}
        start = sequence_number or 1
        live = [m for m in self.published if id(m) not in gone and (m.sequence_number or 0) >= start]
        return [
            received_message(_text(m.message_id), sequence_number=m.sequence_number or 0, locked_until=None)
            for m in sorted(live, key=lambda m: m.sequence_number or 0)[:max_count]
        ]

    async def dead_letter(
        self,
        message: ServiceBusReceivedMessage,
        *,
        reason: str | None,
        description: str | None,
        timeout: float,
    ) -> None:
        await self._settle(Settlement("dead_letter", message, reason, description))

    async def renew_lock(self, message: ServiceBusReceivedMessage, *, timeout: float) -> datetime.datetime:
        self.renew_attempts += 1
        await self.renews.play(self.name, timeout)
        error = self._failures.take("renew_lock")
        if error is not None:
            raise error
        self.renewals.append(message)
        until = datetime.datetime.fromtimestamp(self.clock() + self.lock_duration, datetime.timezone.utc)
        message._expiry = until  # what the SDK's renew_message_lock does to the message
        return until

    async def reset(self) -> None:
        self.resets += 1

    async def close(self) -> None:
        self.closed = True


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def sdk_handler_failed() -> BaseException:
    """What the SDK raises for a message its encoder refuses, made by the SDK itself: its
    encoder's own TypeError, wrapped the way its send path wraps it."""
    from azure.servicebus._pyamqp._encode import encode_message_id
    from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

    try:
        encode_message_id(3.5)  # type: ignore[arg-type]
    except TypeError as exc:
        return PyamqpTransport.create_servicebus_exception(logging.getLogger("test"), exc)
    raise AssertionError("the SDK's encoder took a float id")


async def until_turns(condition: Callable[[], object], turns: int = 1000) -> None:
    """Let the event loop run until ``condition()``; fail after ``turns`` turns of it."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not within {turns} turns of the loop")
