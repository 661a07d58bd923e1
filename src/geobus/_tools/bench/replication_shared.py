"""What the parts of the ``replication`` benchmark share: sizes and clients.

Not a measurement itself: ``replication.py`` (sends, rounds, the table),
``replication_receives.py``, ``replication_failover.py`` and
``replication_seen_set.py`` measure, on what this module and ``common`` give them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

import geobus
import geobus.aio

from . import common as bench

LIST_SIZE = 100


@dataclass(frozen=True)
class Sizes:
    single: int  # single-message sends per sender
    lists: int  # messages sent as lists of LIST_SIZE per sender
    receive: int  # messages per receive scenario; each is on both namespaces
    seen_ids: int  # ids in the seen-set
    black_hole_cutoff: float  # seconds the plain SDK's failover may hang on a black hole


QUICK = Sizes(single=100, lists=200, receive=100, seen_ids=100_000, black_hole_cutoff=10.0)
FULL = Sizes(single=1000, lists=4000, receive=1000, seen_ids=1_000_000, black_hole_cutoff=20.0)


def plain_client(api: str, connection_string: str) -> Any:
    """The SDK's own client of ``api`` (sync or async), with its default settings."""
    plain = ServiceBusClient if api == "sync" else AsyncServiceBusClient
    return plain.from_connection_string(connection_string)


def client(ns: bench.Pair, api: str, who: str, **options: Any) -> Any:
    """A client of ``api`` (sync or async): ``who`` is ``plain`` (the SDK's, on the primary),
    or a geobus mode (``passive``, ``active``) for geobus's client on both namespaces."""
    if who == "plain":
        return plain_client(api, ns.primary.connection_string)
    geo = geobus.GeoServiceBusClient if api == "sync" else geobus.aio.GeoServiceBusClient
    return geo.from_connection_strings(*ns.connection_strings, mode=who, **options)


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
