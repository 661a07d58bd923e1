"""Local namespaces and proxies as plain context managers (for unittest, scripts and fixtures)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .._config import NamespaceConfig, ReplicationConfig
from ..local import LocalNamespace, development_key
from ._proxy import FaultProxy
from ._sdk import sdk_proxy_options


@dataclass(frozen=True)
class NamespacePair:
    """Two running local namespaces, for geobus's ``primary`` and ``secondary``.

    Not a context manager itself: ``local_pair()`` and the
    ``geobus_namespace_pair`` fixture start and stop it.
    """

    primary: LocalNamespace
    secondary: LocalNamespace

    def config(
        self,
        *,
        primary_via: FaultProxy | None = None,
        secondary_via: FaultProxy | None = None,
        **options: Any,
    ) -> ReplicationConfig:
        """A ``ReplicationConfig`` for the pair; ``options`` are its other fields.

        ``primary_via`` / ``secondary_via``: reach that namespace through a
        ``FaultProxy`` (one in front of it, e.g. from ``fault_proxy(pair.primary)``),
        by the namespace's ``client_options`` — as for a real namespace.

        Raises:
            ConfigurationError: an option is invalid (the message names it).
        """
        return ReplicationConfig(
            primary=_namespace("primary", self.primary, primary_via),
            secondary=_namespace("secondary", self.secondary, secondary_via),
            **options,
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Messages held per entity, per namespace: ``{"primary": {...}, "secondary": {...}}``."""
        return {"primary": self.primary.counts(), "secondary": self.secondary.counts()}

    def heal(self) -> None:
        """Clear every fault on both namespaces."""
        self.primary.heal()
        self.secondary.heal()


def _namespace(role: str, namespace: LocalNamespace, via: FaultProxy | None) -> NamespaceConfig:
    connection_string = namespace.connection_string
    options = sdk_proxy_options(via, connection_string) if via is not None else {}
    return NamespaceConfig(name=role, connection_string=connection_string, client_options=options)


@contextlib.contextmanager
def local_pair(**options: Any) -> Iterator[NamespacePair]:
    """Start two in-process local namespaces with the same ``options``; stop both after.

    ``options`` are ``LocalNamespace``'s (``lock_duration=2.0``, ``queues=["q"]``...).
    Unless ``key`` is one of them, each namespace has its own development key
    (``geobus.local.development_key(1)`` and ``(2)``), as two Azure namespaces have
    their own keys: a connection string mixed up between them is refused.

    Raises:
        OSError: a port cannot be bound. TypeError: an unknown option.
    """
    keys = {"key": options.pop("key")} if "key" in options else None
    with (
        LocalNamespace(**(keys or {"key": development_key(1)}), **options) as primary,
        LocalNamespace(**(keys or {"key": development_key(2)}), **options) as secondary,
    ):
        yield NamespacePair(primary, secondary)


@contextlib.contextmanager
def fault_proxy(target: LocalNamespace | tuple[str, int], **options: Any) -> Iterator[FaultProxy]:
    """Start a ``FaultProxy`` in front of ``target`` (a local namespace or ``(host, port)``); close it after.

    ``options`` are ``FaultProxy``'s (``port``, ``connect_timeout``).

    Raises:
        OSError: the port cannot be bound. ValueError: a bad target or option.
    """
    with FaultProxy(upstream_of(target), **options) as proxy:
        yield proxy


def upstream_of(target: LocalNamespace | tuple[str, int]) -> tuple[str, int]:
    """The ``(host, port)`` a proxy in front of ``target`` forwards to."""
    if isinstance(target, LocalNamespace):
        return (target.host, target.port)
    return target
