"""Sockets that fail the way a dead host's do: a port that refuses, a connection reset.

Shared by the local namespace's server and ``geobus.testing``'s fault proxy,
which inject the same network faults.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct

_LOG = logging.getLogger("geobus.local")
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, zero seconds: close() sends a reset


class KeptPort:
    """A TCP port that can stop listening without being given up.

    While a fault refuses connections, the port stays bound but does not listen:
    a bound socket that does not listen refuses connects, as a closed port does,
    and nothing else (a client's ephemeral port, say) can take the port before
    the fault heals. Not thread-safe.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port  # 0 until the first ``bind`` picks a free one
        self._kept: socket.socket | None = None

    def bind(self) -> socket.socket:
        """A socket bound to the port, to listen on: the one kept while refusing, or a new one.

        Raises:
            OSError: the port cannot be bound (in use, or the host is not local).
        """
        sock, self._kept = self._kept or self._bind(), None
        self.port = sock.getsockname()[1]
        return sock

    def keep(self) -> None:
        """Hold the port, not listening, until the next ``bind``.

        If it cannot be held, a warning is logged and the next ``bind`` tries again
        (and raises why, if it still cannot).
        """
        try:
            self._kept = self._bind()
        except OSError as exc:
            _LOG.warning("could not keep port %s while refusing: %r", self.port, exc)

    def close(self) -> None:
        """Give the port up. Safe to call twice."""
        if self._kept is not None:
            self._kept.close()
            self._kept = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        return sock


def arm_reset(sock: socket.socket) -> None:
    """Make closing ``sock`` send a reset (RST), not an orderly FIN: the connection is dropped."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
