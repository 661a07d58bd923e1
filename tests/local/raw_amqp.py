"""A raw AMQP client for tests of the local namespace: proton's client side, without the SDK.

``RawClient`` speaks AMQP over a blocking socket so a test sees and shapes every
byte; ``RawConnection`` is one such connection with its ``$cbs`` links, each call
waiting for its answer. The SDK side (``receive_bodies``, ``round_trip``) is here
too, for tests that check a hostile client leaves well-behaved ones served.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from itertools import count
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiver
from proton import (
    Condition,
    Connection,
    Delivery,
    Endpoint,
    Link,
    Message,
    Receiver,
    Sender,
    Transport,
)

from geobus._sas import generate_sas_token
from geobus.local import DEV_KEY, DEV_KEY_NAME, LocalNamespace

LOOPBACK = "127.0.0.1"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
FUZZ_QUEUE = "fuzz"
HEALTHY_QUEUE = "healthy"


class RawClient:
    """Speaks AMQP through proton without the SDK, so tests see and shape every byte."""

    def __init__(
        self,
        port: int,
        *,
        idle_timeout: float | None = None,
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.rewrite = rewrite  # applied to every outgoing chunk: bytes proton would not write
        self.transport = Transport()
        if idle_timeout is not None:
            self.transport.idle_timeout = idle_timeout
        self.transport.sasl().allowed_mechs("ANONYMOUS")
        self.connection = Connection()
        self.connection.hostname = LOOPBACK
        self.transport.bind(self.connection)
        self.sock = socket.create_connection((LOOPBACK, port), timeout=5)
        self.sock.settimeout(0.05)
        self.sent = bytearray()
        self.waits: list[tuple[int, int]] = []
        self.received = 0
        self.server_closed = False

    def pump(self, until: Callable[[], bool], within: float = 5.0) -> bool:
        """Exchange bytes until ``until()`` holds or ``within`` seconds pass."""
        deadline = time.monotonic() + within
        while True:
            pending = self.transport.pending()
            if pending > 0:
                chunk = self.transport.peek(pending)
                if self.rewrite is not None:
                    chunk = self.rewrite(chunk)
                self.waits.append((len(self.sent), self.received))
                self.sock.sendall(chunk)
                self.sent += chunk
                self.transport.pop(pending)
            if until() or self.server_closed or time.monotonic() >= deadline:
                return until()
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                self.server_closed = True
                continue
            self.received += len(data)
            while data and self.transport.capacity() > 0:
                taken = self.transport.capacity()
                self.transport.push(data[:taken])
                data = data[taken:]

    def close(self) -> None:
        self.sock.close()


def is_active(endpoint: Connection) -> bool:
    return bool(endpoint.state & Endpoint.REMOTE_ACTIVE)


TAGS = count()


def put_token(port: int, **changes: Any) -> Message:
    """A valid put-token request for the namespace on ``port``, then ``changes``: ``body``
    replaces the token, any other name sets that application property."""
    audience = f"sb://{LOOPBACK}:{port}"
    expiry = int(time.time()) + 3600
    properties: dict[str, Any] = {
        "operation": "put-token",
        "type": "servicebus.windows.net:sastoken",
        "name": audience,
        "expiration": expiry,
    }
    body = changes.pop("body") if "body" in changes else None
    if body is None:
        body = generate_sas_token(audience, DEV_KEY_NAME, DEV_KEY, expiry)
    properties.update(changes)
    return Message(id=next(TAGS), body=body, properties=properties)


def status_of(reply: Message) -> int:
    return int((reply.properties or {}).get("status-code", 0))


class RawConnection:
    """A raw client's connection with its $cbs links; each call waits for its answer."""

    def __init__(self, port: int, *, rewrite: Callable[[bytes], bytes] | None = None) -> None:
        self.port = port
        self.client = RawClient(port, rewrite=rewrite)
        self.client.connection.open()
        self.session = self.client.connection.session()
        self.session.open()
        self.cbs_out = self.session.sender("cbs-out")
        self.cbs_out.target.address = "$cbs"
        self.cbs_out.open()
        self.cbs_in = self.session.receiver("cbs-in")
        self.cbs_in.source.address = "$cbs"
        self.cbs_in.open()
        opened = self.client.pump(lambda: is_active(self.cbs_out) and is_active(self.cbs_in))
        assert opened, "CBS links did not open"

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    @property
    def is_open(self) -> bool:
        """Whether the server still held this connection open when last heard from."""
        closed = self.client.connection.state & Endpoint.REMOTE_CLOSED
        return not self.client.server_closed and not closed

    def cbs(self, payload: bytes) -> Message:
        """Send ``payload`` as one $cbs request; the server's reply."""
        return self.request(self.cbs_out, self.cbs_in, payload)

    def node(self, address: str) -> tuple[Sender, Receiver]:
        """Open request and reply links to the request-response node at ``address``."""
        out = self.session.sender(f"node-out-{next(TAGS)}")
        out.target.address = address
        out.open()
        inbox = self.session.receiver(f"node-in-{next(TAGS)}")
        inbox.source.address = address
        inbox.open()
        assert self.client.pump(lambda: is_active(out) and is_active(inbox)), "node links refused"
        return out, inbox

    def request(self, out: Sender, inbox: Receiver, payload: bytes) -> Message:
        """Send ``payload`` on ``out``; the reply that comes back on ``inbox``."""
        inbox.flow(1)
        out.delivery(f"request-{next(TAGS)}")
        out.send(payload)
        out.advance()

        def answered() -> bool:
            current = inbox.current
            return current is not None and current.readable and not current.partial

        assert self.client.pump(answered), "no reply"
        delivery = inbox.current
        assert delivery is not None
        data = inbox.recv(delivery.pending)
        inbox.advance()
        delivery.settle()
        reply = Message()
        reply.decode(data)
        return reply

    def authenticate(self) -> None:
        # Locals only in the assertion: pytest would show a request's repr, token and all.
        status = status_of(self.cbs(bytes(put_token(self.port).encode())))
        assert status == 200, "put-token refused"

    def refusal(self, address: str, *, sender: bool) -> Condition | None:
        """Attach a sender (or receiver) link to ``address``; the server's detach error,
        or None if it did not refuse the link."""
        link: Sender | Receiver
        if sender:
            link = self.session.sender(f"link-{next(TAGS)}")
            link.target.address = address
        else:
            link = self.session.receiver(f"link-{next(TAGS)}")
            link.source.address = address
        link.open()
        if not self.client.pump(lambda: is_closed(link)):
            return None
        return link.remote_condition

    def sender(self, address: str) -> Sender:
        """An open sender link to ``address``, with credit."""
        link = self.session.sender(f"link-{next(TAGS)}")
        link.target.address = address
        link.open()
        assert self.client.pump(lambda: link.credit > 0 or is_closed(link)), "no attach reply"
        assert not is_closed(link), "sender link refused"
        return link

    def send(self, link: Sender, *payloads: bytes) -> list[Delivery]:
        """Send each payload on ``link``; the deliveries, once the server settled each."""
        deliveries = []
        for payload in payloads:
            deliveries.append(link.delivery(f"m-{next(TAGS)}"))
            link.send(payload)
            link.advance()
        settled = self.client.pump(lambda: all(d.remote_state for d in deliveries))
        assert settled, "sends unanswered"
        return deliveries


