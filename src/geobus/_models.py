"""The values geobus hands back, shared by the sync and async faces: results, stats, batches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.amqp import AmqpAnnotatedMessage

from ._decisions.validate import prepare_message

Message = ServiceBusMessage | AmqpAnnotatedMessage


@dataclass(frozen=True)
class SendResult:
    """What ``send_messages`` did.

    ``landed``: the namespaces that stored the message(s); ``missed``: those that
    did not, with their errors; ``failed_over``: passive mode had to use its second
    namespace; ``buffered``: the outbox lanes now keeping the message(s) for later
    (``"any"`` in passive mode, the namespaces that missed their copy in active
    mode) — empty when nothing was buffered.
    """

    landed: tuple[str, ...]
    missed: Mapping[str, BaseException]
    failed_over: bool = False
    buffered: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        """Some namespace stored the message(s) and another did not."""
        return bool(self.missed) and bool(self.landed)


@dataclass(frozen=True)
class SenderStats:
    """A snapshot of a sender's counters."""

    active_namespace: str
    mode: str
    messages_sent: dict[str, int]
    send_failures: dict[str, int]
    failovers: int
    partial_writes: int
    failbacks: int = 0
    breakers: dict[str, str] = field(default_factory=dict)
    buffered: int = 0
    drained: int = 0
    outbox_dead_lettered: int = 0  # refused for good, expired or unreadable, since the outbox opened
    outbox_depth: int = 0
    # Seconds since the oldest message still buffered for this entity was accepted; None when none is.
    outbox_oldest_age: float | None = None


@dataclass(frozen=True)
class ScheduledMessage:
    """A message scheduled on one or both namespaces: each namespace's sequence number."""

    message_id: str
    sequence_numbers: dict[str, int] = field(default_factory=dict)


class ReplicatedMessageBatch:
    """A batch that fits the smaller of the two namespaces' limits.

    ``add_message`` raises ``MessageSizeExceededError`` when the message does not
    fit, exactly as ``ServiceBusMessageBatch.add_message`` does, and
    ``TypeError``/``ValueError`` naming the field for a message ``send_messages``
    would refuse.
    """

    def __init__(self, sizer: ServiceBusMessageBatch) -> None:
        self._sizer = sizer
        self.messages: list[Message] = []

    @property
    def max_size_in_bytes(self) -> int:
        """The most this batch may hold, in bytes: the smaller namespace's limit, or less."""
        return self._sizer.max_size_in_bytes

    @property
    def size_in_bytes(self) -> int:
        """What the messages added so far take, in bytes, as the SDK counts it."""
        return self._sizer.size_in_bytes

    def add_message(self, message: Message) -> None:
        """Add ``message``, or raise and leave the batch as it was (see the class)."""
        prepare_message(message)
        self._sizer.add_message(message)
        self.messages.append(message)

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return f"ReplicatedMessageBatch(count={len(self)}, size={self.size_in_bytes}, max={self.max_size_in_bytes})"


@dataclass(frozen=True)
class ReceiverStats:
    """A snapshot of a receiver's counters."""

    received: dict[str, int]
    delivered: int
    duplicates_absorbed: int
    held: int
    in_flight: int
    evictions: int
    receive_errors: dict[str, int]
    # Per namespace: seconds from the newest received message's enqueued time to its arrival here.
    receive_lag: dict[str, float | None] = field(default_factory=dict)
