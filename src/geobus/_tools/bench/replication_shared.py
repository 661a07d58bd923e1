"""What the parts of the ``replication`` benchmark share: sizes, the row, clients, closing.

Not a measurement itself: ``replication.py`` (sends, rounds, the table),
``_replication_receives.py``, ``_replication_failover.py`` and
``_replication_seen_set.py`` measure, on what this module gives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from azure.servicebus import ServiceBusMessage

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
    measure_plain_faults: bool  # else docs/sdk-behaviour.md's figures stand in for the plain SDK's


QUICK = Sizes(single=100, lists=200, receive=100, seen_ids=100_000, measure_plain_faults=False)
FULL = Sizes(single=1000, lists=4000, receive=1000, seen_ids=1_000_000, measure_plain_faults=True)


@dataclass
class Metric(bench.Comparison):
    """One table row. ``ratio`` is geobus / plain; ``plain`` is None when it never finished.

    ``plain_source``: ``measured`` in this run, ``documented`` (docs/sdk-behaviour.md, not
    measured), or ``cut-off`` (still running when the benchmark gave up on it)."""

    plain_source: str = "measured"
    plain_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """As ``Comparison.as_json``, the ratio to four significant figures."""
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else float(f"{self.ratio:.4g}")
        return data


def messages(count: int) -> list[ServiceBusMessage]:
    """``count`` new messages with the benchmark body."""
    return [ServiceBusMessage(bench.BODY) for _ in range(count)]


# -- clients ------------------------------------------------------------------------------


def geobus_client(ns: bench.Namespaces, **options: Any) -> geobus.GeoServiceBusClient:
    """A sync geobus client on both namespaces, with ``options``."""
    return geobus.GeoServiceBusClient.from_connection_strings(ns.primary, ns.secondary, **options)


def ageobus_client(ns: bench.Namespaces, **options: Any) -> geobus.aio.GeoServiceBusClient:
    """As ``geobus_client``, from ``geobus.aio``."""
    return geobus.aio.GeoServiceBusClient.from_connection_strings(
        ns.primary, ns.secondary, **options
    )


# -- closing in the background ---------------------------------------------------------------
#
# Closing an SDK handler takes ~0.5 s of waiting (the sync one joins a keep-alive thread
# that sleeps in 1 s steps), so handlers finish closing in the background while the next
# scenario runs, and the round waits for them at its end.


def close_later(closing: list[threading.Thread], *objects: Any) -> None:
    """Close ``objects`` in order on a thread, added to ``closing``; errors are ignored."""

    def close_all() -> None:
        for obj in objects:
            with contextlib.suppress(Exception):
                obj.close()

    thread = threading.Thread(target=close_all, name="close-handlers", daemon=True)
    thread.start()
    closing.append(thread)


def aclose_later(closing: list[asyncio.Task[None]], *objects: Any) -> None:
    """As ``close_later``, on a task of the running loop."""

    async def close_all() -> None:
        for obj in objects:
            with contextlib.suppress(Exception):
                await obj.close()

    closing.append(asyncio.create_task(close_all()))


def join_closing(closing: list[threading.Thread]) -> None:
    """Wait for ``close_later``'s threads; RuntimeError if one is still closing after 30 s."""
    for thread in closing:
        thread.join(timeout=30)
    if any(thread.is_alive() for thread in closing):
        raise RuntimeError("a handler did not close within 30 s")
    closing.clear()


# -- a passive sender's standby link -----------------------------------------------------------


def _standby_opening(sender: Any) -> asyncio.Task[None] | None:
    """The task that opens a passive sender's standby link, started by its first send.

    Timing sends while it runs would count its work, and a failover before it is
    done would count the link's opening. Nothing public says when it is done, so
    this reads a private attribute (``None`` if it is renamed: the run goes on).
    """
    task: asyncio.Task[None] | None = getattr(getattr(sender, "_core", sender), "_warming", None)
    return task


def wait_standby_open(sender: geobus.ReplicatedSender) -> None:
    """Wait (10 s at most) until the standby link opened by ``sender``'s first send is open."""
    task, portal = _standby_opening(sender), getattr(sender, "_portal", None)
    if task is not None and portal is not None:
        portal.run(asyncio.wait([task], timeout=10))


async def await_standby_open(sender: geobus.aio.ReplicatedSender) -> None:
    """As ``wait_standby_open``, for an async sender."""
    task = _standby_opening(sender)
    if task is not None:
        await asyncio.wait([task], timeout=10)
