"""One namespace's SDK sender or receiver, with geobus's deadline on every call.

This is geobus's seam with azure-servicebus: ``SendChannel`` and
``ReceiveChannel`` are what the replicated sender and the dedup receiver call,
and what unit tests replace with fakes. Every call takes a timeout and is cut
off when it passes — the SDK's own knobs cannot bound a black-holed connection
(see docs/sdk-behaviour.md); ``bounded.py`` has how, and why a sender keeps a
pool of SDK senders.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.amqp import AmqpAnnotatedMessage
from azure.servicebus.exceptions import MessageLockLostError

from .._config import NamespaceConfig, SdkRetryPolicy
from .._errors import NamespaceTimeoutError
from .bounded import Bounded, HandlerPool, close_quietly, within
from .turns import Turns

_LOG = logging.getLogger("geobus")
_T = TypeVar("_T")

Payload = ServiceBusMessage | AmqpAnnotatedMessage | Sequence[ServiceBusMessage | AmqpAnnotatedMessage]


class SendChannel(Protocol):
    """What the replicator needs of one namespace (the sender and its drainer call it only there)."""

    name: str

    async def send(self, payload: Payload, *, timeout: float) -> None: ...
    async def schedule(
        self, messages: Sequence[Any], when: datetime.datetime, *, timeout: float
    ) -> list[int]: ...
    async def cancel_scheduled(self, sequence_numbers: Sequence[int], *, timeout: float) -> None: ...
    async def max_batch_size(self, *, timeout: float) -> int: ...
    async def warm(self, *, timeout: float) -> None: ...
    async def probe(self, *, timeout: float) -> None: ...
    async def close(self) -> None: ...


class ReceiveChannel(Protocol):
    """What the dedup receiver needs of one namespace.

    ``fully_qualified_namespace`` and ``entity_path`` are the SDK receiver's (None when
    unknown); ``client_identifier`` the identifier its SDK receivers were given, if any.
    """

    name: str
    fully_qualified_namespace: str | None
    entity_path: str | None
    client_identifier: str | None

    async def receive(self, max_count: int, max_wait: float, *, timeout: float) -> list[ServiceBusReceivedMessage]: ...
    async def peek(
        self, max_count: int, sequence_number: int | None, *, timeout: float
    ) -> list[ServiceBusReceivedMessage]: ...
    async def receive_deferred(
        self, sequence_numbers: Sequence[int], *, timeout: float
    ) -> list[ServiceBusReceivedMessage]: ...
    async def complete(self, message: ServiceBusReceivedMessage, *, timeout: float) -> None: ...
    async def abandon(self, message: ServiceBusReceivedMessage, *, timeout: float) -> None: ...
    async def defer(self, message: ServiceBusReceivedMessage, *, timeout: float) -> None: ...
    async def dead_letter(
        self, message: ServiceBusReceivedMessage, *, reason: str | None, description: str | None, timeout: float
    ) -> None: ...
    async def renew_lock(self, message: ServiceBusReceivedMessage, *, timeout: float) -> datetime.datetime: ...
    async def reset(self) -> None: ...
    async def close(self) -> None: ...


class _AsyncCredential:
    """Lets a sync azure-identity credential serve the async core (token calls run in a thread)."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if close is not None:
            await asyncio.to_thread(close)

    async def __aenter__(self) -> _AsyncCredential:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


def _credential(name_or_object: Any) -> Any:
    if not isinstance(name_or_object, str):
        if inspect.iscoroutinefunction(getattr(name_or_object, "get_token", None)):
            return name_or_object
        return _AsyncCredential(name_or_object)
    # The sync credentials, each token call in a thread: azure.identity.aio would need
    # aiohttp, which neither geobus nor azure-identity installs.
    return _AsyncCredential(identity_credential(name_or_object))


def identity_credential(name: str) -> Any:
    """The (sync) azure-identity credential a ``credential`` setting names."""
    import azure.identity as identity

    factories: dict[str, Callable[[], Any]] = {
        "default": identity.DefaultAzureCredential,
        "managed_identity": identity.ManagedIdentityCredential,
        "workload_identity": identity.WorkloadIdentityCredential,
        "cli": identity.AzureCliCredential,
        "environment": identity.EnvironmentCredential,
    }
    return factories[name]()


