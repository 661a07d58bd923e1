"""Malformed, truncated and abandoned connections must not hurt the local namespace.

Every case is drawn from a seeded ``random.Random``, so a failure names a case number
that reproduces it. Payloads stay out of reprs and assertion messages: the recorded
session carries a SAS token.
"""

from __future__ import annotations

import logging
import random
import socket
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from proton import (
    Delivery,
    Endpoint,
    Message,
)

from geobus._sas import generate_sas_token, parse_sas_token
from geobus.local import DEV_KEY, DEV_KEY_NAME, LocalNamespace
from geobus.testing import eventually

from .raw_amqp import (
    AMQP_HEADER,
    FUZZ_QUEUE,
    HEALTHY_QUEUE,
    LOOPBACK,
    SASL_HEADER,
    TAGS,
    RawClient,
    RawConnection,
    is_active,
    message_bytes,
    put_token,
    queue_address,
    receive_bodies,
    round_trip,
    status_of,
)

pytestmark = pytest.mark.timeout(120)

SEED = 20_240_611
# An empty AMQP frame: size 8, data offset 2, type 0 (AMQP), channel 0.
HEARTBEAT = b"\x00\x00\x00\x08\x02\x00\x00\x00"
# How long a replay waits for an answer the recorded client got; damaged bytes may
# never get it, so this bounds each case rather than proving anything.
ANSWER_WAIT = 1.0


@dataclass(frozen=True)
class _Stream:
    """Client bytes, and where the recorded client waited for the server before going on.

    ``waits`` holds (offset, answered): the bytes from ``offset`` on were sent once the
    server had sent ``answered`` bytes in all; a replay must wait the same way, or the
    server rightly refuses pipelined frames (a transfer before its begin, say).
    """

    data: bytes = field(repr=False)
    waits: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    signature: str = field(default="", repr=False)  # of the SAS token in ``data``, if any

    def __repr__(self) -> str:
        return f"<{len(self.data)} bytes, {len(self.waits)} waits>"


def _record_session(port: int, count: int = 2) -> _Stream:
    """What a well-behaved client sends to authenticate and send ``count`` messages."""
    client = RawClient(port)
    try:
        connection = client.connection
        connection.open()
        session = connection.session()
        session.open()
        cbs_out = session.sender("cbs-out")
        cbs_out.target.address = "$cbs"
        cbs_out.open()
        cbs_in = session.receiver("cbs-in")
        cbs_in.source.address = "$cbs"
        cbs_in.open()
        cbs_in.flow(1)
        assert client.pump(lambda: is_active(cbs_out) and is_active(cbs_in)), "CBS links did not open"

        audience = f"sb://{LOOPBACK}:{port}"
        expiry = int(time.time()) + 3600
        token = generate_sas_token(audience, DEV_KEY_NAME, DEV_KEY, expiry)
        request = Message(
            id=1,
            body=token,
            properties={
                "operation": "put-token",
                "type": "servicebus.windows.net:sastoken",
                "name": audience,
                "expiration": expiry,
            },
        )
        cbs_out.delivery(b"token")
        cbs_out.send(request.encode())
        cbs_out.advance()
        assert client.pump(lambda: cbs_in.current is not None), "no put-token reply"

        sender = session.sender("entity-out")
        sender.target.address = f"amqps://{LOOPBACK}:{port}/{FUZZ_QUEUE}"
        sender.open()
        assert client.pump(lambda: is_active(sender) and sender.credit > 0), "entity link refused"
        deliveries = []
        for index in range(count):
            deliveries.append(sender.delivery(f"m{index}".encode()))
            # A data section, as the SDK sends it, so its receivers read plain text back.
            sender.send(Message(body=f"recorded-{index}".encode(), inferred=True).encode())
            sender.advance()
        assert client.pump(lambda: all(d.remote_state for d in deliveries)), "sends unanswered"

        connection.close()
        assert client.pump(lambda: bool(connection.state & Endpoint.REMOTE_CLOSED)), "no close"
        return _Stream(bytes(client.sent), tuple(client.waits), parse_sas_token(token).signature)
    finally:
        client.close()


# -- garbage ----------------------------------------------------------------------------

