"""The async ``GeoServiceBusClient``: two namespaces behind the shape of ``ServiceBusClient``."""

from __future__ import annotations

import asyncio
import datetime
import logging
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from azure.servicebus.aio import ServiceBusClient

from .. import _metrics
from .._closing import AsyncClosing
from .._config import FailbackMode, NamespaceConfig, ReplicationConfig, ReplicationMode
from .._decisions.health import Health
from .._factories import FromConfig, ReceiverFactories, SessionListings
from .._storage.outbox import Outbox
from .bounded import close_quietly
from .channels import SdkSendChannel, build_client
from .drainer import AsyncOutbox
from .handler_options import ReceiverOptions, handler_options
from .receiver import DedupReceiver
from .receiving import build_receiver, list_sessions
from .replicator import Replicator
from .sender import ReplicatedSender
from .tasks import cancel_and_wait

if TYPE_CHECKING:
    from .sessions.receiver import DedupSessionReceiver

_LOG = logging.getLogger("geobus")


class GeoServiceBusClient(
    FromConfig,
    ReceiverFactories[DedupReceiver, "DedupSessionReceiver"],
    SessionListings[AsyncIterator[str]],
    AsyncClosing,
):
    """Replicated senders and deduplicating receivers over two namespaces (``geobus.aio``).

    Build it from a ``ReplicationConfig`` (``from_config``), from two connection
    strings, or from two namespaces and an azure-identity credential. Like
    ``ServiceBusClient``, it is a context manager, and the senders and receivers
    it hands out share its two connections' clients.

    The client owns what its senders share: each namespace's health (breaker,
    passive roles, failback probe, operator override) and the outbox file.

    Raises:
        ConfigurationError: a setting is missing or invalid (on construction).
        OutboxError: the configured outbox file is damaged, not an outbox, or in
            use by another process (on construction).
    """

    def __init__(self, config: ReplicationConfig) -> None:
        if not isinstance(config, ReplicationConfig):
            raise TypeError("GeoServiceBusClient takes a ReplicationConfig")
        self.config = config
        self._clients: dict[str, ServiceBusClient] = {}
        self.health = Health(
            [ns.name or "" for ns in config.namespaces],
            breaker=config.breaker,
            failback=config.failback,
            override=config.override,
        )
        self._outbox = AsyncOutbox(Outbox(config.outbox)) if config.outbox.enabled else None
        # Weak: a sender or receiver the application dropped is not kept alive by the client,
        # but one it still holds is closed with the client, as the SDK's client does.
        self._senders: weakref.WeakSet[ReplicatedSender] = weakref.WeakSet()
        self._receivers: weakref.WeakSet[DedupReceiver | DedupSessionReceiver] = weakref.WeakSet()
        self._prober: Replicator | None = None
        self._probing: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        names = [f"{ns.name}={ns.fully_qualified_namespace}" for ns in self.config.namespaces]
        return f"GeoServiceBusClient(mode={self.config.mode.value!r}, {', '.join(names)})"

    @property
    def fully_qualified_namespace(self) -> str:
        """The host of the namespace passive mode sends to first now (it changes on a
        failover); the primary's in active mode. ``config.namespaces`` has both."""
        first = self.config.primary.name
        if self.config.mode == ReplicationMode.PASSIVE:
            first = self.health.passive_order()[0]
        namespace = self.config.primary if first == self.config.primary.name else self.config.secondary
        assert namespace.fully_qualified_namespace is not None  # set by NamespaceConfig's checks
        return namespace.fully_qualified_namespace

    def _client(self, namespace: NamespaceConfig) -> ServiceBusClient:
        if self._closed:
            raise RuntimeError("this GeoServiceBusClient is closed")
        assert namespace.name is not None
        if namespace.name not in self._clients:
            self._clients[namespace.name] = build_client(
                namespace, self.config.retry, try_timeout=self.config.deadlines.attempt
            )
        return self._clients[namespace.name]

    # -- senders ---------------------------------------------------------------------------

    def get_queue_sender(
        self, queue_name: str, *, client_identifier: str | None = None, socket_timeout: float | None = None
    ) -> ReplicatedSender:
        """A ``ReplicatedSender`` to ``queue_name`` on both namespaces; its drainer (with an
        outbox) starts on first use or ``async with``.

        ``client_identifier`` and ``socket_timeout`` go to both namespaces' SDK senders, as
        ``ServiceBusClient.get_queue_sender`` takes them; without a ``client_identifier``
        both get the same generated one (``ReplicatedSender.client_identifier``).

        Raises:
            RuntimeError: the client is closed.
            ValueError: ``socket_timeout`` is not a positive number.
        """
        return self._sender({"queue": queue_name}, client_identifier, socket_timeout)

    def get_topic_sender(
        self, topic_name: str, *, client_identifier: str | None = None, socket_timeout: float | None = None
    ) -> ReplicatedSender:
        """A ``ReplicatedSender`` to ``topic_name`` on both namespaces; as ``get_queue_sender``."""
        return self._sender({"topic": topic_name}, client_identifier, socket_timeout)

    def _sender(
        self, entity: dict[str, str], client_identifier: str | None, socket_timeout: float | None
    ) -> ReplicatedSender:
        identifier, options = handler_options("SBSender", client_identifier, socket_timeout)
        channels = [
            SdkSendChannel(ns.name or "", self._client(ns), options=options, **entity)
            for ns in self.config.namespaces
        ]
        ((kind, name),) = entity.items()
        sender = ReplicatedSender(
            channels,
            mode=self.config.mode,
            write_quorum=self.config.write_quorum,
            deadlines=self.config.deadlines,
            health=self.health,
            outbox=self._outbox,
            outbox_policy=self.config.outbox,
            entity=f"{kind}:{name}",
            on_start=self._sender_started,
            on_close=self._sender_closed,
            client_identifier=identifier,
        )
        self._senders.add(sender)
        _metrics.watch_sender(sender, destination=name, health=self.health, outbox=self._outbox)
        return sender

    async def _sender_closed(self, sender: ReplicatedSender) -> None:
        _metrics.forget(sender)

    # -- failback ------------------------------------------------------------------------------

    def _sender_started(self, replicator: Replicator) -> None:
        """The first sender to start gives the failback probe an entity to open a link to."""
        wanted = self.config.failback.mode == FailbackMode.PREFER_PRIMARY and self.config.mode == ReplicationMode.PASSIVE
        if not wanted or self._probing is not None or self._closed:
            return
        self._prober = replicator
        self._probing = asyncio.get_running_loop().create_task(self._probe_forever(), name="geobus-failback-probe")

    async def _probe_forever(self) -> None:
        """While passive mode runs away from the primary, check on it; come home when it is well."""
        policy = self.config.failback
        while True:
            await asyncio.sleep(policy.probe_interval)
            self.health.refresh()
            if not self.health.wants_failback or self._prober is None:
                self.health.observe_probe(False)
                continue
            try:
                await self._prober.probe(self.health.preferred)
                healthy = True
            except Exception as exc:
                _LOG.debug("geobus: failback probe of %r failed: %s", self.health.preferred, type(exc).__name__)
                healthy = False
            self.health.observe_probe(healthy)

    # -- receivers ---------------------------------------------------------------------------

    def _receiver(self, entity: dict[str, str], options: ReceiverOptions) -> DedupReceiver | DedupSessionReceiver:
        """``get_queue_receiver`` and ``get_subscription_receiver`` (``ReceiverFactories``) build here."""
        return build_receiver(self, entity, options)

    # -- sessions --------------------------------------------------------------------------------

    def _list_sessions(
        self, entity: dict[str, str], state_updated_after: datetime.datetime | None, timeout: float | None
    ) -> AsyncIterator[str]:
        """``list_queue_sessions`` and ``list_subscription_sessions`` (``SessionListings``)."""
        return list_sessions(self, entity, state_updated_after, timeout)

    # -- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close every sender and receiver this client handed out, then both namespaces'
        clients and the outbox. Safe to call twice; leaves no task running."""
        self._closed = True
        # Senders and receivers first: their drainers, pumps and keepers use the clients and
        # the outbox closed below.
        handles = [*self._senders, *self._receivers]
        await asyncio.gather(*(handle.close() for handle in handles), return_exceptions=True)
        if self._probing is not None:
            await cancel_and_wait([self._probing])
            self._probing = None
        clients, self._clients = dict(self._clients), {}
        await asyncio.gather(*(close_quietly(client, name) for name, client in clients.items()))
        if self._outbox is not None:
            outbox, self._outbox = self._outbox, None
            await asyncio.to_thread(outbox.close)