def client_options(namespace: NamespaceConfig, retry: SdkRetryPolicy, try_timeout: float) -> dict[str, Any]:
    """The SDK client options for ``namespace``: geobus's retry settings, then the namespace's own."""
    return {
        "retry_total": retry.total,
        "retry_backoff_factor": retry.backoff_factor,
        "retry_backoff_max": retry.backoff_max,
        "retry_mode": retry.mode,
        "try_timeout": try_timeout,
        **namespace.client_options,
    }


def build_client(namespace: NamespaceConfig, retry: SdkRetryPolicy, try_timeout: float) -> ServiceBusClient:
    """An aio ServiceBusClient for ``namespace`` with geobus's retry settings."""
    options = client_options(namespace, retry, try_timeout)
    if namespace.connection_string is not None:
        return ServiceBusClient.from_connection_string(namespace.connection_string, **options)
    assert namespace.fully_qualified_namespace is not None
    return ServiceBusClient(namespace.fully_qualified_namespace, _credential(namespace.credential), **options)


class SdkSendChannel:
    """A namespace's queue or topic sender (azure.servicebus.aio).

    ``options`` go to each SDK sender it opens (``client_identifier``, ``socket_timeout``).
    """

    def __init__(
        self,
        name: str,
        client: ServiceBusClient,
        *,
        queue: str | None = None,
        topic: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if (queue is None) == (topic is None):
            raise ValueError("a send channel needs a queue or a topic")
        self.name = name
        self.fully_qualified_namespace: str | None = getattr(client, "fully_qualified_namespace", None)
        sender_options = dict(options or {})

        def open_handler() -> ServiceBusSender:
            if queue is not None:
                return client.get_queue_sender(queue, **sender_options)
            assert topic is not None
            return client.get_topic_sender(topic, **sender_options)

        self._open_handler = open_handler
        self._bounded = HandlerPool(name, open_handler)
        self._probes: set[asyncio.Task[None]] = set()

    async def send(self, payload: Payload, *, timeout: float) -> None:
        await self._bounded.call(lambda sender: sender.send_messages(payload), timeout)

    async def schedule(
        self, messages: Sequence[Any], when: datetime.datetime, *, timeout: float
    ) -> list[int]:
        return await self._bounded.call(lambda sender: sender.schedule_messages(list(messages), when), timeout)

    async def cancel_scheduled(self, sequence_numbers: Sequence[int], *, timeout: float) -> None:
        await self._bounded.call(lambda sender: sender.cancel_scheduled_messages(list(sequence_numbers)), timeout)

    async def max_batch_size(self, *, timeout: float) -> int:
        async def size(sender: ServiceBusSender) -> int:
            return (await sender.create_message_batch()).max_size_in_bytes

        return await self._bounded.call(size, timeout)

    async def warm(self, *, timeout: float) -> None:
        """Open the sender's link now, so a failover does not pay for it."""
        await self._bounded.call(lambda sender: sender.__aenter__(), timeout)

    async def probe(self, *, timeout: float) -> None:
        """Open a fresh link (its own connection) and close it: does the namespace take senders now?

        The channel's own sender is left alone: it may be one the outage left wedged.

        Raises:
            NamespaceTimeoutError: no answer within ``timeout``.
            ServiceBusError: the namespace refused.
        """
        sender = self._open_handler()
        try:
            await within(timeout, sender.create_message_batch())
        except asyncio.TimeoutError as exc:
            raise NamespaceTimeoutError(self.name, timeout) from exc
        finally:
            # A wedged link can take its own time to close: not on the prober's clock.
            task = asyncio.get_running_loop().create_task(close_quietly(sender, self.name))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    async def close(self) -> None:
        await self._bounded.close()
        if self._probes:
            await asyncio.gather(*self._probes, return_exceptions=True)


class SdkReceiveChannel:
    """A namespace's queue or subscription receiver (azure.servicebus.aio)."""

    def __init__(
        self,
        name: str,
        client: ServiceBusClient,
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
        receive_mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
        prefetch_count: int = 0,
        sub_queue: ServiceBusSubQueue | str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if queue is None and (topic is None or subscription is None):
            raise ValueError("a receive channel needs a queue, or a topic and a subscription")
        self.name = name
        self.sub_queue = sub_queue
        self.fully_qualified_namespace: str | None = getattr(client, "fully_qualified_namespace", None)
        self.entity_path: str | None = queue if queue is not None else f"{topic}/Subscriptions/{subscription}"
        self.client_identifier: str | None = (options or {}).get("client_identifier")
        kwargs: dict[str, Any] = {
            **(options or {}),
            "receive_mode": receive_mode,
            "prefetch_count": prefetch_count,
            "sub_queue": sub_queue,
        }

        def open_handler() -> ServiceBusReceiver:
            if queue is not None:
                return client.get_queue_receiver(queue, **kwargs)
            assert topic is not None and subscription is not None
            return client.get_subscription_receiver(topic, subscription, **kwargs)

        self._bounded = Bounded(name, open_handler)
        self._settling = Turns()

    async def receive(self, max_count: int, max_wait: float, *, timeout: float) -> list[ServiceBusReceivedMessage]:
        return await self._bounded.call(
            lambda receiver: receiver.receive_messages(max_message_count=max_count, max_wait_time=max_wait),
            timeout,
        )

    async def peek(
        self, max_count: int, sequence_number: int | None, *, timeout: float
    ) -> list[ServiceBusReceivedMessage]:
        """Browse without locking, from ``sequence_number`` (None: where the SDK receiver left off)."""
        return await self._bounded.call(
            lambda receiver: receiver.peek_messages(max_count, sequence_number=sequence_number or 0),
            timeout,
        )

    async def receive_deferred(
        self, sequence_numbers: Sequence[int], *, timeout: float
    ) -> list[ServiceBusReceivedMessage]:
        return await self._bounded.call(
            lambda receiver: receiver.receive_deferred_messages(list(sequence_numbers)), timeout
        )

    async def _settle(self, message: ServiceBusReceivedMessage, action: Callable[[Any], Awaitable[Any]], timeout: float) -> Any:
        # A message is settled through the SDK receiver that received it, even if that
        # receiver has since been replaced.
        receiver = getattr(message, "_receiver", None) or self._bounded.handler

        async def one_at_a_time() -> Any:
            async with self._settling.turn():  # the application's before geobus's own (turns.py)
                return await action(receiver)

        try:
            return await within(timeout, one_at_a_time())
        except asyncio.TimeoutError as exc:
            raise NamespaceTimeoutError(self.name, timeout) from exc
        except ValueError as exc:
            if "shutdown" not in str(exc) and "closed" not in str(exc):
                raise
            # Its receiver was dropped after a fault: the lock cannot be used any more,
            # which is what MessageLockLostError tells a worker.
            raise MessageLockLostError(
                message=f"the receiver of this message on {self.name!r} was closed after a fault"
            ) from exc

    async def complete(self, message: ServiceBusReceivedMessage, *, timeout: float) -> None:
        await self._settle(message, lambda r: r.complete_message(message), timeout)

    async def abandon(self, message: ServiceBusReceivedMessage, *, timeout: float) -> None:
        await self._settle(message, lambda r: r.abandon_message(message), timeout)

    async def defer(self, message: ServiceBusReceivedMessage, *, timeout: float) -> None:
        await self._settle(message, lambda r: r.defer_message(message), timeout)

    async def dead_letter(
        self,
        message: ServiceBusReceivedMessage,
        *,
        reason: str | None,
        description: str | None,
        timeout: float,
    ) -> None:
        await self._settle(
            message,
            lambda r: r.dead_letter_message(message, reason=reason, error_description=description),
            timeout,
        )

    async def renew_lock(self, message: ServiceBusReceivedMessage, *, timeout: float) -> datetime.datetime:
        result: datetime.datetime = await self._settle(message, lambda r: r.renew_message_lock(message), timeout)
        return result

    async def reset(self) -> None:
        await self._bounded.reset()

    async def close(self) -> None:
        await self._bounded.close()
