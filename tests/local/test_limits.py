"""The local namespace's limits: no local process can stop it serving others or grow it
without bound.

Each test sets a short limit and checks what happens at it, with raw AMQP clients
(proton, ``raw_amqp``) for the hostile side and the real azure-servicebus
client for the well-behaved one. Where a deadline must have passed, a witness
connection that the same deadline closes is polled, rather than a sleep. The tests
that run ``geobus local`` as a process print its memory (VmRSS) along the way; they
assert only bounds far from what the unbounded server reached.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import ServiceBusError
from proton import Condition, Delivery, Endpoint, Link

from geobus._cli.local import _limits, add_arguments
from geobus.local import Limits, LocalNamespace, LocalNamespaceProcess
from geobus.local._limits import AcceptBackoff
from geobus.testing import eventually

from .raw_amqp import (
    AMQP_HEADER,
    HEALTHY_QUEUE,
    LOOPBACK,
    SASL_HEADER,
    RawClient,
    RawConnection,
    is_active,
    is_closed,
    message_bytes,
    put_token,
    queue_address,
    receive_bodies,
    round_trip,
)

pytestmark = pytest.mark.timeout(120)

RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
UNAUTHORIZED = "amqp:unauthorized-access"
MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
SHORT = 0.5  # a handshake or idle limit a test waits out


def _connect(port: int, greeting: bytes = b"") -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=5)
    if greeting:
        sock.sendall(greeting)
    return sock


def _all_hung_up(socks: list[socket.socket], within: float) -> bool:
    """Whether the server closes every socket in ``socks`` within ``within`` seconds."""
    open_socks = set(socks)
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        deadline = _now() + within
        while open_socks and (left := deadline - _now()) > 0:
            for key, _ in selector.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    open_socks.discard(sock)
    return not open_socks


def _hung_up(sock: socket.socket, within: float) -> bool:
    return _all_hung_up([sock], within)


def _now() -> float:
    return time.monotonic()


def _pump_ticking(client: RawClient, until: Callable[[], bool], within: float) -> bool:
    """Like ``pump``, but run the client's timers: proton then sends empty frames as
    the server's advertised idle-time-out asks."""
    deadline = _now() + within
    while not until():
        if _now() >= deadline or client.server_closed:
            return until()
        client.transport.tick(_now())
        client.pump(lambda: False, within=0.05)
    return True


def _closed_with(client: RawClient, within: float = 10.0) -> Condition | None:
    """Pump until the server closes the AMQP connection; its error condition."""
    connection = client.connection
    assert client.pump(lambda: bool(connection.state & Endpoint.REMOTE_CLOSED), within), (
        "the server did not close the connection"
    )
    return connection.remote_condition


def _assert_condition(condition: Condition | None, name: str) -> None:
    assert condition is not None and condition.name == name, condition
    assert condition.info, "the SDK cannot read an error without info"


def _silent_witness(port: int) -> socket.socket:
    """A connection that sends the AMQP header and nothing more: the handshake deadline
    closes it, which shows that the deadline has passed for connections made before."""
    return _connect(port, AMQP_HEADER)


@contextmanager
def _sockets(port: int, count: int, greeting: bytes = b"") -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        yield [stack.enter_context(_connect(port, greeting)) for _ in range(count)]


def _attached(connection: RawConnection, link: Link) -> bool:
    """Attach ``link``; whether the server attached it (a sender, with credit) too."""
    link.open()
    connection.client.pump(lambda: (is_active(link) and link.credit > 0) or is_closed(link))
    return not is_closed(link)


def _detach(connection: RawConnection, link: Link) -> None:
    """Detach ``link`` and free it, once the server has detached its end."""
    link.close()
    assert connection.client.pump(lambda: is_closed(link)), "the server kept the link"
    link.free()


def _send_unfinished(client: RawClient, link: Link, size: int) -> None:
    """Start a transfer of ``size`` bytes on ``link`` that never ends, and send it."""
    link.delivery(b"unfinished")
    link.send(b"\x00" * size)
    # proton hands out one buffer at a time; ``pump`` would wait for an answer after each.
    while (pending := client.transport.pending()) > 0:
        client.sock.sendall(client.transport.peek(pending))
        client.transport.pop(pending)


