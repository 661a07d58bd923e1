"""``compare_entities``: the library's check that two namespaces define the same entities."""

from __future__ import annotations

import inspect
from typing import Any

from azure.core.exceptions import AzureError
from azure.servicebus.management import ServiceBusAdministrationClient

from .._config import NamespaceConfig, ReplicationConfig
from .._errors import ConfigurationError, EntityReadError
from .admin import admin_client
from .compare import EntityReport, diff_snapshots
from .snapshot import EntitySnapshot, read_entities

Source = NamespaceConfig | ServiceBusAdministrationClient | EntitySnapshot


def snapshot_of(source: Source, role: str) -> EntitySnapshot:
    """``source`` read (a snapshot as it is). An administration client given is left open;
    one built for a ``NamespaceConfig`` is closed.

    Raises:
        EntityReadError: the namespace could not be read (``namespace`` is its config's
            name, else ``role``).
        ConfigurationError: a namespace whose credential cannot serve the administration client.
        TypeError: ``source`` is none of these, or an async administration client (the
            reading is sync).
    """
    if isinstance(source, EntitySnapshot):
        return source
    if isinstance(source, NamespaceConfig):
        with admin_client(source) as admin:
            return _read(admin, source.name or role)
    if _is_async(source):
        raise TypeError(
            f"{role}: an async ServiceBusAdministrationClient (azure.servicebus.aio.management) "
            "cannot be read: the comparison is sync; pass the sync "
            "azure.servicebus.management.ServiceBusAdministrationClient or a NamespaceConfig"
        )
    if callable(getattr(source, "list_queues", None)):  # a ServiceBusAdministrationClient, or alike
        return _read(source, role)
    raise TypeError(
        f"{role}: expected a NamespaceConfig, a ServiceBusAdministrationClient or an EntitySnapshot, "
        f"got a {type(source).__name__}"
    )


def _is_async(source: Any) -> bool:
    """Whether ``source`` is an async administration client: its gets are coroutine
    functions (azure.servicebus.aio.management's; its lists give an ``AsyncItemPaged``)."""
    return any(
        inspect.iscoroutinefunction(getattr(source, name, None))
        for name in ("get_queue", "get_namespace_properties")
    )


def _read(admin: ServiceBusAdministrationClient, name: str) -> EntitySnapshot:
    try:
        return read_entities(admin)
    except AzureError as exc:
        raise EntityReadError(name, exc) from exc


def compare_entities(
    primary: ReplicationConfig | Source, secondary: Source | None = None
) -> EntityReport:
    """How the entity definitions of two namespaces differ: queues, topics, subscriptions and
    their rules missing on either side, the compared properties that differ (docs/entities.md
    lists them; counts, sizes and times are each namespace's own and ignored), and rules.

    ``primary`` and ``secondary`` are each a ``NamespaceConfig`` (read through azure-servicebus's
    ``ServiceBusAdministrationClient``, with its connection string or credential), an
    administration client of your own, or an ``EntitySnapshot`` (``read_entities``, or
    ``EntitySnapshot.build`` for a definition); or ``primary`` is a ``ReplicationConfig`` and
    ``secondary`` is left out. Sync (in ``geobus.aio`` too): a few HTTP requests per entity.

    >>> report = compare_entities(ReplicationConfig.from_env())   # doctest: +SKIP
    >>> assert report.alike, report.table()                         # doctest: +SKIP

    Raises:
        EntityReadError: a namespace could not be read; ``namespace`` says which.
        ConfigurationError: a ``ReplicationConfig`` with a ``secondary`` too, or no
            ``secondary``; a credential the administration client cannot use.
        TypeError: something else given, or an async administration client (pass the sync
            ``azure.servicebus.management`` one, or a ``NamespaceConfig``).
    """
    if isinstance(primary, ReplicationConfig):
        if secondary is not None:
            raise ConfigurationError("secondary", "a ReplicationConfig holds both namespaces: give it alone")
        first: Source = primary.primary
        second: Source = primary.secondary
    elif secondary is None:
        raise ConfigurationError("secondary", "compare_entities needs two namespaces (or one ReplicationConfig)")
    else:
        first, second = primary, secondary
    return diff_snapshots(snapshot_of(first, "primary"), snapshot_of(second, "secondary"))