# Not AMQP from the first bytes on: the server must hang up by itself. (An HTTP
# request goes to the administration API, which answers one without a token and
# hangs up.)
REFUSED_KINDS = (
    "random",
    "http",
    "bad-version",
    "amqp-then-garbage",
    "sasl-then-junk",
    "huge-frame",
    "tiny-frame",
)
# A recorded session cut, flipped or spliced, or a frame proton skips (an unknown
# performative): the server may well wait for more, so the client then half-closes
# (the server must hang up), closes, or resets.
# A TLS hello cut short is the administration API's: it waits for the rest of the record.
DAMAGED_KINDS = ("truncated", "flipped", "spliced", "bad-performative", "tls-hello")


@dataclass(frozen=True)
class _Case:
    number: int
    kind: str
    stream: _Stream
    ending: str  # "wait" for the server to hang up; "fin" and wait; "close"; "reset"


def _frame(body: bytes) -> bytes:
    return struct.pack(">IBBH", 8 + len(body), 2, 0, 0) + body


def _garbage(kind: str, rng: random.Random, recording: _Stream) -> _Stream:
    if kind == "random":
        return _Stream(b"\x00" + rng.randbytes(rng.randrange(7, 2048)))  # never "AMQP"
    if kind == "http":
        return _Stream(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    if kind == "tls-hello":
        return _Stream(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(64))
    if kind == "bad-version":
        return _Stream(b"AMQP\x00\x02\x00\x00" + rng.randbytes(16))
    if kind == "amqp-then-garbage":
        return _Stream(AMQP_HEADER + b"\xff" + rng.randbytes(rng.randrange(8, 512)))
    if kind == "sasl-then-junk":
        return _Stream(SASL_HEADER + b"\xff" + rng.randbytes(rng.randrange(8, 512)))
    if kind == "huge-frame":
        return _Stream(AMQP_HEADER + struct.pack(">IBBH", 0xFFFFFFF0, 2, 0, 0))
    if kind == "tiny-frame":
        return _Stream(AMQP_HEADER + struct.pack(">IBBH", 4, 2, 0, 0))
    if kind == "bad-performative":
        return _Stream(AMQP_HEADER + _frame(b"\x00\x53\x99\x45" + rng.randbytes(8)))
    data = recording.data
    if kind == "truncated":
        return _Stream(data[: rng.randrange(1, len(data))], recording.waits)
    if kind == "flipped":
        buffer = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
        return _Stream(bytes(buffer), recording.waits)
    if kind == "spliced":
        cut = rng.randrange(len(data))
        return _Stream(data[:cut] + rng.randbytes(rng.randrange(1, 64)), recording.waits)
    raise AssertionError(f"unknown case kind {kind}")


def _cases(
    rng: random.Random, recording: _Stream, count: int, kinds: tuple[str, ...]
) -> list[_Case]:
    cases = []
    for number in range(count):
        kind = kinds[number % len(kinds)]
        ending = "wait" if kind in REFUSED_KINDS else rng.choice(["fin", "close", "reset"])
        cases.append(_Case(number, kind, _garbage(kind, rng, recording), ending))
    return cases


def _pieces(rng: random.Random, data: bytes) -> Iterator[bytes]:
    """``data`` in random pieces, so that frames straddle the server's reads."""
    start = 0
    while start < len(data):
        end = start + rng.randrange(1, 512)
        yield data[start:end]
        start = end


def _play(sock: socket.socket, rng: random.Random, stream: _Stream) -> bool:
    """Send ``stream`` in random pieces, waiting for answers where its client did.

    Returns False as soon as the server hangs up.
    """
    data, heard, sent = stream.data, 0, 0
    diverged = False  # once an answer does not come, the rest goes out unpaced
    for offset, answered in [*stream.waits, (len(data), 0)]:
        offset = min(offset, len(data))
        sock.settimeout(5.0)
        for piece in _pieces(rng, data[sent:offset]):
            try:
                sock.sendall(piece)
            except ConnectionError:
                return False
        sent = offset
        deadline = time.monotonic() + ANSWER_WAIT
        while not diverged and heard < answered:
            sock.settimeout(max(0.0, deadline - time.monotonic()) or 0.001)
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                diverged = True
                break
            except ConnectionError:
                return False
            if not answer:
                return False
            heard += len(answer)
    return True


def _hangs_up(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (reading what it says)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def _run_case(port: int, case: _Case) -> bool | None:
    """Play one case; returns whether the server hung up by itself (None: not watched)."""
    rng = random.Random(SEED + case.number)
    sock = socket.create_connection((LOOPBACK, port), timeout=5)
    try:
        if not _play(sock, rng, case.stream):
            return True
        if case.ending == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return None
        if case.ending == "close":
            return None
        if case.ending == "fin":
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                return True  # already reset by the server
        return _hangs_up(sock, within=10.0)
    finally:
        sock.close()


# -- the healthy side -----------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _server_log() -> Iterator[list[str]]:
    """Every line the local namespace logs, at any level, kept from pytest's capture (and
    so from its failure report): what they might leak is what is being checked."""
    logger = logging.getLogger("geobus.local")
    handler = _Lines()
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler.lines
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.removeHandler(handler)


@pytest.fixture
def recording(namespace: LocalNamespace) -> _Stream:
    """A working client session against ``namespace``; the messages it sent are removed."""
    stream = _record_session(namespace.port)
    with ServiceBusClient.from_connection_string(
        namespace.connection_string, retry_total=0
    ) as client:
        with client.get_queue_receiver(FUZZ_QUEUE) as receiver:
            assert sorted(receive_bodies(receiver, 2)) == ["recorded-0", "recorded-1"]
    assert namespace.counts() == {}
    return stream


# -- one raw connection, one request at a time ---------------------------------------

# Rewritten on the wire into bytes that are not UTF-8 (proton only writes valid text).
NOT_UTF8_PLACEHOLDER = b"NOT-UTF8"
NOT_UTF8 = b"\xff\xfe\xc3\x28\xa0\xa1\xf0\x28"


def _not_utf8(chunk: bytes) -> bytes:
    return chunk.replace(NOT_UTF8_PLACEHOLDER, NOT_UTF8)


@contextmanager
def _no_connection_closed_by_error() -> Iterator[None]:
    with _server_log() as log:
        yield
    closed = [line for line in log if "closing a connection" in line]
    assert not closed, closed


# -- tests ------------------------------------------------------------------------------


class TestRecordedSession:
    """The fuzz corpus is a working session: replayed in random pieces, it sends again."""

    def test_replay_enqueues_the_same_messages_and_the_server_hangs_up_after_close(
        self, namespace: LocalNamespace, recording: _Stream
    ) -> None:
        with socket.create_connection((LOOPBACK, namespace.port), timeout=5) as sock:
            assert _play(sock, random.Random(SEED), recording), "the server hung up mid-session"
            assert _hangs_up(sock, within=10.0), "the server kept a closed connection open"
        eventually(lambda: namespace.counts() == {FUZZ_QUEUE: 2}, within=10.0, what=namespace.counts)


class TestGarbage:
    """Garbage on a socket closes that connection, and only that one."""

    def test_server_hangs_up_on_every_connection_that_is_not_amqp(
        self, namespace: LocalNamespace
    ) -> None:
        cases = _cases(random.Random(SEED), _Stream(b""), 3 * len(REFUSED_KINDS), REFUSED_KINDS)
        for case in cases:
            assert _run_case(namespace.port, case), (
                f"case {case.number} ({case.kind}): the server kept the connection open"
            )
        eventually(
            lambda: namespace.connection_count == 0,
            within=10.0,
            what=lambda: f"{namespace.connection_count} garbage connections left open",
        )
        round_trip(namespace, "after-garbage")

    def test_concurrent_garbage_leaves_open_clients_and_the_server_working(
        self, namespace: LocalNamespace, recording: _Stream
    ) -> None:
        cases = _cases(random.Random(SEED), recording, 300, REFUSED_KINDS + DAMAGED_KINDS)
        with ServiceBusClient.from_connection_string(
            namespace.connection_string, retry_total=0
        ) as client:
            with (
                client.get_queue_sender(HEALTHY_QUEUE) as sender,
                client.get_queue_receiver(HEALTHY_QUEUE) as receiver,
            ):
                sender.send_messages(ServiceBusMessage("before"))
                assert receive_bodies(receiver, 1) == ["before"]
                healthy = namespace.connection_count

                with _server_log() as log, ThreadPoolExecutor(max_workers=32) as pool:
                    outcomes = list(pool.map(lambda case: _run_case(namespace.port, case), cases))

                secrets = (recording.signature, quote_plus(recording.signature))
                leaks = sum(1 for line in log if any(secret in line for secret in secrets))
                assert leaks == 0, f"{leaks} server log lines quote the SAS signature"

                kept_open = [
                    c.number for c, hung_up in zip(cases, outcomes, strict=True) if hung_up is False
                ]
                assert not kept_open, f"cases {kept_open}: the server did not hang up"
                # Retries are off: had these two connections been reset, this would raise.
                sender.send_messages(ServiceBusMessage("during"))
                assert receive_bodies(receiver, 1) == ["during"]
                eventually(
                    lambda: namespace.connection_count == healthy,
                    within=15.0,
                    what=lambda: f"{namespace.connection_count - healthy} abandoned connections left open",
                )
        round_trip(namespace, "after")

    def test_a_client_that_stops_mid_frame_is_dropped_when_it_leaves(
        self, namespace: LocalNamespace
    ) -> None:
        with socket.create_connection((LOOPBACK, namespace.port), timeout=5) as sock:
            sock.sendall(AMQP_HEADER + struct.pack(">IBBH", 64, 2, 0, 0) + b"\x00\x53\x10")
            eventually(lambda: namespace.connection_count == 1, within=5.0, what="one connection open")
            round_trip(namespace, "while-a-frame-is-half-sent")
        eventually(lambda: namespace.connection_count == 0, within=5.0, what="no connection open")


class TestIdleClients:
    """A raw client that goes quiet is kept alive with heartbeats, as its open frame asks."""

    def test_server_sends_heartbeats_within_the_clients_idle_timeout(
        self, namespace: LocalNamespace
    ) -> None:
        client = RawClient(namespace.port, idle_timeout=1.0)
        try:
            client.connection.open()
            assert client.pump(lambda: is_active(client.connection)), "the connection did not open"
            # The client now stays silent and only listens.
            heard = bytearray()
            deadline = time.monotonic() + 3.0
            while heard.count(HEARTBEAT) < 2 and time.monotonic() < deadline:
                try:
                    data = client.sock.recv(4096)
                except TimeoutError:
                    continue
                assert data, "the server closed an idle connection"
                heard += data
            assert heard.count(HEARTBEAT) >= 2, f"{heard.count(HEARTBEAT)} heartbeats in 3 s"
        finally:
            client.close()


def _cbs_undecodable(port: int) -> bytes:
    return b"not an AMQP message"


def _cbs_not_utf8(port: int) -> bytes:
    token = "SharedAccessSignature sr=x&sig=" + NOT_UTF8_PLACEHOLDER.decode() + "&se=1"
    return _not_utf8(bytes(put_token(port, body=token).encode()))


def _cbs_properties_list(port: int) -> bytes:
    encoded = bytes(Message(id=next(TAGS), body="SharedAccessSignature x").encode())
    body_at = encoded.index(b"\x00\x53\x77")
    return encoded[:body_at] + b"\x00\x53\x74\xc0\x02\x01\x41" + encoded[body_at:]


# A put-token request the server cannot use: each once closed the whole connection.
BAD_PUT_TOKENS: dict[str, Callable[[int], bytes]] = {
    "undecodable": _cbs_undecodable,
    "token-not-utf8": _cbs_not_utf8,
    "application-properties-list": _cbs_properties_list,
    "token-not-a-string": lambda port: bytes(put_token(port, body=12345).encode()),
    "token-binary": lambda port: bytes(put_token(port, body=b"SharedAccessSignature x").encode()),
    "name-not-a-string": lambda port: bytes(put_token(port, name=42).encode()),
    "operation-not-a-string": lambda port: bytes(put_token(port, operation=7).encode()),
}

# Link addresses that name no entity; each once closed the whole connection.
BAD_ADDRESSES = {
    "not-utf8": f"amqps://{LOOPBACK}/{NOT_UTF8_PLACEHOLDER.decode()}",
    "unclosed-ipv6-host": "amqps://[::1/q",
    "invalid-ipv6-host": "amqps://[zz]/q",
    "stray-bracket": f"amqps://{LOOPBACK}]/q",
}

# Transfers that are not well-formed messages.
BAD_TRANSFERS = {
    "annotations-list": b"\x00\x53\x72\xc0\x03\x01\xa1\x00\x00\x53\x77\x41",
    "header-string": b"\x00\x53\x70\xa1\x03abc\x00\x53\x77\x41",
    "cut-descriptor": b"\x00\x80\x00\x00",
    "deeply-described": b"\x00\x53\x77" + b"\x00" * 5000,
    "header-priority-string": b"\x00\x53\x70\xc0\x05\x02\x40\xa1\x01x\x00\x53\x77\x41",
}


class TestMalformedRequests:
    """A bad request fails that request (or link, or transfer) with an AMQP error; the
    connection stays open and so does every other."""

    @pytest.mark.parametrize("payload", BAD_PUT_TOKENS.values(), ids=BAD_PUT_TOKENS.keys())
    def test_a_bad_put_token_gets_an_error_status_on_cbs(
        self, namespace: LocalNamespace, payload: Callable[[int], bytes]
    ) -> None:
        connection = RawConnection(namespace.port, rewrite=_not_utf8)
        try:
            with _no_connection_closed_by_error():
                status = status_of(connection.cbs(payload(namespace.port)))
                assert 400 <= status < 500
                # The same connection goes on: a good token, then a send.
                connection.authenticate()
                sender = connection.sender(queue_address(namespace.port))
                [sent] = connection.send(sender, message_bytes("after-a-bad-put-token"))
                assert sent.remote_state == Delivery.ACCEPTED
                assert connection.is_open, "the server closed the connection"
        finally:
            connection.close()
        round_trip(namespace, "other-clients-work")
        assert namespace.counts() == {FUZZ_QUEUE: 1}

    def test_a_bad_put_token_reply_is_correlated_when_the_request_decodes(
        self, namespace: LocalNamespace
    ) -> None:
        connection = RawConnection(namespace.port)
        try:
            request = put_token(namespace.port, name=42)
            request_id, payload = request.id, bytes(request.encode())
            reply = connection.cbs(payload)
            status, correlation_id = status_of(reply), reply.correlation_id
            assert (status, correlation_id) == (400, request_id)
        finally:
            connection.close()

    @pytest.mark.parametrize(
        "body",
        [
            {"from-sequence-number": "first", "message-count": 1},
            {"from-sequence-number": 1, "message-count": [1]},
        ],
        ids=["sequence-number-text", "count-a-list"],
    )
    def test_a_bad_management_request_gets_an_error_status(
        self, namespace: LocalNamespace, body: dict[str, Any]
    ) -> None:
        connection = RawConnection(namespace.port)
        try:
            with _no_connection_closed_by_error():
                connection.authenticate()
                out, inbox = connection.node(f"{queue_address(namespace.port)}/$management")
                request = Message(
                    id=next(TAGS),
                    body=body,
                    properties={"operation": "com.microsoft:peek-message"},
                )
                reply = connection.request(out, inbox, bytes(request.encode()))
                assert (reply.properties or {}).get("statusCode") == 400
                link = connection.sender(queue_address(namespace.port))
                [sent] = connection.send(link, message_bytes("after-a-bad-request"))
                assert sent.remote_state == Delivery.ACCEPTED
                assert connection.is_open, "the server closed the connection"
        finally:
            connection.close()

    @pytest.mark.parametrize("sender", [True, False], ids=["sender", "receiver"])
    @pytest.mark.parametrize("address", BAD_ADDRESSES.values(), ids=BAD_ADDRESSES.keys())
    def test_a_bad_link_address_refuses_that_link(
        self, namespace: LocalNamespace, address: str, sender: bool
    ) -> None:
        connection = RawConnection(namespace.port, rewrite=_not_utf8)
        try:
            with _no_connection_closed_by_error():
                connection.authenticate()
                condition = connection.refusal(address, sender=sender)
                assert condition is not None, "the link was not refused"
                assert condition.name in ("amqp:invalid-field", "amqp:not-found")
                assert condition.info, "the SDK cannot read an error without info"
                link = connection.sender(queue_address(namespace.port))
                [sent] = connection.send(link, message_bytes("after-a-bad-address"))
                assert sent.remote_state == Delivery.ACCEPTED
                assert connection.is_open, "the server closed the connection"
        finally:
            connection.close()
        round_trip(namespace, "other-clients-work")
        assert namespace.counts() == {FUZZ_QUEUE: 1}

    def test_malformed_transfers_are_rejected_with_decode_error(
        self, namespace: LocalNamespace
    ) -> None:
        connection = RawConnection(namespace.port)
        try:
            with _no_connection_closed_by_error():
                connection.authenticate()
                link = connection.sender(queue_address(namespace.port))
                for kind, payload in BAD_TRANSFERS.items():
                    [sent] = connection.send(link, payload)
                    condition = sent.remote.condition
                    assert sent.remote_state == Delivery.REJECTED, kind
                    assert condition is not None and condition.name == "amqp:decode-error", kind
                    assert condition.info, f"{kind}: the SDK cannot read an error without info"
                [sent] = connection.send(link, message_bytes("after-bad-transfers"))
                assert sent.remote_state == Delivery.ACCEPTED
                assert connection.is_open, "the server closed the connection"
        finally:
            connection.close()
        assert namespace.counts() == {FUZZ_QUEUE: 1}
