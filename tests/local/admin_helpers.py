"""What the administration API and rule routing suites share: one admin client, sync or
async, behind the same awaitable calls; unique entity names; senders and drains.

``test_admin_contract.py`` and ``test_rules_routing.py`` run the real
``ServiceBusAdministrationClient`` of ``azure.servicebus.management`` and of
``azure.servicebus.aio.management`` against a ``LocalNamespace``, built as a user
builds it: ``from_connection_string(ns.connection_string,
connection_verify=ns.certificate_path)`` (azure-servicebus 7.15 dials https:// even
for a development connection string). ``Admin`` makes each test one table of calls
for both: every method is awaited, and a ``list_*`` call gives a list.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.aio.management import (
    ServiceBusAdministrationClient as AsyncAdministrationClient,
)
from azure.servicebus.management import ServiceBusAdministrationClient

from geobus.local import LocalNamespace

from .contract_helpers import NO_KEEP_ALIVE, WITHIN, ids

MODES = ("sync", "async")
_names = itertools.count(1)


def unique(prefix: str) -> str:
    """An entity name no other test of this process uses."""
    return f"{prefix}-{next(_names)}"


class Admin:
    """One administration client, sync or async, with every call awaitable.

    ``await admin.create_queue("q")`` runs the sync client's call in place (it blocks
    the test's loop, which nothing else uses) or awaits the async client's; a
    ``list_*`` call is drained into a list. ``mode`` is ``"sync"`` or ``"async"``.
    """

    def __init__(self, client: Any, mode: str) -> None:
        self.client = client
        self.mode = mode

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            if name.startswith("list_"):
                if hasattr(result, "__aiter__"):
                    return [item async for item in result]
                return list(result)
            return result

        return call

    def __repr__(self) -> str:  # a test id shows the mode, never the connection string
        return f"Admin({self.mode})"


def sync_admin(
    connection_string: str, certificate: str, **options: Any
) -> ServiceBusAdministrationClient:
    return ServiceBusAdministrationClient.from_connection_string(
        connection_string, connection_verify=certificate, **options
    )


@asynccontextmanager
async def open_admin(
    mode: str, ns: LocalNamespace, connection_string: str | None = None, **options: Any
) -> AsyncIterator[Admin]:
    """An ``Admin`` of ``mode`` for ``ns`` (or ``connection_string``), closed on exit."""
    text = connection_string or ns.connection_string
    if mode == "sync":
        with sync_admin(text, ns.certificate_path, **options) as client:
            yield Admin(client, mode)
    else:
        client = AsyncAdministrationClient.from_connection_string(
            text, connection_verify=ns.certificate_path, **options
        )
        async with client:
            yield Admin(client, mode)


# -- messages ------------------------------------------------------------------------------


def message(
    message_id: str, properties: dict[str, Any] | None = None, **system: Any
) -> ServiceBusMessage:
    """A message whose body is its id, with ``properties`` and system fields (``subject``...)."""
    return ServiceBusMessage(
        message_id, message_id=message_id, application_properties=properties, **system
    )


def send(
    ns: LocalNamespace,
    entity: str,
    messages: Sequence[ServiceBusMessage],
    *,
    topic: bool = False,
    scheduled: Sequence[ServiceBusMessage] = (),
) -> None:
    """Send ``messages`` (one batch) and schedule ``scheduled`` an hour ahead, with the
    sync client; returns once the namespace has accepted every one."""
    with ServiceBusClient.from_connection_string(ns.connection_string) as client:
        sender = (
            client.get_topic_sender(entity, **NO_KEEP_ALIVE)
            if topic
            else client.get_queue_sender(entity, **NO_KEEP_ALIVE)
        )
        with sender:
            if messages:
                sender.send_messages(list(messages))
            if scheduled:
                sender.schedule_messages(
                    list(scheduled), datetime.now(timezone.utc) + timedelta(hours=1)
                )


# -- draining a subscription ----------------------------------------------------------------
# Routing happens when the namespace accepts a message, so once ``send`` has returned every
# copy is in place. A drain peeks at everything there (from the first sequence number),
# receives exactly that many with bounded waits, completes them, then peeks again to prove
# the subscription empty. A copy the namespace did not make is simply absent: nothing
# waits for it. Subscriptions are drained side by side (threads, or tasks) because each
# of the SDK's receivers takes about a second to open and close.

_STEP = 1.0  # a receive call's longest wait; loops poll in steps of this
_PEEK = 100  # more than any subscription here holds
_AT_ONCE = 8  # receivers open at the same time


@dataclass
class Drained:
    """What a subscription held: the messages received (and completed), and what a peek
    found afterwards (nothing, unless the namespace misbehaves)."""

    got: list[ServiceBusReceivedMessage]
    left: list[ServiceBusReceivedMessage]


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def received_properties(received: ServiceBusReceivedMessage) -> dict[str, Any]:
    """Application properties with text keys and values (the transport gives bytes)."""
    return {_text(k): _text(v) for k, v in (received.application_properties or {}).items()}


def drain_sync(ns: LocalNamespace, topic: str, subscription: str) -> Drained:
    with ServiceBusClient.from_connection_string(ns.connection_string) as client:
        with client.get_subscription_receiver(topic, subscription) as receiver:
            count = len(receiver.peek_messages(max_message_count=_PEEK, sequence_number=1))
            got: list[ServiceBusReceivedMessage] = []
            deadline = time.monotonic() + WITHIN
            while len(got) < count:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{subscription}: received {ids(got)} of {count}")
                got += receiver.receive_messages(
                    max_message_count=count - len(got), max_wait_time=_STEP
                )
            for each in got:
                receiver.complete_message(each)
            left = receiver.peek_messages(max_message_count=_PEEK, sequence_number=1)
    return Drained(got, left)


async def drain_async(ns: LocalNamespace, topic: str, subscription: str) -> Drained:
    """``drain_sync`` with ``azure.servicebus.aio``."""
    async with AsyncServiceBusClient.from_connection_string(ns.connection_string) as client:
        async with client.get_subscription_receiver(topic, subscription) as receiver:
            peeked = await receiver.peek_messages(max_message_count=_PEEK, sequence_number=1)
            count = len(peeked)
            got: list[ServiceBusReceivedMessage] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WITHIN
            while len(got) < count:
                if loop.time() > deadline:
                    raise AssertionError(f"{subscription}: received {ids(got)} of {count}")
                got += await receiver.receive_messages(
                    max_message_count=count - len(got), max_wait_time=_STEP
                )
            for each in got:
                await receiver.complete_message(each)
            left = await receiver.peek_messages(max_message_count=_PEEK, sequence_number=1)
    return Drained(got, left)


async def drain(mode: str, ns: LocalNamespace, topic: str, subscription: str) -> Drained:
    """One subscription, with the receiver of ``mode``."""
    if mode == "sync":
        return drain_sync(ns, topic, subscription)
    return await drain_async(ns, topic, subscription)


def drain_all(
    mode: str, ns: LocalNamespace, topic: str, subscriptions: Sequence[str]
) -> dict[str, Drained | Exception]:
    """Every subscription, side by side, with the receivers of ``mode``: sync ones on
    threads, async ones as tasks of a loop of their own. A drain that failed gives its
    exception, for the test of that subscription to raise."""
    if mode == "sync":
        with ThreadPoolExecutor(_AT_ONCE) as pool:
            futures = {sub: pool.submit(drain_sync, ns, topic, sub) for sub in subscriptions}
        return {sub: future.exception() or future.result() for sub, future in futures.items()}  # type: ignore[misc]

    async def everything() -> list[Drained | BaseException]:
        gate = asyncio.Semaphore(_AT_ONCE)

        async def one(sub: str) -> Drained:
            async with gate:
                return await drain_async(ns, topic, sub)

        return await asyncio.gather(*(one(sub) for sub in subscriptions), return_exceptions=True)

    results = asyncio.run(everything())
    drained: dict[str, Drained | Exception] = {}
    for sub, result in zip(subscriptions, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result
        drained[sub] = result  # type: ignore[assignment]
    return drained


def outcome(drained: dict[str, Drained | Exception], subscription: str) -> Drained:
    """The drain of ``subscription``, or its failure raised here."""
    result = drained[subscription]
    if isinstance(result, Exception):
        raise result
    return result
