"""``FaultProxy``: a TCP proxy that breaks the network under a live client, on demand.

One asyncio loop on a private thread (a ``Portal``, as the sync clients use)
owns every socket. The public methods hand their change to that loop and return
once it is in force, so a fault reaches the connections already open as well as
the ones still to come. The relaying itself is in ``_relay``; refusing while
keeping the port, and resetting, are the local namespace's own ways
(``geobus.local._sockets``).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from typing_extensions import Self

from .._closing import Serving
from .._engine.tasks import cancel_and_wait
from .._sync.portal import Portal
from ..local import Fault
from ..local._sockets import KeptPort
from ._relay import CHUNK, Conditions, Connection
from ._sdk import ProxyAddress

_T = TypeVar("_T")

_CALL_TIMEOUT = 10.0


class FaultProxy(ProxyAddress, Serving):
    """A TCP proxy on loopback whose network faults switch on and off at runtime.

    ``FaultProxy(("127.0.0.1", 5672))`` listens on ``host``:``port`` (port 0: any
    free port, read it back from ``port`` once started) and forwards every
    connection to ``upstream``. Start it with ``with FaultProxy(...) as proxy:``
    or ``start()``; ``close()`` stops its thread and closes every socket.

    Faults apply to open and new connections alike, until ``heal()``:

    - ``refuse()``: reset open connections; new ones are refused (the port
      stays bound but stops listening), as from a host that is down.
    - ``black_hole()``: accept, but forward nothing either way and close
      nothing, as from a network that drops packets.
    - ``set_latency(seconds)``: hold each chunk that long, both directions, in order.
    - ``set_bandwidth(bytes_per_second)``: pace each direction of each connection.
    - ``reset()``: reset every open connection once, then keep serving.

    Every method is thread-safe and returns once its change is in force; call
    them from tests, threads or coroutines (they block for a moment: they are
    not coroutines). For a real Azure namespace, point ``upstream`` at port
    5671 of its host and give the SDK ``sdk_proxy_options(proxy, ...)``.

    Raises:
        ValueError: a bad ``upstream``, ``port`` or ``connect_timeout`` (on construction).
        OSError: the port cannot be bound (on ``start``).
        RuntimeError: a fault method is called before ``start`` or after ``close``.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 10.0,
    ) -> None:
        if (
            not isinstance(upstream, tuple)
            or len(upstream) != 2
            or not isinstance(upstream[0], str)
            or not upstream[0]
            or not _is_port(upstream[1], allow_zero=False)
        ):
            raise ValueError(f"upstream must be a (host, port) tuple, got {upstream!r}")
        if not _is_port(port, allow_zero=True):
            raise ValueError(f"port must be 0 (any free port) or 1..65535, got {port!r}")
        if not _is_number(connect_timeout) or not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be a number > 0, got {connect_timeout!r}")
        self.upstream: tuple[str, int] = (upstream[0], int(upstream[1]))
        self._connect_timeout = float(connect_timeout)
        self._lock = threading.Lock()
        self._portal: Portal | None = None
        self._closed = False
        # Owned by the loop once started.
        self._port = KeptPort(host, int(port))
        self._conditions: Conditions | None = None
        self._server: asyncio.Server | None = None
        self._conns: dict[Connection, asyncio.Task[None]] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Bind, listen and start forwarding; a second call does nothing.

        Raises:
            OSError: the port cannot be bound. RuntimeError: the proxy was closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this FaultProxy is closed; start a new one")
            if self._portal is not None:
                return self
            self._portal = Portal("geobus-fault-proxy")
        try:
            self._call(self._open)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Reset every connection, close the listener and join the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            portal = self._portal
        if portal is None:
            return
        try:
            portal.run(self._teardown(), timeout=_CALL_TIMEOUT)
        finally:
            portal.close()

    def __repr__(self) -> str:
        listening = f"{self.host}:{self._port.port or '?'}"
        upstream = f"{self.upstream[0]}:{self.upstream[1]}"
        return f"FaultProxy({listening} -> {upstream}, fault={self.fault.value!r})"

    # -- addresses ---------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the proxy listens on."""
        return self._port.host

    @property
    def port(self) -> int:
        """The port the proxy listens on (kept through ``refuse``/``heal``).

        Raises:
            RuntimeError: the proxy was asked for any free port and is not started yet.
        """
        if not self._port.port:
            raise RuntimeError("the FaultProxy has no port until it is started")
        return self._port.port

    # -- faults ------------------------------------------------------------------------

    @property
    def fault(self) -> Fault:
        """``Fault.NONE``, ``Fault.REFUSE`` or ``Fault.BLACK_HOLE`` (``geobus.local.Fault``)."""
        return self._conditions.fault if self._conditions else Fault.NONE

    @property
    def latency(self) -> float:
        """Seconds each chunk is held, each direction."""
        return self._conditions.latency if self._conditions else 0.0

    @property
    def bandwidth(self) -> float | None:
        """Bytes per second per direction of each connection; ``None`` is unlimited."""
        return self._conditions.bandwidth if self._conditions else None

    @property
    def connection_count(self) -> int:
        """Client connections open through the proxy (black-holed ones included)."""

        async def count() -> int:
            return len(self._conns)

        return self._call(count)

    def refuse(self) -> None:
        """Reset open connections and refuse new ones (the host is down)."""
        self._call(lambda: self._set_fault(Fault.REFUSE))

    def black_hole(self) -> None:
        """Forward nothing, either way, on open and new connections; close nothing."""
        self._call(lambda: self._set_fault(Fault.BLACK_HOLE))

    def set_latency(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` (both directions, order kept); 0 removes it.

        Raises:
            ValueError: ``seconds`` is negative or not a finite number.
        """
        if not _is_number(seconds) or seconds < 0 or math.isinf(seconds):
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {seconds!r}")
        self._call(lambda: self._apply(latency=float(seconds)))

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        """Pace each direction of each connection to ``bytes_per_second``; ``None`` lifts it.

        Raises:
            ValueError: the rate is not a finite number > 0 (or ``None``).
        """
        if bytes_per_second is not None and (
            not _is_number(bytes_per_second)
            or not bytes_per_second > 0
            or math.isinf(bytes_per_second)
        ):
            raise ValueError(
                f"bandwidth must be a finite number of bytes per second > 0, got {bytes_per_second!r}"
            )
        rate = None if bytes_per_second is None else float(bytes_per_second)
        self._call(lambda: self._apply(bandwidth=rate))

    def reset(self) -> int:
        """Reset every open connection once (RST both ways) and keep serving; returns how many."""
        return self._call(self._reset_all)

    def heal(self) -> None:
        """Clear the fault, the latency and the bandwidth limit; held data flows again.

        Raises:
            OSError: leaving ``refuse`` the port cannot be listened on again (the
                fault stays; call ``heal`` again or ``close``).
        """

        async def heal() -> None:
            await self._set_fault(Fault.NONE)
            await self._apply(latency=0.0, bandwidth=None)

        self._call(heal)

    # -- the loop's side ---------------------------------------------------------------

    def _call(self, fn: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Run ``fn()`` on the proxy's loop and wait for its result."""
        portal = self._portal
        if portal is None or self._closed:
            raise RuntimeError("the FaultProxy is not running (start it, or it was closed)")
        return portal.run(fn(), timeout=_CALL_TIMEOUT)

    async def _open(self) -> None:
        self._conditions = Conditions()
        await self._listen()

    async def _apply(self, **settings: float | None) -> None:
        assert self._conditions is not None
        if "latency" in settings:
            self._conditions.latency = float(settings["latency"] or 0.0)
        if "bandwidth" in settings:
            self._conditions.bandwidth = settings["bandwidth"]
        self._conditions.changed()

    async def _set_fault(self, fault: Fault) -> None:
        assert self._conditions is not None
        if fault == Fault.REFUSE:
            await self._reset_all()
            if self._server is not None:
                self._server.close()  # closes the listening socket now
                self._server = None
                self._port.keep()
        elif self._conditions.fault == Fault.REFUSE:
            await self._listen()
        self._conditions.fault = fault
        self._conditions.changed()

    async def _reset_all(self) -> int:
        conns = list(self._conns)
        for conn in conns:
            conn.reset()
        self._conns.clear()
        if self._conditions is not None:
            self._conditions.changed()  # a held connection wakes up to find itself reset
        return len(conns)

    async def _listen(self) -> None:
        sock = self._port.bind()
        try:
            self._server = await asyncio.start_server(self._accepted, sock=sock, limit=CHUNK)
        except BaseException:
            sock.close()
            raise

    async def _teardown(self) -> None:
        if self._server is not None:
            self._server.close()  # accept nothing more, then end what is open
        handlers = list(self._conns.values())
        await self._reset_all()
        await cancel_and_wait(handlers)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._port.close()

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, not a coroutine, so that the task is ours to track and cancel
        # (asyncio's own task for a coroutine callback logs an error when cancelled on
        # some Python versions).
        assert self._conditions is not None
        conn = Connection(reader, writer, self._conditions)
        task = asyncio.get_running_loop().create_task(conn.serve(self.upstream, self._connect_timeout))
        self._conns[conn] = task
        task.add_done_callback(lambda _: self._conns.pop(conn, None))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _is_port(value: Any, *, allow_zero: bool) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (0 if allow_zero else 1) <= value <= 65535
