"""Closing a client closes every sender and receiver it handed out, sync and async."""

from __future__ import annotations

import asyncio
import threading

import pytest
from azure.servicebus import ServiceBusMessage

import geobus
import geobus.aio
from geobus.testing import NamespacePair

from .helpers import FAST, QUEUE


class TestAsyncClientClose:
    """``await client.close()`` ends what the application left open, and leaves no task."""

    async def test_open_receiver_and_sender_are_closed_with_no_task_left(
        self, pair: NamespacePair
    ) -> None:
        client = geobus.aio.GeoServiceBusClient(pair.config(**FAST))
        sender = client.get_queue_sender(QUEUE)
        receiver = client.get_queue_receiver(QUEUE, max_wait_time=0.5)
        await sender.send_messages(ServiceBusMessage("hello"))
        # A receive starts the receiver's pumps and its lock keeper.
        (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
        await receiver.complete_message(message)
        before = asyncio.all_tasks() - {asyncio.current_task()}
        assert before, "the receiver's background tasks should be running"

        await client.close()

        assert asyncio.all_tasks() - {asyncio.current_task()} == set()
        with pytest.raises(RuntimeError, match="closed"):
            await receiver.receive_messages(max_message_count=1, max_wait_time=0.1)
        with pytest.raises(RuntimeError, match="closed"):
            await sender.send_messages(ServiceBusMessage("late"))
        await receiver.close()  # closing again after the client is harmless
        await sender.close()


class TestSyncClientClose:
    """``client.close()`` ends the private loop after closing what the application left open."""

    def test_open_receiver_is_closed_and_late_closes_are_harmless(
        self, pair: NamespacePair
    ) -> None:
        client = geobus.GeoServiceBusClient(pair.config(**FAST))
        sender = client.get_queue_sender(QUEUE)
        receiver = client.get_queue_receiver(QUEUE, max_wait_time=0.5)
        sender.send_messages(ServiceBusMessage("hello"))
        (message,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(message)
        core = receiver._core

        client.close()

        assert core._closed, "the receiver the application left open was not closed"
        assert not [t for t in threading.enumerate() if t.name == "geobus-loop"]
        with pytest.raises(RuntimeError, match="closed"):
            receiver.receive_messages(max_message_count=1, max_wait_time=0.1)
        # As with azure-servicebus: closing a sender or receiver after its client is a no-op.
        receiver.close()
        sender.close()
        client.close()
