"""A loopback echo server and socket helpers for the proxy's tests."""

from __future__ import annotations

import contextlib
import socket
import threading

from geobus._closing import Closing

LOOPBACK = "127.0.0.1"
# "It did not hang": far above anything a healthy loopback round trip takes.
PROMPTLY = 10.0


class EchoServer(Closing):
    """Echoes every byte back on the same connection; counts connections and bytes.

    A client's half-close is answered with a full close, so the proxy's FIN
    forwarding can be seen end to end.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server((LOOPBACK, 0))
        self.address: tuple[str, int] = self._listener.getsockname()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self.received = 0
        self._accepter = threading.Thread(target=self._accept, name="echo-accept", daemon=True)
        self._accepter.start()

    def close(self) -> None:
        # shutdown() wakes a blocked accept(); close() alone does not on Linux.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepter.join(PROMPTLY)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(PROMPTLY)
        for conn in conns:
            conn.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._echo, args=(conn,), name="echo-conn", daemon=True)
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
                self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                with self._lock:
                    self.received += len(data)
                conn.sendall(data)
        except OSError:
            return  # reset by the proxy, or closed by close()
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)


def connect(address: tuple[str, int]) -> socket.socket:
    """A client socket with a timeout, so that no test can block forever on it."""
    return socket.create_connection(address, timeout=PROMPTLY)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read ``size`` bytes, or fail if the peer closes first."""
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        if not chunk:
            raise AssertionError(f"connection closed after {got} of {size} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def nothing_arrives(sock: socket.socket, within: float) -> bool:
    """True if no byte (and no close) arrives on ``sock`` for ``within`` seconds."""
    previous = sock.gettimeout()
    sock.settimeout(within)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(previous)
    return False
