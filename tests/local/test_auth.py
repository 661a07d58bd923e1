"""SAS tokens on the local namespace: whose they are, which key signs them, how long they last.

As in Service Bus: a token's audience (``sr``) must name this namespace's host, each
namespace has its own key, and a link lives no longer than its token, while the
SDK, which renews its tokens before they expire, never notices. Token bodies stay
out of assertion messages (pytest would print them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.servicebus import ServiceBusClient, ServiceBusMessage, TransportType
from azure.servicebus.exceptions import ServiceBusAuthenticationError, ServiceBusError
from proton import Delivery

from geobus._sas import ConnectionString, generate_sas_token
from geobus.local import (
    DEV_KEY,
    DEV_KEY_NAME,
    LocalNamespace,
    LocalNamespaceProcess,
    development_key,
)
from geobus.testing import FakeClock, local_pair

from .raw_amqp import (
    FUZZ_QUEUE,
    LOOPBACK,
    RawConnection,
    is_closed,
    message_bytes,
    put_token,
    queue_address,
    status_of,
)

pytestmark = pytest.mark.timeout(120)

UNAUTHORIZED = "amqp:unauthorized-access"


def _put(connection: RawConnection, audience: str, *, expiry: int, key: str = DEV_KEY) -> int:
    """Put a token for ``audience`` on ``connection``; the reply's status code."""
    token = generate_sas_token(audience, DEV_KEY_NAME, key, expiry)
    request = put_token(connection.port, body=token, name=audience, expiration=expiry)
    return status_of(connection.cbs(bytes(request.encode())))


def _moved(connection_string: str, to: LocalNamespace | str) -> str:
    """``connection_string`` (key and all) pointed at another namespace's endpoint."""
    endpoint = to if isinstance(to, str) else to.endpoint
    parsed = ConnectionString.parse(connection_string)
    return connection_string.replace(parsed.endpoint, endpoint, 1)


def _send(connection_string: str, body: str = "x") -> None:
    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage(body))


class TestAudience:
    """A token's ``sr`` must be a URL naming this namespace's host."""

    @pytest.mark.parametrize(
        ("audience", "status"),
        [
            ("sb://evil.example.com/fuzz", 401),
            ("sb://evil.example.com", 401),
            ("sb://127.0.0.2:{port}/fuzz", 401),
            ("sb://localhost.evil.example.com:{port}/fuzz", 401),
            ("sb://127.0.0.1:{port}/fuzz", 200),
            ("sb://LOCALHOST.:{port}/fuzz", 200),
            ("amqps://localhost/fuzz", 200),
            ("https://127.0.0.1:{port}/", 200),
            # A FaultProxy in front of the namespace has another port: only hosts count.
            ("sb://127.0.0.1:1/fuzz", 200),
        ],
    )
    def test_only_the_namespaces_own_host_is_accepted(
        self, namespace: LocalNamespace, audience: str, status: int
    ) -> None:
        with RawConnection(namespace.port) as connection:
            assert _put(connection, audience.format(port=namespace.port), expiry=int(time.time()) + 60) == status

    @pytest.mark.parametrize(
        "audience",
        [
            "sb://[127.0.0.1/fuzz",  # an unclosed IPv6 host: used to be read as the whole namespace
            "sb://127.0.0.1:port/fuzz",
            "fuzz",
            "/fuzz",
            "ftp://127.0.0.1/fuzz",
            "sb:///fuzz",
            "sb://user@127.0.0.1/fuzz",
            "sb://127.0.0.1/fuzz?x=1",
        ],
    )
    def test_an_unparseable_audience_is_refused(self, namespace: LocalNamespace, audience: str) -> None:
        with RawConnection(namespace.port) as connection:
            status = _put(connection, audience, expiry=int(time.time()) + 60)
            assert status == 401
            # The connection goes on: a good token still works.
            connection.authenticate()
            assert connection.is_open

    def test_hostnames_adds_names_clients_use(self, namespace_factory: Callable[..., LocalNamespace]) -> None:
        namespace = namespace_factory(hostnames=["geobus-local.test"])
        with RawConnection(namespace.port) as connection:
            expiry = int(time.time()) + 60
            assert _put(connection, "sb://geobus-local.test:5673/fuzz", expiry=expiry) == 200
            assert _put(connection, "sb://other.test:5673/fuzz", expiry=expiry) == 401

    def test_the_sdk_signing_for_another_host_is_refused(self, namespace: LocalNamespace) -> None:
        # The SDK signs sb://<its Endpoint's host:port>/<entity>; custom_endpoint_address
        # dials this namespace while the Endpoint names another host, as a token replayed
        # from another namespace would.
        dial = {"transport_type": TransportType.Amqp, "custom_endpoint_address": namespace.endpoint}

        def send_as(host: str) -> None:
            moved = _moved(namespace.connection_string, f"sb://{host}:{namespace.port}")
            with ServiceBusClient.from_connection_string(moved, retry_total=0, **dial) as client:
                with client.get_queue_sender("q") as sender:
                    sender.send_messages(ServiceBusMessage(host))

        send_as("localhost")
        # With a custom endpoint the SDK reports any failure to connect, a refused
        # put-token too, as ServiceBusConnectionError.
        with pytest.raises(ServiceBusError):
            send_as("servicebus.evil.example")
        assert namespace.counts() == {"q": 1}


