"""Typed keys through the real azure-servicebus client, two local namespaces, a shared SQLite seen-set.

The SDK hands a message_id back with its AMQP type (``42`` sent as a ulong comes
back as the int 42, a UUID as a UUID, a string as a str), so ``42`` and ``"42"``,
a UUID and its string, are different messages: each reaches the handler once and
its twin is absorbed, whichever was handled first. (``b"42"`` is the exception:
the SDK decodes an AMQP binary like a string, so it comes back as ``"42"``.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage

import geobus
from geobus.local import LocalNamespace

UUID_42 = uuid.UUID(int=42)
WITHIN = 15.0  # seconds; a bound on a poll, not an expected time


def _send_to_both(namespaces: tuple[LocalNamespace, ...], message_id: object) -> None:
    """One message on both namespaces, as a replicating sender leaves it (plain SDK senders)."""
    for namespace in namespaces:
        with ServiceBusClient.from_connection_string(namespace.connection_string) as client:
            with client.get_queue_sender("orders") as sender:
                sender.send_messages(ServiceBusMessage("body", message_id=message_id))  # type: ignore[arg-type]


def _poll(receiver: geobus.DedupReceiver, until: Callable[[list[ServiceBusReceivedMessage]], bool],
          what: str) -> list[ServiceBusReceivedMessage]:
    """Receive (which also takes in and settles twins) until ``until(received)`` holds."""
    received: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + WITHIN
    while not until(received):
        assert time.monotonic() < deadline, f"not within {WITHIN} s: {what}; got {received}, {receiver.stats}"
        received += receiver.receive_messages(1, max_wait_time=0.2)
    return received


@pytest.mark.parametrize(("first_id", "second_id"), [(42, "42"), ("42", 42), (UUID_42, str(UUID_42))], ids=repr)
def test_a_look_alike_sent_after_the_first_was_handled_reaches_the_handler(
    namespace_factory: Callable[..., LocalNamespace], tmp_path: Path, first_id: object, second_id: object
) -> None:
    namespaces = (namespace_factory(), namespace_factory())
    config = geobus.ReplicationConfig.from_connection_strings(
        *(namespace.connection_string for namespace in namespaces),
        dedup=geobus.DedupPolicy(store=f"sqlite:{tmp_path / 'seen.db'}"),
    )
    handled: list[object] = []
    with geobus.GeoServiceBusClient(config) as client, client.get_queue_receiver("orders") as receiver:
        for message_id in (first_id, second_id):
            _send_to_both(namespaces, message_id)
            [message] = _poll(receiver, bool, f"{message_id!r} handed to the application")
            handled.append(message.message_id)
            receiver.complete_message(message)
            assert _poll(receiver, lambda _: receiver.stats.duplicates_absorbed == len(handled),
                         f"the twin of {message_id!r} absorbed") == []
    assert [(value, type(value)) for value in handled] == [(first_id, type(first_id)), (second_id, type(second_id))]
    assert all(namespace.counts().get("orders", 0) == 0 for namespace in namespaces)  # every copy settled
