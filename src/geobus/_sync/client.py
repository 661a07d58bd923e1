"""The sync ``GeoServiceBusClient``: the async client on a private event loop."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .._closing import Closing
from .._config import ReplicationConfig
from .._engine import client as core
from .._engine import receiver as core_receiver
from .._engine import receiving
from .._engine import sender as core_sender
from .._engine.handler_options import ReceiverOptions
from .._factories import FromConfig, ReceiverFactories, SessionListings
from .fast_lane import FastLane, SyncClients
from .portal import Portal
from .receiver import DedupReceiver
from .sender import ReplicatedSender

if TYPE_CHECKING:
    from .session_receiver import DedupSessionReceiver


async def _build(config: ReplicationConfig) -> core.GeoServiceBusClient:
    return core.GeoServiceBusClient(config)


async def _collect(items: AsyncIterator[str]) -> list[str]:
    return [item async for item in items]


class GeoServiceBusClient(
    FromConfig, ReceiverFactories[DedupReceiver, "DedupSessionReceiver"], SessionListings[list[str]], Closing
):
    """Replicated senders and deduplicating receivers over two namespaces.

    A drop-in for ``azure.servicebus.ServiceBusClient`` in producers and workers:
    ``get_queue_sender``, ``get_topic_sender``, ``get_queue_receiver``,
    ``get_subscription_receiver``, ``list_queue_sessions``, ``close``, context
    manager, each with the SDK's keyword arguments (docs/dropin.md has the table). Build it from a
    ``ReplicationConfig`` (``from_config``), from two connection strings, or from
    two namespaces and an azure-identity credential, sync or async. Thread-safe.

    It runs ``geobus.aio.GeoServiceBusClient`` on a private event loop thread,
    so every call is bounded by its deadline even where the sync SDK would hang;
    its senders' passive sends to a healthy namespace go out from the calling
    thread, under a watchdog (``fast_lane.py``).

    Raises (on construction, as the async client): ``ConfigurationError`` for a
    missing or invalid setting; ``OutboxError`` for an outbox file that is
    damaged, not an outbox, or in use by another process; ``TypeError`` if
    ``config`` is not a ``ReplicationConfig``.
    """

    def __init__(self, config: ReplicationConfig) -> None:
        self.config = config
        self._portal = Portal()
        self._sync_clients = SyncClients(config)  # the senders' fast lanes (fast_lane.py)
        try:
            self._core = self._portal.run(_build(config))
        except BaseException:
            # A bad config or outbox file must not leave the private loop's thread running.
            self._portal.close()
            raise

    def __repr__(self) -> str:
        return repr(self._core)

    @property
    def fully_qualified_namespace(self) -> str:
        """The host of the namespace passive mode sends to first now (it changes on a
        failover); the primary's in active mode. ``config.namespaces`` has both."""
        return self._core.fully_qualified_namespace

    def get_queue_sender(
        self, queue_name: str, *, client_identifier: str | None = None, socket_timeout: float | None = None
    ) -> ReplicatedSender:
        """A ``ReplicatedSender`` to ``queue_name`` on both namespaces.

        ``client_identifier`` and ``socket_timeout`` go to both namespaces' SDK senders
        (without an identifier both get the same generated one). With an outbox, its
        drainer starts now: a producer restarted with a full outbox delivers what it
        kept before anything new.

        Raises:
            RuntimeError: the client is closed. ValueError: a bad ``socket_timeout``.
        """
        sender = self._core.get_queue_sender(queue_name, client_identifier=client_identifier, socket_timeout=socket_timeout)
        return self._started(sender, {"queue": queue_name}, socket_timeout)

    def get_topic_sender(
        self, topic_name: str, *, client_identifier: str | None = None, socket_timeout: float | None = None
    ) -> ReplicatedSender:
        """A ``ReplicatedSender`` to ``topic_name`` on both namespaces; as ``get_queue_sender``."""
        sender = self._core.get_topic_sender(topic_name, client_identifier=client_identifier, socket_timeout=socket_timeout)
        return self._started(sender, {"topic": topic_name}, socket_timeout)

    def _started(
        self, sender: core_sender.ReplicatedSender, entity: dict[str, str], socket_timeout: float | None
    ) -> ReplicatedSender:
        # Its drainer starts now, on the private loop: a producer restarted with a full
        # outbox drains it before (and without) sending anything new.
        self._portal.run(core_sender.start(sender))
        options: dict[str, object] = {"client_identifier": sender.client_identifier}
        if socket_timeout is not None:
            options["socket_timeout"] = socket_timeout
        lane = FastLane(sender, self._portal, self._sync_clients.sender_opener(entity, options))
        return ReplicatedSender(self._portal, sender, lane)

    def _receiver(self, entity: dict[str, str], options: ReceiverOptions) -> DedupReceiver | DedupSessionReceiver:
        """``get_queue_receiver`` and ``get_subscription_receiver`` (``ReceiverFactories``):
        the async client's receiver, in its shell."""
        built = receiving.build_receiver(self._core, entity, options)
        if isinstance(built, core_receiver.DedupReceiver):
            return DedupReceiver(self._portal, built)
        from .session_receiver import DedupSessionReceiver

        return DedupSessionReceiver(self._portal, built)

    def _list_sessions(
        self, entity: dict[str, str], state_updated_after: datetime.datetime | None, timeout: float | None
    ) -> list[str]:
        """``list_queue_sessions`` and ``list_subscription_sessions`` (``SessionListings``):
        the async client's listing, collected on the private loop."""
        return self._portal.run(_collect(receiving.list_sessions(self._core, entity, state_updated_after, timeout)))

    def close(self) -> None:
        """Close every sender and receiver this client handed out, both namespaces'
        clients and the outbox, then stop the private loop. Safe to call twice."""
        try:
            self._portal.run(self._core.close())
        except RuntimeError:
            return  # already closed
        self._portal.close()
        self._sync_clients.close()
