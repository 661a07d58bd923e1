"""``FaultProxy`` with plain sockets: an echo server on loopback behind it.

Time bounds are lower bounds for injected delays (the fault must cost at least
that much) and generous upper bounds only to prove that something did not hang.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from geobus.local import Fault
from geobus.testing import FaultProxy, eventually

from .helpers import (
    LOOPBACK,
    PROMPTLY,
    EchoServer,
    connect,
    nothing_arrives,
    recv_exactly,
)

pytestmark = pytest.mark.timeout(30)

# Long enough to tell "held" from "forwarded" on a loaded two-core machine.
QUIET = 0.3


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.address) as proxy:
        yield proxy


def round_trip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return recv_exactly(sock, len(data))


def assert_reset(sock: socket.socket) -> None:
    """The connection was reset, not closed: the next read raises ECONNRESET."""
    with pytest.raises(ConnectionResetError):
        sock.recv(1)


def assert_refused(address: tuple[str, int]) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5).close()


class TestForwarding:
    """Bytes flow both ways, intact and in order; closes and counts follow the client."""

    def test_round_trip_both_directions(self, proxy: FaultProxy) -> None:
        with connect(proxy.address) as sock:
            assert round_trip(sock, b"hello") == b"hello"
            payload = bytes(range(256)) * 4096  # 1 MiB, more than one chunk and queue
            assert round_trip(sock, payload) == payload

    def test_half_close_is_passed_on_and_answered(self, proxy: FaultProxy) -> None:
        with connect(proxy.address) as sock:
            sock.sendall(b"last words")
            sock.shutdown(socket.SHUT_WR)
            # The echo server sees EOF only if the proxy passed the FIN on; it then closes.
            assert recv_exactly(sock, 10) == b"last words"
            assert sock.recv(1) == b""

    def test_connection_count_follows_open_connections(self, proxy: FaultProxy) -> None:
        assert proxy.connection_count == 0
        with connect(proxy.address) as first, connect(proxy.address) as second:
            round_trip(first, b"1")
            round_trip(second, b"2")
            assert proxy.connection_count == 2
        eventually(lambda: proxy.connection_count == 0, what="closed connections to be forgotten")

    def test_unreachable_upstream_resets_the_client(self, echo: EchoServer) -> None:
        with socket.socket() as free:
            free.bind((LOOPBACK, 0))
            dead = free.getsockname()  # bound, not listening: connects are refused
            with FaultProxy(dead) as proxy, pytest.raises(ConnectionResetError):
                # The reset can come so soon that connect() itself reports it.
                with connect(proxy.address) as sock:
                    sock.recv(1)

    def test_addresses(self, echo: EchoServer) -> None:
        proxy = FaultProxy(echo.address)
        with pytest.raises(RuntimeError, match="started"):
            _ = proxy.port
        with proxy:
            assert proxy.host == LOOPBACK
            assert proxy.address == (LOOPBACK, proxy.port)
            assert proxy.endpoint == f"sb://{LOOPBACK}:{proxy.port}"
            assert proxy.upstream == echo.address
            assert repr(proxy) == (
                f"FaultProxy({LOOPBACK}:{proxy.port} -> {echo.address[0]}:{echo.address[1]}, fault='none')"
            )


class TestValidation:
    """Bad arguments fail at once, naming what is wrong."""

    @pytest.mark.parametrize(
        "upstream",
        [("127.0.0.1", 0), ("127.0.0.1", 70000), ("", 80), "127.0.0.1:80", ("127.0.0.1", "80"), ("h", True)],
    )
    def test_bad_upstream(self, upstream: object) -> None:
        with pytest.raises(ValueError, match="upstream"):
            FaultProxy(upstream)  # type: ignore[arg-type]

    def test_bad_port_and_timeout(self) -> None:
        with pytest.raises(ValueError, match="port"):
            FaultProxy((LOOPBACK, 1), port=-1)
        with pytest.raises(ValueError, match="connect_timeout"):
            FaultProxy((LOOPBACK, 1), connect_timeout=0)

    @pytest.mark.parametrize("seconds", [-0.1, float("nan"), float("inf"), True, "1"])
    def test_bad_latency(self, proxy: FaultProxy, seconds: object) -> None:
        with pytest.raises(ValueError, match="latency"):
            proxy.set_latency(seconds)  # type: ignore[arg-type]
        assert proxy.latency == 0.0

    @pytest.mark.parametrize("rate", [0, -5, float("inf"), float("nan"), False])
    def test_bad_bandwidth(self, proxy: FaultProxy, rate: object) -> None:
        with pytest.raises(ValueError, match="bandwidth"):
            proxy.set_bandwidth(rate)  # type: ignore[arg-type]
        assert proxy.bandwidth is None

    def test_faults_need_a_running_proxy(self, echo: EchoServer) -> None:
        proxy = FaultProxy(echo.address)
        with pytest.raises(RuntimeError, match="not running"):
            proxy.black_hole()
        proxy.start()
        proxy.close()
        with pytest.raises(RuntimeError, match="not running"):
            proxy.heal()
        with pytest.raises(RuntimeError, match="closed"):
            proxy.start()


class TestRefuse:
    """``refuse``: open connections are reset, new ones refused, until ``heal``."""

    def test_open_connections_reset_and_new_ones_refused(self, proxy: FaultProxy) -> None:
        with connect(proxy.address) as sock:
            round_trip(sock, b"before")
            proxy.refuse()
            assert proxy.fault == Fault.REFUSE
            assert_reset(sock)
        assert_refused(proxy.address)
        assert proxy.connection_count == 0

    def test_heal_serves_again_on_the_same_port(self, proxy: FaultProxy) -> None:
        port = proxy.port
        proxy.refuse()
        assert_refused(proxy.address)
        proxy.heal()
        assert proxy.port == port and proxy.fault == Fault.NONE
        with connect(proxy.address) as sock:
            assert round_trip(sock, b"after") == b"after"

    def test_refusing_twice_and_switching_faults(self, proxy: FaultProxy) -> None:
        proxy.refuse()
        proxy.refuse()
        proxy.black_hole()  # leaving refuse listens again, then holds everything
        with connect(proxy.address) as sock:
            sock.sendall(b"x")
            assert nothing_arrives(sock, QUIET)
            proxy.heal()
            assert recv_exactly(sock, 1) == b"x"


class TestBlackHole:
    """``black_hole``: nothing is forwarded either way and nothing is closed; ``heal`` releases it."""

    def test_open_connection_is_held_then_released(self, proxy: FaultProxy, echo: EchoServer) -> None:
        with connect(proxy.address) as sock:
            round_trip(sock, b"warm")
            received = echo.received
            proxy.black_hole()
            sock.sendall(b"into the hole")
            assert nothing_arrives(sock, QUIET)
            assert echo.received == received, "the upstream got bytes through a black hole"
            assert proxy.connection_count == 1
            proxy.heal()
            assert recv_exactly(sock, 13) == b"into the hole"

    def test_upstream_replies_are_held_too(self, proxy: FaultProxy, echo: EchoServer) -> None:
        with connect(proxy.address) as sock:
            proxy.set_latency(QUIET)  # the request gets out; the echo is still on its way back
            sock.sendall(b"ping")
            eventually(lambda: echo.received >= 4, what="the request upstream")
            proxy.black_hole()
            assert nothing_arrives(sock, QUIET * 2)
            proxy.heal()
            assert recv_exactly(sock, 4) == b"ping"

    def test_new_connections_are_accepted_but_go_nowhere(self, proxy: FaultProxy, echo: EchoServer) -> None:
        proxy.black_hole()
        with connect(proxy.address) as sock:  # TCP accepts: the proxy's kernel answers
            sock.sendall(b"anyone?")
            eventually(lambda: proxy.connection_count == 1, what="the proxy to accept")
            assert nothing_arrives(sock, QUIET)
            assert echo.accepted == 0, "a black hole opened a connection upstream"
            proxy.heal()
            assert recv_exactly(sock, 7) == b"anyone?"
            assert echo.accepted == 1


class TestLatency:
    """``set_latency``: each chunk is held at least that long, each way, in order."""

    def test_round_trip_takes_at_least_twice_the_latency(self, proxy: FaultProxy) -> None:
        with connect(proxy.address) as sock:
            round_trip(sock, b"warm")
            proxy.set_latency(0.2)
            started = time.monotonic()
            round_trip(sock, b"slow")
            assert time.monotonic() - started >= 0.4
            assert proxy.latency == 0.2

    def test_new_connections_get_it_too(self, proxy: FaultProxy) -> None:
        proxy.set_latency(0.2)
        with connect(proxy.address) as sock:
            started = time.monotonic()
            round_trip(sock, b"slow")
            assert time.monotonic() - started >= 0.4

    def test_order_is_kept_across_many_chunks(self, proxy: FaultProxy) -> None:
        proxy.set_latency(0.05)
        with connect(proxy.address) as sock:
            for i in range(50):
                sock.sendall(b"%03d" % i)
            assert recv_exactly(sock, 150) == b"".join(b"%03d" % i for i in range(50))

    def test_heal_releases_held_chunks(self, proxy: FaultProxy) -> None:
        with connect(proxy.address) as sock:
            proxy.set_latency(60)
            sock.sendall(b"held")
            assert nothing_arrives(sock, QUIET)
            proxy.heal()
            assert recv_exactly(sock, 4) == b"held"  # the socket's timeout is far below 60 s


class TestBandwidth:
    """``set_bandwidth``: bytes per second per direction; ``heal`` lifts the limit."""

    RATE = 50_000

    def test_bytes_take_at_least_their_time(self, proxy: FaultProxy) -> None:
        size = 100_000
        with connect(proxy.address) as sock:
            proxy.set_bandwidth(self.RATE)
            assert proxy.bandwidth == self.RATE
            started = time.monotonic()
            sender = threading.Thread(target=sock.sendall, args=(b"b" * size,))
            sender.start()
            try:
                assert recv_exactly(sock, size) == b"b" * size
            finally:
                sender.join(PROMPTLY)
            elapsed = time.monotonic() - started
        # Each slice is paid for after it is written: the last one may still be in
        # flight, so the lower bound leaves one slice (1/50 s of data) out.
        assert elapsed >= (size - self.RATE / 50) / self.RATE

    def test_heal_lifts_the_limit(self, proxy: FaultProxy) -> None:
        with connect(proxy.address) as sock:
            proxy.set_bandwidth(10)  # 10 bytes per second: a megabyte would take a day
            proxy.heal()
            assert proxy.bandwidth is None
            payload = b"f" * 1_000_000
            sender = threading.Thread(target=sock.sendall, args=(payload,))
            sender.start()
            try:
                assert recv_exactly(sock, len(payload)) == payload
            finally:
                sender.join(PROMPTLY)



class TestReset:
    """``reset``: every open connection is reset once; the proxy keeps serving."""

    def test_reset_open_connections_then_serve(self, proxy: FaultProxy) -> None:
        first, second = connect(proxy.address), connect(proxy.address)
        with first, second:
            round_trip(first, b"1")
            round_trip(second, b"2")
            assert proxy.reset() == 2
            assert_reset(first)
            assert_reset(second)
        assert proxy.connection_count == 0
        assert proxy.fault == Fault.NONE
        with connect(proxy.address) as sock:
            assert round_trip(sock, b"again") == b"again"
        eventually(lambda: proxy.connection_count == 0, what="the closed connection to be forgotten")
        assert proxy.reset() == 0

    def test_reset_reaches_black_holed_connections(self, proxy: FaultProxy) -> None:
        proxy.black_hole()
        with connect(proxy.address) as sock:
            eventually(lambda: proxy.connection_count == 1, what="the proxy to accept")
            assert proxy.reset() == 1
            assert_reset(sock)


class TestClose:
    """``close`` stops the thread, resets every connection and frees the port."""

    def test_close_frees_the_port_and_the_thread(self, echo: EchoServer) -> None:
        proxy = FaultProxy(echo.address).start()
        port = proxy.port
        sock = connect(proxy.address)
        with sock:
            round_trip(sock, b"x")
            proxy.black_hole()  # a held connection must not keep close() waiting
            sock.sendall(b"held")
            proxy.close()
            proxy.close()  # idempotent
            assert_reset(sock)
        assert not [t for t in threading.enumerate() if t.name == "geobus-fault-proxy"]
        with socket.socket() as rebound:
            rebound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rebound.bind((LOOPBACK, port))
            rebound.listen()

    def test_close_while_refusing_frees_the_port(self, echo: EchoServer) -> None:
        with FaultProxy(echo.address) as proxy:
            port = proxy.port
            proxy.refuse()
        with socket.socket() as rebound:
            rebound.bind((LOOPBACK, port))  # EADDRINUSE if the reserved socket was kept

    def test_a_fixed_port_is_used(self, echo: EchoServer) -> None:
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
        with FaultProxy(echo.address, port=port) as proxy, connect((LOOPBACK, port)) as sock:
            assert proxy.port == port
            assert round_trip(sock, b"fixed") == b"fixed"
