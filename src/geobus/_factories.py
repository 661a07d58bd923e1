"""The three ways to build a client, written once for ``geobus`` and ``geobus.aio``.

Both ``GeoServiceBusClient`` classes take one ``ReplicationConfig``; these
classmethods only make that config, so they hold for either face.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import Self

from ._config import ReplicationConfig


class FromConfig:
    """``from_config``, ``from_connection_strings`` and ``from_namespaces`` over ``cls(config)``."""

    def __init__(self, config: ReplicationConfig) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: ReplicationConfig | Mapping[str, Any]) -> Self:
        """A client for ``config``: a ``ReplicationConfig``, or a mapping in the shape of the
        TOML file (``{"mode": "active", "primary": {...}, "secondary": {...}}``).

        Raises:
            ConfigurationError: a setting is missing or invalid (the message names it).
            OutboxError: the configured outbox file is damaged, not an outbox, or in use
                by another process.
        """
        return cls(config if isinstance(config, ReplicationConfig) else ReplicationConfig.from_mapping(config))

    @classmethod
    def from_connection_strings(cls, primary: str, secondary: str, **options: Any) -> Self:
        """A client for two connection strings; ``options`` are ``ReplicationConfig``'s other
        fields (``mode="active"``, ``outbox=OutboxPolicy(...)``...).

        Raises:
            ConfigurationError, OutboxError: as ``from_config``.
        """
        return cls(ReplicationConfig.from_connection_strings(primary, secondary, **options))

    @classmethod
    def from_namespaces(cls, primary: str, secondary: str, credential: Any, **options: Any) -> Self:
        """A client for two fully qualified namespaces (``contoso-weu.servicebus.windows.net``)
        and one azure-identity credential, sync or async; ``options`` as
        ``from_connection_strings``.

        Raises:
            ConfigurationError, OutboxError: as ``from_config``.
        """
        return cls(ReplicationConfig.from_namespaces(primary, secondary, credential, **options))
