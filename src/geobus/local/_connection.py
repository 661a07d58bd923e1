"""One accepted connection of the local namespace: its socket, its proton transport,
and the bytes and events between them.

``Conn`` moves bytes from the socket into the transport (directly, or through a
delay queue while latency is on), from the transport back out to the socket, and
hands the transport's events to the engine. It never touches the selector or the
connection set: registering, closing and every fault decision belong to
``_server``'s loop, which asks ``Conn`` what it needs (``input_done``,
``want_write``, ``finished``). Everything here runs on that loop's thread.
"""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from proton import Collector, Connection, Transport

from ._amqp import Engine
from ._conditions import error_condition

_LOG = logging.getLogger("geobus.local")
_READ_SIZE = 256 * 1024
_PACKAGE = Path(__file__).resolve().parent.parent


@dataclass(eq=False)
class Conn:
    """A client's socket and the proton objects that speak AMQP on it; not thread-safe."""

    sock: socket.socket
    transport: Transport
    connection: Connection
    collector: Collector
    # Delayed input; ``b""`` stands for the peer's end of stream, which must not
    # overtake the bytes sent before it (the connection closes once it is consumed).
    inbound: deque[tuple[float, bytes]] = field(default_factory=deque)
    want_write: bool = False
    # No more input will be read: end of stream seen, or the transport refused input.
    input_done: bool = False
    registered: int = 0
    next_tick: float = 0.0
    closed: bool = False
    # Its first byte has been looked at: AMQP (HTTP and TLS leave for ``_admin_http``).
    sniffed: bool = False
    # Limits' clocks (``_limits``), in ``time.monotonic()`` seconds: when the peer last
    # sent anything; the time by which it must authorise (0: it has); the time by
    # which a connection closed for a limit is dropped even if its peer reads nothing.
    last_input: float = 0.0
    authorise_by: float = 0.0
    close_by: float = 0.0

    def read(self, latency: float) -> None:
        """Take what the socket has: into the transport now, or ``latency`` later.

        The end of stream (or a broken socket) sets ``input_done``; the caller
        updates the selector's interest afterwards.
        """
        try:
            data = self.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self.last_input = time.monotonic()
        if self.input_done:
            return  # end of stream seen, or input refused: the loop closes once flushed
        if not data:
            # The peer may only have shut its write side: answer what it sent (after
            # any latency), then the loop closes.
            self.input_done = True
        if latency > 0 or self.inbound:
            self.inbound.append((time.monotonic() + latency, data))
        elif data:
            self.push(data)

    def push(self, data: bytes) -> None:
        """Feed ``data`` to the transport; if it refuses input, set ``input_done``."""
        transport = self.transport
        while data:
            try:
                capacity = transport.capacity()
                if capacity <= 0:
                    raise EOFError("the transport closed its input")
                transport.push(data[:capacity])
            except Exception:
                # The transport has an error to report (a close frame, usually): stop
                # reading and let the loop flush it and close, unless a fault stops writes.
                self.input_done = True
                self.inbound.clear()
                return
            data = data[capacity:]
        # New input can start timers (the peer's idle-time-out from its open frame):
        # tick soon so that heartbeats are scheduled.
        self.next_tick = time.monotonic()

    def flush(self) -> bool:
        """Send what the transport has pending, as far as the socket takes it.

        Sets ``want_write`` when the socket is full. Returns False when the
        transport or the socket has failed and the connection must close now.
        """
        transport = self.transport
        while True:
            pending = transport.pending()
            if pending < 0:
                return False
            if pending == 0:
                return True
            chunk = transport.peek(pending)
            if chunk is None:
                return False
            try:
                sent = self.sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                self.want_write = True
                return True
            except OSError:
                return False
            transport.pop(sent)

    @property
    def finished(self) -> bool:
        """The transport closed, or input ended and every answer and held chunk is out."""
        return bool(self.transport.closed) or (
            self.input_done and not self.want_write and not self.inbound
        )

    def tick(self, now: float) -> None:
        """Run the transport's timers (idle time-out, heartbeats) if they are due."""
        if not self.next_tick or self.next_tick > now:
            return
        try:
            deadline = self.transport.tick(now)
        except Exception:
            self.next_tick = 0.0
            return
        self.next_tick = float(deadline) if deadline else 0.0

    def dispatch(self, engine: Engine) -> bool:
        """Hand every collected event to ``engine``; True if there was any.

        An exception from the engine closes this connection with
        ``amqp:internal-error``; the others carry on.
        """
        busy = False
        event = self.collector.peek()
        while event is not None:
            busy = True
            try:
                engine.dispatch(event)
            except Exception as exc:
                # Type and place only: the message can quote the client's bytes,
                # a SAS token among them.
                _LOG.warning(
                    "closing a connection after an internal error: %s at %s, on %s",
                    type(exc).__name__,
                    _where(exc),
                    event.type,
                )
                self.connection.condition = error_condition(
                    "amqp:internal-error", type(exc).__name__
                )
                self.connection.close()
            self.collector.pop()
            event = self.collector.peek()
        engine.free_closed(self.connection)
        return busy


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc``'s traceback inside geobus, as ``module:line``."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if Path(f.filename).resolve().is_relative_to(_PACKAGE)
    ]
    if not frames:
        return "?"
    frame = frames[-1]
    return f"{Path(frame.filename).stem}:{frame.lineno}"
