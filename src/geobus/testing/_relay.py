"""The proxy's data plane: one client connection relayed upstream under the faults in force.

Per connection and direction, one task reads and one task writes, joined by a
short queue: the reader stamps each chunk with its arrival time, the writer holds
it until ``arrival + latency`` and paces it to the bandwidth. One writer per
direction keeps the order; the bounded queue keeps the memory small (when it is
full the reader stops reading and TCP flow control slows the sender down).

Everything here runs on the proxy's loop; nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .._engine.tasks import cancel_and_wait
from ..local import Fault
from ..local._sockets import arm_reset

_LOG = logging.getLogger("geobus.testing")

CHUNK = 64 * 1024
_QUEUE_CHUNKS = 16  # per direction: at most 1 MiB held per direction of a connection
_PACE_SLICE = 0.02  # a throttled chunk goes out in slices of this many seconds' worth

_Chunk = tuple[float, bytes]  # (arrival time on the loop's clock, data); b"" is end of stream


class Conditions:
    """The faults in force, read by every relay; each change wakes every wait to re-read them."""

    def __init__(self) -> None:
        self.fault = Fault.NONE
        self.latency = 0.0
        self.bandwidth: float | None = None  # bytes per second per direction; None: unlimited
        self._changed = asyncio.Event()

    def changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def flowing(self, conn: Connection) -> None:
        """Return once no black hole holds ``conn`` (or ``conn`` is gone)."""
        while self.fault == Fault.BLACK_HOLE and not conn.closed:
            await self._wait_changed(None)

    async def hold(self, arrived: float) -> None:
        """Wait until ``arrived + latency``, with the latency in force at each moment."""
        await self._sleep_until(lambda: arrived + self.latency)

    async def pace(self, until: float) -> None:
        """Wait until ``until``, unless the bandwidth limit is lifted first."""
        await self._sleep_until(lambda: until if self.bandwidth is not None else 0.0)

    async def _sleep_until(self, deadline: Callable[[], float]) -> None:
        loop = asyncio.get_running_loop()
        while (delay := deadline() - loop.time()) > 0:
            await self._wait_changed(delay)

    async def _wait_changed(self, timeout: float | None) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)


class Connection:
    """One client connection and, once it is made, its upstream connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conditions: Conditions) -> None:
        self._reader = reader
        self.client = writer
        self.upstream: asyncio.StreamWriter | None = None
        self._conditions = conditions
        self._relays: list[asyncio.Task[None]] = []
        self.closed = False

    def reset(self) -> None:
        """Reset both sides at once (RST, no FIN) and stop relaying."""
        if self._end(_abort):
            for task in self._relays:
                task.cancel()

    def close(self) -> None:
        """Close both sides in an orderly way (FIN after what is already written)."""
        self._end(asyncio.StreamWriter.close)

    def _end(self, how: Callable[[asyncio.StreamWriter], object]) -> bool:
        """End both sides with ``how``, unless they are ended already; whether they were now."""
        if self.closed:
            return False
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                how(writer)
        return True

    async def serve(self, upstream: tuple[str, int], connect_timeout: float) -> None:
        """Connect upstream once no black hole holds the connection, then relay until both ends close."""
        try:
            if self._conditions.fault == Fault.REFUSE:  # accepted just before the listener closed
                self.reset()
                return
            await self._conditions.flowing(self)  # a black hole opens nothing upstream
            if self.closed:
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*upstream), connect_timeout
                )
            except (OSError, asyncio.TimeoutError) as exc:
                _LOG.debug("upstream %s:%s unreachable: %r", *upstream, exc)
                self.reset()  # the client sees what a dead host shows: a reset
                return
            self.upstream = up_writer
            if self.closed:  # reset while connecting
                up_writer.transport.abort()
                return
            await self._relay(up_reader, up_writer)
        finally:
            self.close()

    async def _relay(self, up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        for source, sink in ((self._reader, up_writer), (up_reader, self.client)):
            queue: asyncio.Queue[_Chunk] = asyncio.Queue(_QUEUE_CHUNKS)
            self._relays.append(loop.create_task(self._read(source, queue)))
            self._relays.append(loop.create_task(self._write(queue, sink)))
        try:
            done, _ = await asyncio.wait(self._relays, return_when=asyncio.FIRST_EXCEPTION)
            if any(not task.cancelled() and task.exception() is not None for task in done):
                self.reset()  # one side was reset: the other side is told the same way
        finally:
            await cancel_and_wait(self._relays)

    async def _read(self, source: asyncio.StreamReader, queue: asyncio.Queue[_Chunk]) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            await self._conditions.flowing(self)
            chunk = await source.read(CHUNK)
            await queue.put((loop.time(), chunk))
            if not chunk:
                return

    async def _write(self, queue: asyncio.Queue[_Chunk], sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        conditions = self._conditions
        while not self.closed:
            arrived, chunk = await queue.get()
            if not chunk:
                if sink.can_write_eof() and not sink.transport.is_closing():
                    sink.write_eof()  # pass the half-close on, as TCP would
                return
            await conditions.hold(arrived)
            data = memoryview(chunk)
            while data and not self.closed:
                await conditions.flowing(self)
                rate = conditions.bandwidth
                size = len(data) if rate is None else max(1, int(rate * _PACE_SLICE))
                piece, data = data[:size], data[size:]
                written = loop.time()
                sink.write(piece)
                await sink.drain()
                if rate is not None:
                    await conditions.pace(written + len(piece) / rate)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop ``writer``'s connection at once, with a reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        arm_reset(sock)
    writer.transport.abort()
