"""The sync ``GeoServiceBusClient``: the async client on a private event loop."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from ._config import NamespaceConfig, ReplicationConfig, ReplicationMode
from ._portal import Portal
from ._receiver import DedupReceiver
from ._sender import ReplicatedSender
from .aio import _client as core


async def _build(config: ReplicationConfig) -> core.GeoServiceBusClient:
    return core.GeoServiceBusClient(config)


class GeoServiceBusClient:
    """Replicated senders and deduplicating receivers over two namespaces.

    A drop-in for ``azure.servicebus.ServiceBusClient`` in producers and workers:
    ``get_queue_sender``, ``get_topic_sender``, ``get_queue_receiver``,
    ``get_subscription_receiver``, ``close``, context manager. Credentials may be
    sync or async azure-identity credentials. Thread-safe.

    Raises:
        ConfigurationError: a setting is missing or invalid (on construction).
    """

    def __init__(self, config: ReplicationConfig) -> None:
        if not isinstance(config, ReplicationConfig):
            raise TypeError("GeoServiceBusClient takes a ReplicationConfig")
        self.config = config
        self._portal = Portal()
        self._core = self._portal.run(_build(config))

    @classmethod
    def from_config(cls, config: ReplicationConfig | Mapping[str, Any]) -> GeoServiceBusClient:
        return cls(config if isinstance(config, ReplicationConfig) else ReplicationConfig.from_mapping(config))

    @classmethod
    def from_connection_strings(
        cls, primary: str, secondary: str, *, mode: ReplicationMode | str = ReplicationMode.PASSIVE, **options: Any
    ) -> GeoServiceBusClient:
        return cls(
            ReplicationConfig(
                primary=NamespaceConfig(connection_string=primary),
                secondary=NamespaceConfig(connection_string=secondary),
                mode=mode,  # type: ignore[arg-type]
                **options,
            )
        )

    @classmethod
    def from_namespaces(
        cls,
        primary: str,
        secondary: str,
        credential: Any,
        *,
        mode: ReplicationMode | str = ReplicationMode.PASSIVE,
        **options: Any,
    ) -> GeoServiceBusClient:
        """Two fully qualified namespaces and one azure-identity credential (sync or async)."""
        return cls(
            ReplicationConfig(
                primary=NamespaceConfig(fully_qualified_namespace=primary, credential=credential),
                secondary=NamespaceConfig(fully_qualified_namespace=secondary, credential=credential),
                mode=mode,  # type: ignore[arg-type]
                **options,
            )
        )

    def __repr__(self) -> str:
        return repr(self._core)

    def get_queue_sender(self, queue_name: str) -> ReplicatedSender:
        return ReplicatedSender(self._portal, self._core.get_queue_sender(queue_name))

    def get_topic_sender(self, topic_name: str) -> ReplicatedSender:
        return ReplicatedSender(self._portal, self._core.get_topic_sender(topic_name))

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

    def __enter__(self) -> GeoServiceBusClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
