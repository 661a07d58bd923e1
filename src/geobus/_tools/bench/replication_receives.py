"""The ``replication`` benchmark's receives: DedupReceiver against two plain receivers.

``fill`` puts every message on both namespaces (active mode, quorum ``all``), so
a ``DedupReceiver`` (peek-lock + complete) draining a queue absorbs one
duplicate per message; two plain receivers, one per namespace and draining
concurrently, settle the same input. Both sides warm up on one message per
receiver and are then timed on the same number of copies, ``2 * (count - 1)``.

What a drain expects and when it is done is decided once (``common.Drain``, no
I/O); the sync and async pumps only receive and complete.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from . import common as bench
from .drain import Drain, apump, pump
from .replication_shared import LIST_SIZE, client, plain_client


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


def _receivers(ns: bench.Pair, api: str, who: str, queue: str, count: int) -> tuple[list[Any], list[Any], list[Drain]]:
    """The clients, receivers and drains of one side: one DedupReceiver over both namespaces
    (``count`` messages, each twice), or a plain receiver per namespace (``count - 1`` each)."""
    if who == "dedup":
        clients = [client(ns, api, "passive")]
    else:
        clients = [plain_client(api, connection_string) for connection_string in ns.connection_strings]
    drains = [Drain(f"{api} {who} receiver", count if who == "dedup" else count - 1, dedup=who == "dedup")
              for _ in clients]  # fmt: skip
    return clients, [c.get_queue_receiver(queue) for c in clients], drains


def _seconds(drains: list[Drain]) -> float:
    """From the first drain's start to the last one's end (both namespaces drain at once)."""
    return max(drain.started + drain.seconds for drain in drains) - min(drain.started for drain in drains)


def sync_receives(
    ns: bench.Pair, queues: dict[str, str], count: int, order: Sequence[str], closing: list[threading.Thread]
) -> dict[str, float]:
    """Seconds to drain ``2 * (count - 1)`` copies after a one-message warm-up per receiver."""
    timings = {}
    for who in order:
        clients, receivers, drains = _receivers(ns, "sync", who, queues[who], count)
        try:
            for receiver, drain in zip(receivers, drains, strict=True):
                pump(receiver, drain)  # the warm-up, untimed
            for drain in drains:
                drain.start()
            # One thread per namespace, as a plain application reading two regions would run.
            threads = [threading.Thread(target=pump, args=pair) for pair in zip(receivers, drains, strict=True)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            timings[who] = _seconds(drains)
        finally:
            bench.close_later(closing, *receivers, *clients)
    return timings


async def async_receives(
    ns: bench.Pair, queues: dict[str, str], count: int, order: Sequence[str], closing: list[asyncio.Task[None]]
) -> dict[str, float]:
    """As ``sync_receives``, with ``geobus.aio`` and the SDK's async receivers."""
    timings = {}
    for who in order:
        clients, receivers, drains = _receivers(ns, "async", who, queues[who], count)
        try:
            await asyncio.gather(*(apump(receiver, drain) for receiver, drain in zip(receivers, drains, strict=True)))
            for drain in drains:
                drain.start()
            await asyncio.gather(*(apump(receiver, drain) for receiver, drain in zip(receivers, drains, strict=True)))
            timings[who] = _seconds(drains)
        finally:
            bench.aclose_later(closing, *receivers, *clients)
    return timings