def is_closed(endpoint: Link) -> bool:
    return bool(endpoint.state & Endpoint.REMOTE_CLOSED)


def queue_address(port: int, queue: str = FUZZ_QUEUE) -> str:
    return f"amqps://{LOOPBACK}:{port}/{queue}"


def message_bytes(body: str) -> bytes:
    return bytes(Message(body=body.encode(), inferred=True).encode())


def receive_bodies(receiver: ServiceBusReceiver, count: int, within: float = 10.0) -> list[str]:
    """Receive and complete up to ``count`` messages within ``within`` seconds."""
    bodies: list[str] = []
    deadline = time.monotonic() + within
    while len(bodies) < count and time.monotonic() < deadline:
        for message in receiver.receive_messages(
            max_message_count=count - len(bodies), max_wait_time=1
        ):
            receiver.complete_message(message)
            bodies.append(str(message))
    return bodies


def round_trip(ns: LocalNamespace, body: str) -> None:
    """A fresh SDK client, retries off, sends ``body`` and receives it back."""
    with ServiceBusClient.from_connection_string(ns.connection_string, retry_total=0) as client:
        with client.get_queue_sender(HEALTHY_QUEUE) as sender:
            sender.send_messages(ServiceBusMessage(body))
        with client.get_queue_receiver(HEALTHY_QUEUE) as receiver:
            assert receive_bodies(receiver, 1) == [body]
