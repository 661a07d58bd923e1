"""The sync ``GeoServiceBusClient``: the async client on a private event loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import Self

from .._closing import Closing
from .._config import ReplicationConfig
from .._engine import client as core
from .portal import Portal
from .receiver import DedupReceiver
from .sender import ReplicatedSender


async def _build(config: ReplicationConfig) -> core.GeoServiceBusClient:
    return core.GeoServiceBusClient(config)


class GeoServiceBusClient(Closing):
    """Replicated senders and deduplicating receivers over two namespaces.

    A drop-in for ``azure.servicebus.ServiceBusClient`` in producers and workers:
    ``get_queue_sender``, ``get_topic_sender``, ``get_queue_receiver``,
    ``get_subscription_receiver``, ``close``, context manager. Credentials may be
    sync or async azure-identity credentials. Thread-safe.

    Raises:
        ConfigurationError: a setting is missing or invalid (on construction).
        OutboxError: the configured outbox file is damaged, not an outbox, or in
            use by another process (on construction).
    """

    def __init__(self, config: ReplicationConfig) -> None:
        if not isinstance(config, ReplicationConfig):
            raise TypeError("GeoServiceBusClient takes a ReplicationConfig")
        self.config = config
        self._portal = Portal()
        try:
            self._core = self._portal.run(_build(config))
        except BaseException:
            # A bad outbox file must not leave the private loop's thread running.
            self._portal.close()
            raise

    @classmethod
    def from_config(cls, config: ReplicationConfig | Mapping[str, Any]) -> Self:
        return cls(config if isinstance(config, ReplicationConfig) else ReplicationConfig.from_mapping(config))

    @classmethod
    def from_connection_strings(cls, primary: str, secondary: str, **options: Any) -> Self:
        """Two connection strings; ``options`` as ``ReplicationConfig`` (``mode="active"``...)."""
        return cls(ReplicationConfig.from_connection_strings(primary, secondary, **options))

    @classmethod
    def from_namespaces(cls, primary: str, secondary: str, credential: Any, **options: Any) -> Self:
        """Two fully qualified namespaces (``contoso-weu.servicebus.windows.net``) and one
        azure-identity credential, sync or async."""
        return cls(ReplicationConfig.from_namespaces(primary, secondary, credential, **options))

    def __repr__(self) -> str:
        return repr(self._core)

    def get_queue_sender(self, queue_name: str) -> ReplicatedSender:
        return self._started(self._core.get_queue_sender(queue_name))

    def get_topic_sender(self, topic_name: str) -> ReplicatedSender:
        return self._started(self._core.get_topic_sender(topic_name))

    def _started(self, sender: Any) -> ReplicatedSender:
        # Its drainer starts now, on the private loop: a producer restarted with a
        # full outbox drains it before (and without) sending anything new.
        self._portal.run(sender._start())
        return ReplicatedSender(self._portal, sender)

    def get_queue_receiver(self, queue_name: str, **options: Any) -> DedupReceiver:
        """Options as ``geobus.aio.GeoServiceBusClient.get_queue_receiver``
        (``receive_mode``, ``max_wait_time``, ``prefetch``)."""
        return DedupReceiver(self._portal, self._core.get_queue_receiver(queue_name, **options))

    def get_subscription_receiver(self, topic_name: str, subscription_name: str, **options: Any) -> DedupReceiver:
        """Options as ``geobus.aio.GeoServiceBusClient.get_subscription_receiver``."""
        return DedupReceiver(
            self._portal, self._core.get_subscription_receiver(topic_name, subscription_name, **options)
        )

    def close(self) -> None:
        """Close both namespaces' clients and stop the private loop. Safe to call twice."""
        try:
            self._portal.run(self._core.close())
        except RuntimeError:
            return  # already closed
        self._portal.close()
