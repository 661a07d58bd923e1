"""What the benchmarks share about clients: geobus's and the SDK's, direct or through proxies; and the
``replication`` benchmark's sizes.

Not a measurement itself: ``replication.py`` (the table), ``replication_failover.py``
and ``replication_seen_set.py`` measure, on what this module and ``common`` give
them, and so do ``latency``, ``sessions`` and ``outbox``. A client goes to the
namespaces directly, or ``via`` a proxy in front of each (``geobus.testing.Proxy``:
a ``FaultProxyProcess`` in the ``latency`` benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

import geobus
import geobus.aio

from ...testing import sdk_proxy_options
from ...testing._sdk import Proxy
from . import common as bench

LIST_SIZE = 100

Via = tuple[Proxy, Proxy] | None  # a proxy in front of the primary and of the secondary; None: direct


@dataclass(frozen=True)
class Sizes:
    seen_ids: int  # ids in the seen-set
    black_hole_cutoff: float  # seconds the plain SDK's failover may hang on a black hole


QUICK = Sizes(seen_ids=100_000, black_hole_cutoff=10.0)
FULL = Sizes(seen_ids=1_000_000, black_hole_cutoff=20.0)


def plain_client(api: str, connection_string: str, via: Proxy | None = None) -> Any:
    """The SDK's own client of ``api`` (sync or async), with its default settings, through ``via``
    if given."""
    plain = ServiceBusClient if api == "sync" else AsyncServiceBusClient
    options = sdk_proxy_options(via, connection_string) if via is not None else {}
    return plain.from_connection_string(connection_string, **options)


def client(ns: bench.Pair, api: str, who: str, via: Via = None, **options: Any) -> Any:
    """A client of ``api`` (sync or async): ``who`` is ``plain`` (the SDK's, on the primary),
    or a geobus mode (``passive``, ``active``) for geobus's client on both namespaces;
    ``options`` are ``ReplicationConfig``'s fields."""
    if who == "plain":
        return plain_client(api, ns.primary.connection_string, via[0] if via else None)
    geo = geobus.GeoServiceBusClient if api == "sync" else geobus.aio.GeoServiceBusClient
    if via is None:
        return geo.from_connection_strings(*ns.connection_strings, mode=who, **options)
    return geo.from_config(ns.config(primary_via=via[0], secondary_via=via[1], mode=who, **options))


def steady(sender: Any) -> None:
    """Bring a sync sender to its steady state, untimed: the first send opens its link, and
    ``create_message_batch`` asks every namespace for its limit, so a geobus sender's standby
    link is open too (a failover then costs one send, not a link's opening)."""
    sender.send_messages(ServiceBusMessage(bench.BODY))
    sender.create_message_batch()


async def asteady(sender: Any) -> None:
    """As ``steady``, for an async sender."""
    await sender.send_messages(ServiceBusMessage(bench.BODY))
    await sender.create_message_batch()
