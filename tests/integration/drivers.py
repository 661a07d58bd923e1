"""One async face over geobus's sync and async clients, so each test is written once.

``AsyncDriver`` hands out ``geobus.aio.GeoServiceBusClient`` itself. ``SyncDriver``
hands out ``geobus.GeoServiceBusClient`` behind thin wrappers that make each sync
call in a worker thread (``asyncio.to_thread``) — the sync API is thread-safe, and
a thread is where a sync producer or worker runs it. A sync call that hung would
hang its thread and show up as a send over its deadline or a test timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Protocol

import pytest
from azure.servicebus import ServiceBusReceivedMessage

import geobus
import geobus.aio


class Driver(Protocol):
    """Builds a geobus client for a ``ReplicationConfig``, behind one async face."""

    name: str

    def client(self, config: geobus.ReplicationConfig) -> Any: ...


class AsyncDriver:
    """``geobus.aio`` as it is."""

    name = "async"

    def client(self, config: geobus.ReplicationConfig) -> geobus.aio.GeoServiceBusClient:
        return geobus.aio.GeoServiceBusClient(config)


class SyncDriver:
    """``geobus`` (sync), each call made from a worker thread."""

    name = "sync"

    def client(self, config: geobus.ReplicationConfig) -> _ThreadedClient:
        return _ThreadedClient(geobus.GeoServiceBusClient(config))


# Both faces, named: the ``driver`` fixture's params here (conftest.py), and
# ``@pytest.mark.parametrize("driver", DRIVERS)`` elsewhere.
DRIVERS = [pytest.param(SyncDriver(), id="sync"), pytest.param(AsyncDriver(), id="async")]


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


class _Threaded:
    """``async with`` over a sync object's own ``with``."""

    _sync: Any

    async def __aenter__(self) -> Any:
        await _call(self._sync.__enter__)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _call(self._sync.__exit__, exc_type, exc, tb)

    async def close(self) -> None:
        await _call(self._sync.close)


class _ThreadedClient(_Threaded):
    def __init__(self, client: geobus.GeoServiceBusClient) -> None:
        self._sync = client

    def get_queue_sender(self, queue_name: str) -> _ThreadedSender:
        return _ThreadedSender(self._sync.get_queue_sender(queue_name))

    def get_topic_sender(self, topic_name: str) -> _ThreadedSender:
        return _ThreadedSender(self._sync.get_topic_sender(topic_name))

    def get_queue_receiver(self, queue_name: str, **options: Any) -> _ThreadedReceiver:
        return _ThreadedReceiver(self._sync.get_queue_receiver(queue_name, **options))

    def get_subscription_receiver(self, topic: str, subscription: str, **options: Any) -> _ThreadedReceiver:
        return _ThreadedReceiver(self._sync.get_subscription_receiver(topic, subscription, **options))


class _ThreadedSender(_Threaded):
    def __init__(self, sender: geobus.ReplicatedSender) -> None:
        self._sync = sender

    @property
    def active_namespace(self) -> str:
        return self._sync.active_namespace

    @property
    def stats(self) -> geobus.SenderStats:
        return self._sync.stats

    async def send_messages(self, message: Any, **options: Any) -> geobus.SendResult:
        return await _call(self._sync.send_messages, message, **options)

    async def create_message_batch(self, *args: Any, **options: Any) -> geobus.ReplicatedMessageBatch:
        return await _call(self._sync.create_message_batch, *args, **options)


class _ThreadedReceiver(_Threaded):
    def __init__(self, receiver: geobus.DedupReceiver) -> None:
        self._sync = receiver

    @property
    def stats(self) -> geobus.ReceiverStats:
        return self._sync.stats

    def namespace_of(self, message: ServiceBusReceivedMessage) -> str:
        return self._sync.namespace_of(message)

    async def receive_messages(self, *args: Any, **options: Any) -> list[ServiceBusReceivedMessage]:
        return await _call(self._sync.receive_messages, *args, **options)

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        await _call(self._sync.complete_message, message)

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        await _call(self._sync.abandon_message, message)

    def __aiter__(self) -> AsyncIterator[ServiceBusReceivedMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ServiceBusReceivedMessage]:
        iterator = iter(self._sync)  # the sync receiver's own ``for message in receiver``
        done = object()
        while (message := await _call(next, iterator, done)) is not done:
            yield message