class TestKeys:
    """Each namespace has its own key unless one is given: a token for one is refused by another."""

    def test_development_keys_are_distinct_and_the_first_is_dev_key(self) -> None:
        keys = [development_key(n) for n in range(1, 6)]
        assert keys[0] == DEV_KEY
        assert len(set(keys)) == len(keys)

    @pytest.mark.parametrize("number", [0, -1, True, 1.0, "2"])
    def test_development_key_refuses_what_is_not_a_positive_int(self, number: Any) -> None:
        with pytest.raises(ValueError, match="number"):
            development_key(number)

    def test_local_pair_namespaces_refuse_each_others_tokens(self) -> None:
        with local_pair(queues=["q"]) as pair:
            primary = ConnectionString.parse(pair.primary.connection_string)
            secondary = ConnectionString.parse(pair.secondary.connection_string)
            assert primary.shared_access_key == DEV_KEY
            assert secondary.shared_access_key == development_key(2)
            _send(pair.secondary.connection_string)
            with pytest.raises(ServiceBusAuthenticationError):
                _send(_moved(pair.primary.connection_string, pair.secondary))
            assert pair.counts() == {"primary": {}, "secondary": {"q": 1}}

    def test_local_pair_with_a_key_gives_it_to_both(self) -> None:
        with local_pair(key=development_key(7)) as pair:
            keys = {ConnectionString.parse(ns.connection_string).shared_access_key for ns in (pair.primary, pair.secondary)}
            assert keys == {development_key(7)}

    @pytest.mark.slow
    def test_geobus_local_namespaces_have_their_own_keys(self) -> None:
        with LocalNamespaceProcess(namespaces=2) as process:
            first, second = process.connection_strings
            assert ConnectionString.parse(first).shared_access_key == DEV_KEY
            assert ConnectionString.parse(second).shared_access_key == development_key(2)
            _send(second)
            with pytest.raises(ServiceBusAuthenticationError):
                _send(_moved(first, ConnectionString.parse(second).endpoint))
            assert process.controls[1].status()["counts"] == {"q": 1}

    @pytest.mark.slow
    def test_a_given_key_is_every_namespaces_and_stays_off_the_command_line(self) -> None:
        key = development_key(9)
        with LocalNamespaceProcess(namespaces=2, key=key) as process:
            assert {ConnectionString.parse(cs).shared_access_key for cs in process.connection_strings} == {key}
            with open(f"/proc/{process.pid}/cmdline", "rb") as cmdline:
                assert key.encode() not in cmdline.read()
            _send(process.connection_strings[1])

    def test_an_empty_key_is_refused(self) -> None:
        finished = subprocess.run(
            [sys.executable, "-m", "geobus", "local", "--port", "0"],
            env={**os.environ, "GEOBUS_LOCAL_KEY": ""},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert finished.returncode != 0
        assert "GEOBUS_LOCAL_KEY" in finished.stderr
        assert "Endpoint=" not in finished.stdout


class TestExpiry:
    """A link whose token has expired is detached with amqp:unauthorized-access."""

    def test_entity_links_are_detached_when_their_token_expires(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        clock = FakeClock(time.time())  # the namespace's clock: tokens expire without waiting
        namespace = namespace_factory(clock=clock)
        with RawConnection(namespace.port) as connection:
            expiry = int(clock.now) + 60
            assert _put(connection, queue_address(namespace.port), expiry=expiry) == 200
            sender = connection.sender(queue_address(namespace.port))
            receiver = connection.session.receiver("expiring-receiver")
            receiver.source.address = queue_address(namespace.port)
            receiver.open()
            receiver.flow(10)
            management = connection.session.sender("expiring-management")
            management.target.address = queue_address(namespace.port) + "/$management"
            management.open()
            links = (sender, receiver, management)
            assert connection.client.pump(lambda: all(link.remote_condition is None for link in links))
            [sent] = connection.send(sender, message_bytes("before-expiry"))
            assert sent.remote_state == Delivery.ACCEPTED

            clock.now = expiry + 1
            assert connection.client.pump(lambda: all(is_closed(link) for link in links), within=10)
            conditions = [link.remote_condition.name if link.remote_condition else None for link in links]
            assert conditions == [UNAUTHORIZED] * 3
            assert connection.is_open, "only the links go; the connection stays"
            # A new token lets a new link attach on the same connection.
            assert _put(connection, queue_address(namespace.port), expiry=expiry + 3600) == 200
            again = connection.sender(queue_address(namespace.port))
            [resent] = connection.send(again, message_bytes("with-a-new-token"))
            assert resent.remote_state == Delivery.ACCEPTED

    def test_a_renewed_token_keeps_the_link(self, namespace_factory: Callable[..., LocalNamespace]) -> None:
        clock = FakeClock(time.time())  # the namespace's clock: tokens expire without waiting
        namespace = namespace_factory(clock=clock)
        with RawConnection(namespace.port) as connection:
            expiry = int(clock.now) + 60
            assert _put(connection, queue_address(namespace.port), expiry=expiry) == 200
            sender = connection.sender(queue_address(namespace.port))
            assert _put(connection, queue_address(namespace.port), expiry=expiry + 600) == 200
            clock.now = expiry + 1
            # Processed on the turn that would have detached it, had the token not been renewed.
            [sent] = connection.send(sender, message_bytes("after-the-first-expiry"))
            assert sent.remote_state == Delivery.ACCEPTED
            assert not is_closed(sender)
        assert namespace.counts() == {FUZZ_QUEUE: 1}

    def test_a_namespace_wide_token_covers_links_after_an_entity_token_expires(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        clock = FakeClock(time.time())  # the namespace's clock: tokens expire without waiting
        namespace = namespace_factory(clock=clock)
        with RawConnection(namespace.port) as connection:
            expiry = int(clock.now) + 60
            assert _put(connection, queue_address(namespace.port), expiry=expiry) == 200
            assert _put(connection, f"sb://{LOOPBACK}:{namespace.port}/", expiry=expiry + 600) == 200
            sender = connection.sender(queue_address(namespace.port))
            clock.now = expiry + 1
            [sent] = connection.send(sender, message_bytes("covered-by-the-namespace-token"))
            assert sent.remote_state == Delivery.ACCEPTED


class _ShortLivedKeyCredential:
    """Signs SAS tokens that live ``lifetime`` seconds, as the SDK's own key credential does
    for an hour; records when each was issued and when it expires."""

    token_type = b"servicebus.windows.net:sastoken"

    def __init__(self, key: str, lifetime: int) -> None:
        self._key = key
        self.lifetime = lifetime
        self.issued: list[tuple[float, int]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        now = time.time()
        expiry = int(now) + self.lifetime
        self.issued.append((now, expiry))
        return AccessToken(generate_sas_token(scopes[0], DEV_KEY_NAME, self._key, expiry), expiry)

    def __repr__(self) -> str:
        return f"_ShortLivedKeyCredential(lifetime={self.lifetime})"


@pytest.mark.slow
class TestSdkRenewal:
    """The SDK puts a fresh token before the old one expires, so its links are never detached."""

    # The SDK renews in the last tenth of a token's life, in whole seconds: 20 s gives 2 s.
    LIFETIME = 20

    def test_a_long_lived_sender_and_receiver_outlive_their_first_tokens(self, namespace: LocalNamespace) -> None:
        credential = _ShortLivedKeyCredential(DEV_KEY, self.LIFETIME)
        client = ServiceBusClient(namespace.fully_qualified_namespace, credential, use_tls=False, retry_total=0)
        received: list[str] = []
        with client, client.get_queue_sender("q") as sender, client.get_queue_receiver("q") as receiver:
            sender.send_messages(ServiceBusMessage("0"))  # opens the sender: its first token
            for message in receiver.receive_messages(max_message_count=1, max_wait_time=5):
                receiver.complete_message(message)
                received.append(str(message))
            first_expiry = max(expiry for _, expiry in credential.issued)
            sent = 1
            while time.time() < first_expiry + 3:
                sender.send_messages(ServiceBusMessage(str(sent)))
                sent += 1
                for message in receiver.receive_messages(max_message_count=10, max_wait_time=1):
                    receiver.complete_message(message)
                    received.append(str(message))
        assert received == [str(n) for n in range(len(received))]
        assert len(received) >= sent - 1, "every message sent came back on the same receiver"
        renewals = [issued for issued, _ in credential.issued[2:] if issued < first_expiry]
        assert len(renewals) >= 2, "both links were given a new token before the first expired"
