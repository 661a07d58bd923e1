"""A received message as the receiver's ``Deduplicator`` sees it: a ``Copy``, and its key.

The SDK's message is read here and nowhere else: where it came from, its sequence
number, when its lock runs out, and its duplicate key — the value the policy names
(``message_id``, ``subject`` or an application property), spelt with its type by
``key_of``.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable

from azure.servicebus import ServiceBusReceivedMessage

from .._config import DedupKey, DedupPolicy
from .._decisions.dedup import Copy, Key, key_of
from .channels import ReceiveChannel


def lock_time(message: ServiceBusReceivedMessage) -> float | None:
    """When ``message``'s lock runs out (seconds since the epoch), as the SDK last saw it; None without one."""
    try:
        locked_until = message.locked_until_utc
    except Exception:  # receive-and-delete messages have no lock
        return None
    return locked_until.timestamp() if locked_until is not None else None


def copy_of(channel: ReceiveChannel, message: ServiceBusReceivedMessage) -> Copy:
    """``message``, from ``channel``, as the ``Deduplicator`` sees it."""
    return Copy(channel.name, message.sequence_number, lock_time(message), message)


def key_function(policy: DedupPolicy) -> Callable[[ServiceBusReceivedMessage], Key | None]:
    """How a received message's dedup key is read, per the policy: its value spelt with its
    type (``key_of``), None when the message has none. Never raises, whatever it holds."""
    read: Callable[[ServiceBusReceivedMessage], object]
    if policy.key == DedupKey.APPLICATION_PROPERTY:
        read = _property_reader(policy.property_name or "")
    else:
        read = operator.attrgetter("message_id" if policy.key == DedupKey.MESSAGE_ID else "subject")

    def key(message: ServiceBusReceivedMessage) -> Key | None:
        value = read(message)
        return None if value is None else key_of(value)

    return key


def _property_reader(name: str) -> Callable[[ServiceBusReceivedMessage], object]:
    encoded = name.encode()

    def read(message: ServiceBusReceivedMessage) -> object:
        properties = message.application_properties or {}
        # The SDK's pure-Python transport hands names and string values back as bytes (binary
        # values too: it cannot tell them apart). Read a value as the SDK reads a message_id:
        # text when it is UTF-8, bytes otherwise.
        value = properties.get(encoded, properties.get(name))
        if isinstance(value, bytes):
            with contextlib.suppress(UnicodeDecodeError):
                return value.decode()
        return value

    return read
