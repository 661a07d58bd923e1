"""The sync ``GeoServiceBusClient``: the async client on a private event loop."""

from __future__ import annotations

from typing import Any

from .._closing import Closing
from .._config import ReplicationConfig
from .._engine import client as core
from .._engine import sender as core_sender
from .._factories import FromConfig
from .portal import Portal
from .receiver import DedupReceiver
from .sender import ReplicatedSender


async def _build(config: ReplicationConfig) -> core.GeoServiceBusClient:
    return core.GeoServiceBusClient(config)


class GeoServiceBusClient(FromConfig, Closing):
    """Replicated senders and deduplicating receivers over two namespaces.

    A drop-in for ``azure.servicebus.ServiceBusClient`` in producers and workers:
    ``get_queue_sender``, ``get_topic_sender``, ``get_queue_receiver``,
    ``get_subscription_receiver``, ``close``, context manager. Build it from a
    ``ReplicationConfig`` (``from_config``), from two connection strings, or from
    two namespaces and an azure-identity credential, sync or async. Thread-safe.

    It runs ``geobus.aio.GeoServiceBusClient`` on a private event loop thread,
    so every call is bounded by its deadline even where the sync SDK would hang.

    Raises (on construction, as the async client): ``ConfigurationError`` for a
    missing or invalid setting; ``OutboxError`` for an outbox file that is
    damaged, not an outbox, or in use by another process; ``TypeError`` if
    ``config`` is not a ``ReplicationConfig``.
    """

    def __init__(self, config: ReplicationConfig) -> None:
        self.config = config
        self._portal = Portal()
        try:
            self._core = self._portal.run(_build(config))
        except BaseException:
            # A bad config or outbox file must not leave the private loop's thread running.
            self._portal.close()
            raise

    def __repr__(self) -> str:
        return repr(self._core)

    def get_queue_sender(self, queue_name: str) -> ReplicatedSender:
        """A ``ReplicatedSender`` to ``queue_name`` on both namespaces.

        With an outbox, its drainer starts now: a producer restarted with a full
        outbox delivers what it kept before anything new.

        Raises:
            RuntimeError: the client is closed.
        """
        return self._started(self._core.get_queue_sender(queue_name))

    def get_topic_sender(self, topic_name: str) -> ReplicatedSender:
        """A ``ReplicatedSender`` to ``topic_name`` on both namespaces; as ``get_queue_sender``."""
        return self._started(self._core.get_topic_sender(topic_name))

    def _started(self, sender: core_sender.ReplicatedSender) -> ReplicatedSender:
        # Its drainer starts now, on the private loop: a producer restarted with a full
        # outbox drains it before (and without) sending anything new.
        self._portal.run(core_sender.start(sender))
        return ReplicatedSender(self._portal, sender)

    def get_queue_receiver(self, queue_name: str, **options: Any) -> DedupReceiver:
        """A ``DedupReceiver`` of ``queue_name`` on both namespaces.

        ``options`` as ``geobus.aio.GeoServiceBusClient.get_queue_receiver``:
        ``receive_mode`` (peek-lock by default), ``max_wait_time`` (seconds without
        a message before iteration ends; None: never), ``prefetch``.

        Raises:
            RuntimeError: the client is closed. ValueError: a bad option.
        """
        return DedupReceiver(self._portal, self._core.get_queue_receiver(queue_name, **options))

    def get_subscription_receiver(self, topic_name: str, subscription_name: str, **options: Any) -> DedupReceiver:
        """A ``DedupReceiver`` of ``subscription_name`` of ``topic_name`` on both namespaces;
        options and errors as ``get_queue_receiver``."""
        return DedupReceiver(
            self._portal, self._core.get_subscription_receiver(topic_name, subscription_name, **options)
        )

    def close(self) -> None:
        """Close every sender and receiver this client handed out, both namespaces'
        clients and the outbox, then stop the private loop. Safe to call twice."""
        try:
            self._portal.run(self._core.close())
        except RuntimeError:
            return  # already closed
        self._portal.close()