def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def _port(process: LocalNamespaceProcess) -> int:
    return int(process.connection_string.split(";")[0].rsplit(":", 1)[1])


# -- settings -----------------------------------------------------------------------------


class TestSettings:
    """Limits are validated where they are made, in process and on the command line."""

    @pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "30"])
    @pytest.mark.parametrize("name", ["handshake_timeout", "idle_timeout"])
    def test_a_timeout_must_be_positive_seconds(self, name: str, value: Any) -> None:
        with pytest.raises(ValueError, match=name):
            Limits(**{name: value})

    @pytest.mark.parametrize("value", [0, -5, 1.5, True])
    @pytest.mark.parametrize(
        "name", ["max_connections", "max_links_per_connection", "max_cbs_request"]
    )
    def test_a_count_must_be_a_whole_number(self, name: str, value: Any) -> None:
        with pytest.raises(ValueError, match=name):
            Limits(**{name: value})

    def test_flags_make_the_limits(self) -> None:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        assert _limits(parser.parse_args([])) == Limits()
        args = parser.parse_args(
            ["--handshake-timeout", "0.5", "--idle-timeout", "7", "--max-connections", "3",
             "--max-links-per-connection", "9", "--max-cbs-request", "1024"]
        )  # fmt: skip
        assert _limits(args) == Limits(
            handshake_timeout=0.5,
            idle_timeout=7,
            max_connections=3,
            max_links_per_connection=9,
            max_cbs_request=1024,
        )

    @pytest.mark.parametrize("flag, value", [("--idle-timeout", "nan"), ("--max-connections", "0")])
    def test_a_bad_flag_is_refused_by_name(
        self, flag: str, value: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        with pytest.raises(SystemExit):
            parser.parse_args([flag, value])
        assert f"argument {flag}" in capsys.readouterr().err


# -- the handshake deadline -----------------------------------------------------------------


class TestHandshakeDeadline:
    """A connection that has not authorised within the deadline is closed; others go on."""

    def test_hundreds_of_silent_and_half_open_connections_are_closed_while_a_client_is_served(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(handshake_timeout=SHORT))
        with ExitStack() as stack:
            socks = [
                stack.enter_context(_connect(ns.port, greeting))
                for greeting in (b"", AMQP_HEADER, SASL_HEADER)
                for _ in range(100)
            ]
            round_trip(ns, "while-300-connections-wait")
            assert _all_hung_up(socks, within=15.0), "the server kept silent connections open"
        eventually(lambda: ns.connection_count == 0, within=5.0, what=lambda: f"{ns.connection_count} open")

    def test_an_amqp_connection_without_a_token_is_closed_with_unauthorized_access(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(handshake_timeout=SHORT))
        client = RawClient(ns.port)
        try:
            client.connection.open()
            _assert_condition(_closed_with(client), UNAUTHORIZED)
        finally:
            client.close()

    def test_an_authorised_connection_outlives_the_deadline(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(handshake_timeout=SHORT))
        connection = RawConnection(ns.port)
        try:
            connection.authenticate()
            with _silent_witness(ns.port) as witness:
                assert _hung_up(witness, within=10.0), "the deadline never passed"
            sender = connection.sender(queue_address(ns.port))
            [sent] = connection.send(sender, message_bytes("after-the-deadline"))
            assert sent.remote_state == Delivery.ACCEPTED
            assert connection.is_open
        finally:
            connection.close()

    def test_the_deadline_stands_still_while_the_server_does_not_read(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        deadline = 1.0
        ns = namespace_factory(limits=Limits(handshake_timeout=deadline))
        ns.black_hole()
        client = RawClient(ns.port)
        try:
            client.connection.open()
            session = client.connection.session()
            session.open()
            cbs_out, cbs_in = session.sender("cbs-out"), session.receiver("cbs-in")
            cbs_out.target.address = cbs_in.source.address = "$cbs"
            cbs_out.open()
            cbs_in.open()
            cbs_in.flow(1)
            # A black hole answers nothing, not even a close: three deadlines pass.
            assert not client.pump(lambda: is_active(cbs_out), within=3 * deadline)
            assert not client.server_closed
            ns.heal()
            # The clock starts again at heal: there is time to authorise.
            assert client.pump(lambda: is_active(cbs_out) and cbs_out.credit > 0)
            cbs_out.delivery(b"token")
            cbs_out.send(bytes(put_token(ns.port).encode()))
            cbs_out.advance()
            assert client.pump(lambda: cbs_in.current is not None), "no put-token reply"
            with _silent_witness(ns.port) as witness:
                assert _hung_up(witness, within=10.0), "the deadline did not run after heal"
            assert client.pump(lambda: False, within=0.1) is False and not client.server_closed
            assert not client.connection.state & Endpoint.REMOTE_CLOSED
        finally:
            ns.heal()
            client.close()


# -- the idle timeout -------------------------------------------------------------------------


class TestIdleTimeout:
    """A connection that sends nothing for the idle timeout is closed; the open frame
    advertises half, so that clients send empty frames in time."""

    def test_the_open_frame_advertises_half_the_idle_timeout(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(idle_timeout=8.0))
        client = RawClient(ns.port)
        try:
            client.connection.open()
            assert client.pump(lambda: is_active(client.connection))
            assert client.transport.remote_idle_timeout == 4.0
        finally:
            client.close()

    def test_a_silent_authorised_connection_is_closed_with_resource_limit_exceeded(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(idle_timeout=1.0))
        connection = RawConnection(ns.port)
        try:
            connection.authenticate()
            _assert_condition(_closed_with(connection.client), RESOURCE_LIMIT)
        finally:
            connection.close()
        eventually(lambda: ns.connection_count == 0, within=5.0, what="0 connections open")

    def test_a_client_that_sends_empty_frames_is_kept(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(idle_timeout=1.0))
        ticking, silent = RawConnection(ns.port), RawConnection(ns.port)
        try:
            ticking.authenticate()
            silent.authenticate()  # after the ticking one: its idle time runs out later

            def silent_closed() -> bool:
                silent.client.pump(lambda: False, within=0.01)
                return is_closed(silent.client.connection)

            assert _pump_ticking(ticking.client, silent_closed, within=10.0)
            _assert_condition(silent.client.connection.remote_condition, RESOURCE_LIMIT)
            sender = ticking.sender(queue_address(ns.port))
            [sent] = ticking.send(sender, message_bytes("after-idle-time"))
            assert sent.remote_state == Delivery.ACCEPTED
            assert ticking.is_open
        finally:
            ticking.close()
            silent.close()

    @pytest.mark.slow
    def test_the_sdk_keeps_its_connection_with_its_keep_alive(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(idle_timeout=4.0))
        with ServiceBusClient.from_connection_string(ns.connection_string, retry_total=0) as client:
            # keep_alive=1: the SDK looks every second (30 s by default, against the
            # default idle timeout's 240 s) and sends an empty frame when half of what
            # the server advertised has passed.
            with client.get_queue_sender(HEALTHY_QUEUE, keep_alive=1) as sender:
                sender.send_messages(ServiceBusMessage("first"))
                idle = RawConnection(ns.port)
                try:
                    idle.authenticate()  # after the send: its idle time runs out later
                    _closed_with(idle.client, within=20.0)
                finally:
                    idle.close()
                sender.send_messages(ServiceBusMessage("after-the-idle-timeout"))  # no retry
            with client.get_queue_receiver(HEALTHY_QUEUE) as receiver:
                assert sorted(receive_bodies(receiver, 2)) == ["after-the-idle-timeout", "first"]


# -- connections ------------------------------------------------------------------------------


class TestConnectionLimit:
    """At ``max_connections`` a new connection replaces the oldest unauthorised one, or
    is closed when every connection has authorised."""

    def test_a_client_is_served_while_silent_connections_fill_the_limit(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(max_connections=4))
        with _sockets(ns.port, 4) as silent:
            eventually(lambda: ns.connection_count == 4, within=5.0, what="4 connections open")
            round_trip(ns, "through-a-full-house")  # retries off: one try each
            assert _hung_up(silent[0], within=5.0), "the oldest silent connection was kept"
            assert ns.connection_count <= 4

    def test_when_every_connection_has_authorised_new_ones_are_closed(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(max_connections=2))
        held = [RawConnection(ns.port), RawConnection(ns.port)]
        try:
            for connection in held:
                connection.authenticate()
            with _connect(ns.port, AMQP_HEADER) as extra:
                assert _hung_up(extra, within=5.0), "a connection over the limit was kept"
            with pytest.raises(ServiceBusError):
                round_trip(ns, "over-the-limit")
            for connection in held:
                sender = connection.sender(queue_address(ns.port))
                [sent] = connection.send(sender, message_bytes("still-served"))
                assert sent.remote_state == Delivery.ACCEPTED
            held.pop().close()
            eventually(lambda: ns.connection_count == 1, within=5.0, what="1 connections open")
            round_trip(ns, "once-one-left")
        finally:
            for connection in held:
                connection.close()


# -- links ------------------------------------------------------------------------------------


class TestLinkLimit:
    """An attach beyond ``max_links_per_connection`` is refused; a detach makes room."""

    LIMIT = 4  # the two $cbs links and two more

    def test_an_attach_beyond_the_limit_is_refused_until_a_link_is_detached(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(max_links_per_connection=self.LIMIT))
        connection = RawConnection(ns.port)
        try:
            connection.authenticate()
            address = queue_address(ns.port)
            first, _ = connection.sender(address), connection.sender(address)
            refused = connection.session.sender("one-too-many")
            refused.target.address = address
            refused.open()
            assert connection.client.pump(lambda: is_closed(refused))
            _assert_condition(refused.remote_condition, RESOURCE_LIMIT)
            for link in (refused, first):  # the refused link counts until it is detached
                _detach(connection, link)
            sender = connection.sender(address)
            [sent] = connection.send(sender, message_bytes("in-the-freed-place"))
            assert sent.remote_state == Delivery.ACCEPTED
        finally:
            connection.close()

    def test_a_client_that_ignores_refusals_is_closed(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(max_links_per_connection=self.LIMIT))
        connection = RawConnection(ns.port)
        try:
            for n in range(2 * self.LIMIT):  # never detached
                link = connection.session.sender(f"ignored-{n}")
                link.target.address = "$cbs"
                link.open()
            _assert_condition(_closed_with(connection.client), RESOURCE_LIMIT)
        finally:
            connection.close()

    def test_the_open_frame_allows_as_many_sessions(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(max_links_per_connection=self.LIMIT))
        client = RawClient(ns.port)
        try:
            client.connection.open()
            assert client.pump(lambda: is_active(client.connection))
            assert client.transport.remote_channel_max == self.LIMIT - 1  # channels 0..3
        finally:
            client.close()

    def test_detached_links_are_freed(self, namespace: LocalNamespace) -> None:
        connection = RawConnection(namespace.port)
        try:
            connection.authenticate()
            before = _links_held(namespace)
            for n in range(300):
                sender = connection.session.sender(f"s-{n}")
                sender.target.address = queue_address(namespace.port)
                assert _attached(connection, sender)
                _send_unfinished(connection.client, sender, 10_000)
                _detach(connection, sender)
                replies = connection.session.receiver(f"r-{n}")
                replies.source.address = f"{queue_address(namespace.port)}/$management"
                replies.target.address = f"reply-to-{n}"  # kept by address, as well
                replies.open()
                assert connection.client.pump(lambda: is_active(replies))  # noqa: B023
                _detach(connection, replies)
            assert _links_held(namespace) == before
        finally:
            connection.close()


def _links_held(ns: LocalNamespace) -> tuple[int, int]:
    """Links proton holds for the namespace's one connection, and its reply-link entries."""

    def count() -> tuple[int, int]:
        [conn] = ns._server._conns
        links, link = 0, conn.connection.link_head(0)
        while link is not None:
            links += 1
            link = link.next(0)
        return links, len(conn.connection.reply_links)

    return ns._server.call(count)


# -- $cbs -------------------------------------------------------------------------------------


class TestCbsRequests:
    """``$cbs`` takes requests of a few KiB; a larger one detaches its link."""

    CAP = 1024

    def test_the_cbs_link_advertises_the_cap(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(max_cbs_request=self.CAP))
        connection = RawConnection(ns.port)
        try:
            assert connection.cbs_out.remote_max_message_size == self.CAP
            connection.authenticate()  # a put-token is far below it
        finally:
            connection.close()

    def test_an_unfinished_request_over_the_cap_detaches_its_link(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        ns = namespace_factory(limits=Limits(max_cbs_request=self.CAP))
        connection = RawConnection(ns.port)
        try:
            out = connection.session.sender("big-request")
            out.target.address = "$cbs"
            out.open()
            assert connection.client.pump(lambda: out.credit > 0)
            out.delivery(b"big")
            out.send(b"\x00" * (4 * self.CAP))  # never advanced: the rest never comes
            assert connection.client.pump(lambda: is_closed(out)), "the link was kept"
            _assert_condition(out.remote_condition, MESSAGE_SIZE_EXCEEDED)
            connection.authenticate()  # the connection and its other $cbs links go on
            assert connection.is_open
        finally:
            connection.close()


# -- out of descriptors -------------------------------------------------------------------------


class _Listener:
    """The server's listening socket, with ``accept()`` failing with EMFILE on demand."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.failures = 0  # accept() calls to fail from now on
        self.calls = 0
        self.lock = threading.Lock()

    def accept(self) -> tuple[socket.socket, Any]:
        with self.lock:
            self.calls += 1
            if self.failures:
                self.failures -= 1
                raise OSError(errno.EMFILE, "Too many open files")
        return self.real.accept()

    def fail(self, times: int) -> None:
        with self.lock:
            self.failures, self.calls = times, 0

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        self.real.close()


@contextmanager
def _failing_listener(ns: LocalNamespace) -> Iterator[_Listener]:
    server = ns._server

    def swap() -> _Listener:
        real = server._listener.sock
        assert real is not None
        server._selector.unregister(real)
        listener = _Listener(real)
        server._listener.sock = listener  # type: ignore[assignment]
        server._watch_listener()
        return listener

    yield server.call(swap)


class TestOutOfDescriptors:
    """``accept()`` failing with EMFILE frees a descriptor or backs off; it never spins."""

    def test_backoff_doubles_to_its_longest_and_clears(self) -> None:
        backoff = AcceptBackoff()
        waits = []
        for _ in range(7):
            backoff.failed(100.0)
            waits.append(round(backoff.resume_at - 100.0, 3))
        assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
        assert backoff.paused(100.5) and not backoff.paused(101.0)
        backoff.clear()
        assert not backoff.paused(100.0)
        backoff.failed(100.0)
        assert backoff.resume_at == 101.0  # the wait keeps growing until a success
        backoff.succeeded()
        backoff.failed(100.0)
        assert backoff.resume_at == 100.05

    def test_with_no_descriptor_free_the_server_retries_rarely_and_resumes(
        self, namespace: LocalNamespace
    ) -> None:
        held = RawConnection(namespace.port)
        try:
            held.authenticate()  # authorised: never given up for a newcomer
            with _failing_listener(namespace) as listener:
                listener.fail(10**9)
                with _connect(namespace.port, AMQP_HEADER) as waiting:
                    eventually(lambda: listener.calls >= 3, within=5.0, what="three accept() calls")
                    calls = listener.calls
                    # A second of the loop's life: spinning, it makes many thousands of calls.
                    held.client.pump(lambda: False, within=1.0)
                    assert listener.calls - calls < 50, f"{listener.calls - calls} accept() calls"
                    listener.fail(0)
                    eventually(lambda: namespace.connection_count == 2, within=5.0, what="2 connections open")
                    assert not _hung_up(waiting, within=0.1)  # accepted, and kept
            round_trip(namespace, "after-descriptors-came-back")
        finally:
            held.close()

    def test_out_of_descriptors_gives_the_oldest_unauthorised_connection_up(
        self, namespace: LocalNamespace
    ) -> None:
        with _connect(namespace.port) as silent:
            eventually(lambda: namespace.connection_count == 1, within=5.0, what="1 connections open")
            with _failing_listener(namespace) as listener:
                listener.fail(1)
                round_trip(namespace, "in-the-place-of-a-silent-connection")
            assert _hung_up(silent, within=5.0)

    @pytest.mark.slow
    def test_under_ulimit_64_silent_connections_do_not_stop_a_client(self) -> None:
        with LocalNamespaceProcess(args=["--handshake-timeout", str(SHORT)]) as process:
            assert process.pid is not None
            resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (64, 64))
            baseline = _rss_mb(process.pid)
            with _sockets(_port(process), 150) as silent:
                cpu, started = _cpu_seconds(process.pid), _now()
                bodies = asyncio.run(_async_round_trip(process.connection_string, within=60.0))
                busy = (_cpu_seconds(process.pid) - cpu) / (_now() - started)
                assert bodies == ["through-exhausted-descriptors"]
                assert _all_hung_up(silent, within=30.0)
            print(
                f"\nulimit -n 64, 150 silent connections: server CPU {busy:.0%} while a client "
                f"was served; RSS {baseline} MB -> {_rss_mb(process.pid)} MB"
            )


async def _async_round_trip(connection_string: str, *, within: float) -> list[str]:
    """Send one message and receive it with the async SDK, retries off; the bodies.

    Async, because a sync client whose connection waits unanswered in a backlog hangs
    in SASL (see test_faults), and ``within`` must bound the test."""

    async def round_trip() -> list[str]:
        async with AsyncServiceBusClient.from_connection_string(
            connection_string, retry_total=0, retry_backoff_factor=0.1
        ) as client:
            async with client.get_queue_sender(HEALTHY_QUEUE) as sender:
                await sender.send_messages(ServiceBusMessage("through-exhausted-descriptors"))
            async with client.get_queue_receiver(HEALTHY_QUEUE, max_wait_time=5) as receiver:
                messages = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
                for message in messages:
                    await receiver.complete_message(message)
                return [str(m) for m in messages]

    return await asyncio.wait_for(round_trip(), within)


# -- memory -------------------------------------------------------------------------------------


@pytest.mark.slow
class TestMemory:
    """Hostile clients cannot grow ``geobus local``; it returns near its baseline after."""

    def test_unfinished_transfers_and_attach_detach_loops_are_bounded(self) -> None:
        with LocalNamespaceProcess(args=["--handshake-timeout", "5"]) as process:
            assert process.pid is not None
            port, baseline, report = _port(process), _rss_mb(process.pid), []

            # An unauthenticated client: as many $cbs links as it may attach, each with an
            # unfinished transfer over the cap (one frame: the rest would wait on flow).
            connection = RawConnection(port)
            try:
                links = [connection.session.sender(f"cbs-{n}") for n in range(254)]
                for link in links:
                    link.target.address = "$cbs"
                    link.open()
                assert connection.client.pump(lambda: all(is_active(x) for x in links))
                for link in links:
                    _send_unfinished(connection.client, link, 20_000)
                assert connection.client.pump(lambda: all(is_closed(x) for x in links))
                report.append(("254 $cbs links with unfinished transfers", _rss_mb(process.pid)))
                assert _rss_mb(process.pid) - baseline < 30
            finally:
                connection.close()

            # An authorised client: 1000 attach, unfinished 100 kB transfer, detach
            # (before: ~160 MB never freed).
            connection = RawConnection(port)
            try:
                connection.authenticate()
                for n in range(1000):
                    link = connection.session.sender(f"loop-{n}")
                    link.target.address = queue_address(port)
                    assert _attached(connection, link)
                    _send_unfinished(connection.client, link, 100_000)
                    _detach(connection, link)
                report.append(("1000 attach/unfinished transfer/detach", _rss_mb(process.pid)))
                assert _rss_mb(process.pid) - baseline < 40
            finally:
                connection.close()

            # Hundreds of silent and half-open connections, closed by the deadline.
            with ExitStack() as stack:
                socks = [
                    stack.enter_context(_connect(port, greeting))
                    for greeting in (b"", AMQP_HEADER)
                    for _ in range(150)
                ]
                report.append(("300 silent and half-open connections", _rss_mb(process.pid)))
                assert _all_hung_up(socks, within=30.0)
            report.append(("after they were closed", _rss_mb(process.pid)))
            print(f"\ngeobus local RSS: baseline {baseline} MB")
            for what, mb in report:
                print(f"  {what}: {mb} MB")
