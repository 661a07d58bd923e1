"""What a send carries: the messages ``send_messages`` was given, checked and stamped.

A message of a session is stamped with its place in the sender's order for that
session (``session_stamps``) before any copy is sent, so both copies, and an
outbox's re-send, carry the same stamp.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.amqp import AmqpAnnotatedMessage

from .._decisions.session_stamps import SessionStamper
from .._decisions.validate import prepare_message
from .._models import ReplicatedMessageBatch

Message = ServiceBusMessage | AmqpAnnotatedMessage


def payload(message: Any, stamper: SessionStamper) -> tuple[Any, list[Message]]:
    """Validate what ``send_messages`` was given; return what to send and the messages in it.

    The messages are stamped only once all are valid: a list with one bad message
    takes no places in its sessions' order.
    """
    if isinstance(message, ReplicatedMessageBatch):
        messages = list(message.messages)
        sent: Any = messages
    elif isinstance(message, ServiceBusMessageBatch):
        raise TypeError("use ReplicatedSender.create_message_batch(): an SDK batch is bound to one namespace")
    elif isinstance(message, (ServiceBusMessage, AmqpAnnotatedMessage)):
        prepare_message(message)
        sent, messages = message, [message]
    elif isinstance(message, Iterable) and not isinstance(message, (str, bytes, dict)):
        messages = list(message)
        for index, item in enumerate(messages):
            prepare_message(item, field=f"messages[{index}].")
        sent = messages
    else:
        raise TypeError(f"cannot send {type(message).__name__}; expected a message, a list of them, or a batch")
    for item in messages:
        stamper.stamp(item)  # a batch's messages were stamped as they were added
    return sent, messages


class StampingBatch(ReplicatedMessageBatch):
    """A ``ReplicatedMessageBatch`` whose session messages take their places as they are added,
    so that the stamp counts in the batch's size."""

    def __init__(self, sizer: ServiceBusMessageBatch, stamper: SessionStamper) -> None:
        super().__init__(sizer)
        self._stamper = stamper

    def add_message(self, message: Message) -> None:
        prepare_message(message)  # a message that would be refused takes no place
        stamp = self._stamper.stamp(message)
        try:
            super().add_message(message)
        except BaseException:
            if stamp is not None:
                self._stamper.unstamp(message, stamp)
            raise
