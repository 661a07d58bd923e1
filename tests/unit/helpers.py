"""Builders shared by the unit tests: encoded messages, stored messages, a change recorder."""

from __future__ import annotations

from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from proton import Message, symbol, timestamp

from geobus.local._broker import Broker
from geobus.local._codec import ParsedMessage, parse_message
from geobus.local._entities import MessageLog, MessageState, StoredMessage

START = 1_700_000_000.0  # where the ``clock`` fixture's FakeClock starts


class ChangeRecorder:
    """The ``on_change`` callback of a ``MessageLog``: remembers (path, seq, deleted)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bool]] = []

    def __call__(self, log: MessageLog, message: StoredMessage, deleted: bool) -> None:
        self.seen.append((log.path, message.seq, deleted))

    def take(self) -> list[tuple[str, int, bool]]:
        seen, self.seen = self.seen, []
        return seen


def encode(
    body: Any = "body",
    *,
    message_id: Any = None,
    ttl: float | None = None,
    scheduled_at: float | None = None,
    properties: dict[str, Any] | None = None,
    annotations: dict[str, Any] | None = None,
) -> bytes:
    """One message encoded by proton, as a client would put it on the wire."""
    notes = {symbol(k): v for k, v in (annotations or {}).items()}
    if scheduled_at is not None:
        notes[symbol("x-opt-scheduled-enqueue-time")] = timestamp(int(scheduled_at * 1000))
    message = Message(body=body, id=message_id, properties=properties, annotations=notes or None)
    if ttl is not None:
        message.ttl = ttl
    return bytes(message.encode())


def parsed(body: Any = "body", **options: Any) -> ParsedMessage:
    """``encode(...)`` then ``parse_message``: what the broker receives."""
    return parse_message(encode(body, **options))


def stored(
    seq: int,
    *,
    now: float = START,
    expires_at: float | None = None,
    scheduled_at: float | None = None,
    **options: Any,
) -> StoredMessage:
    """A message as a log keeps it (scheduled when ``scheduled_at`` is given)."""
    message = parsed(f"m{seq}", message_id=f"id-{seq}", **options)
    return StoredMessage(
        seq=seq,
        header=message.header,
        annotations=message.annotations,
        rest=message.rest,
        message_id=message.message_id,
        enqueued_at=now,
        expires_at=expires_at,
        state=MessageState.SCHEDULED if scheduled_at is not None else MessageState.ACTIVE,
        scheduled_at=scheduled_at,
    )


def lock(log: MessageLog, now: float = START) -> StoredMessage:
    """Peek-lock the next ready message, which the test expects to exist."""
    message = log.take(now, peek_lock=True)
    assert message is not None and message.lock_token is not None
    return message


def drain(log: MessageLog, now: float = START) -> list[int]:
    """Receive-and-delete everything ready; the sequence numbers in delivery order."""
    taken = []
    while (message := log.take(now, peek_lock=False)) is not None:
        taken.append(message.seq)
    return taken


def queue(broker: Broker, name: str = "q") -> MessageLog:
    """The queue a sender to ``name`` writes to (created on first use)."""
    target = broker.send_target(name)
    assert isinstance(target, MessageLog)
    return target


def body_of(message: StoredMessage) -> Any:
    """The body the client would read back from a stored message."""
    decoded = Message()
    decoded.decode(message.rest)
    return decoded.body


def app_properties_of(message: StoredMessage) -> dict[str, Any]:
    """The application properties the client would read back from a stored message."""
    decoded = Message()
    decoded.decode(message.rest)
    return dict(decoded.properties or {})


def sdk_encode(message: ServiceBusMessage) -> bytes:
    """A message encoded exactly as azure-servicebus puts it on the wire."""
    outgoing = PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message)
    return bytes(encode_payload(bytearray(), outgoing))


def sdk_batch(*messages: ServiceBusMessage) -> bytes:
    """A ``ServiceBusMessageBatch`` transfer: data sections, each an encoded message."""
    batch = ServiceBusMessageBatch()
    for message in messages:
        batch.add_message(message)
    return bytes(encode_payload(bytearray(), batch._message))
