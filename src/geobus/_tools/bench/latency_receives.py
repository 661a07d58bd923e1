"""The ``latency`` benchmark's receives: DedupReceiver against two plain receivers.

``fill`` puts every message on both namespaces (active mode, quorum ``all``,
directly), so a ``DedupReceiver`` (passive, peek-lock + complete) draining a
queue absorbs one duplicate per message; two plain receivers, one per namespace
and draining concurrently, settle the same input. Both sides warm up on one
message per receiver and are then timed (wall clock and CPU, ``Clock``) on the
same number of copies, ``2 * (count - 1)``, directly or through the proxies.

What a drain expects and when it is done is decided once (``drain.Drain``, no
I/O); the sync and async pumps only receive and complete.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from . import common as bench
from .drain import Drain, apump, pump
from .latency_sends import Clock, Timing
from .replication_shared import LIST_SIZE, Via, client, plain_client


async def fill(ns: bench.Pair, queues: Sequence[str], count: int) -> None:
    """Active mode, quorum all: every queue gets ``count`` messages on both namespaces,
    each pair with one MessageId, as a DedupReceiver meets them in production."""
    async with client(ns, "async", "active", write_quorum="all") as filler:

        async def one(queue: str) -> None:
            async with filler.get_queue_sender(queue) as sender:
                for start in range(0, count, LIST_SIZE):
                    await sender.send_messages(bench.messages(min(LIST_SIZE, count - start)))

        await asyncio.gather(*(one(queue) for queue in queues))
    for queue in queues:
        bench.expect_on_each(ns, queue, count)


def copies(count: int) -> int:
    """Copies timed per drain of ``count`` messages on both namespaces (the warm-up left out)."""
    return 2 * (count - 1)


def _receivers(
    ns: bench.Pair, api: str, via: Via, who: str, queue: str, count: int
) -> tuple[list[Any], list[Any], list[Drain]]:
    """The clients, receivers and drains of one side: one passive DedupReceiver over both
    namespaces (``count`` messages, each twice), or a plain receiver per namespace (``count - 1`` each)."""
    if who == "dedup":
        clients = [client(ns, api, "passive", via)]
    else:
        clients = [plain_client(api, cs, via[n] if via else None) for n, cs in enumerate(ns.connection_strings)]
    drains = [Drain(f"{api} {who} receiver", count if who == "dedup" else count - 1, dedup=who == "dedup", shared=False)
              for _ in clients]  # fmt: skip
    return clients, [c.get_queue_receiver(queue) for c in clients], drains


def _checked(drains: list[Drain], clock: Clock, count: int) -> Timing:
    """The clock stopped, once every drain finished; RuntimeError if one did not."""
    unfinished = [drain.what for drain in drains if not drain.ended]
    if unfinished:
        raise RuntimeError(f"{unfinished}: did not finish (the traceback is above)")
    return clock.stop(copies(count))


def sync_receive(
    ns: bench.Pair, via: Via, who: str, queue: str, count: int, closing: list[threading.Thread]
) -> Timing:
    """``who`` (``dedup`` or ``plain``) drains ``queue`` after a one-message warm-up per receiver."""
    clients, receivers, drains = _receivers(ns, "sync", via, who, queue, count)
    try:
        for receiver, drain in zip(receivers, drains, strict=True):
            pump(receiver, drain)  # the warm-up, untimed
        clock = Clock()
        for drain in drains:
            drain.start()
        # One thread per namespace, as a plain application reading two regions would run.
        threads = [threading.Thread(target=pump, args=pair) for pair in zip(receivers, drains, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return _checked(drains, clock, count)
    finally:
        bench.close_later(closing, *receivers, *clients)


async def async_receive(
    ns: bench.Pair, via: Via, who: str, queue: str, count: int, closing: list[asyncio.Task[None]]
) -> Timing:
    """As ``sync_receive``, with ``geobus.aio`` and the SDK's async receivers."""
    clients, receivers, drains = _receivers(ns, "async", via, who, queue, count)
    try:
        await asyncio.gather(*(apump(receiver, drain) for receiver, drain in zip(receivers, drains, strict=True)))
        clock = Clock()
        for drain in drains:
            drain.start()
        await asyncio.gather(*(apump(receiver, drain) for receiver, drain in zip(receivers, drains, strict=True)))
        return _checked(drains, clock, count)
    finally:
        bench.aclose_later(closing, *receivers, *clients)
