"""The administration API's server side: saving before answering, deletes that take only
their own entity, faults on admin connections, TLS handshakes cut short, rule copies
that keep what an action did."""

from __future__ import annotations

import datetime
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage
from azure.servicebus.management import (
    CorrelationRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
)

from geobus.local import Limits, LocalNamespace
from geobus.testing import eventually

LOOPBACK = "127.0.0.1"


def admin(namespace: LocalNamespace, **options: object) -> ServiceBusAdministrationClient:
    return ServiceBusAdministrationClient.from_connection_string(
        namespace.connection_string, connection_verify=namespace.certificate_path, retry_total=0, **options
    )


@pytest.fixture
def namespace() -> Iterator[LocalNamespace]:
    with LocalNamespace() as namespace:
        yield namespace


def send(
    namespace: LocalNamespace, entity: str, *messages: ServiceBusMessage | AmqpAnnotatedMessage, topic: bool = False
) -> None:
    with ServiceBusClient.from_connection_string(namespace.connection_string) as client:
        sender = client.get_topic_sender(entity) if topic else client.get_queue_sender(entity)
        with sender:
            sender.send_messages(list(messages))


class TestSavedBeforeAnswered:
    """What the API acknowledges is in the store before the client hears of it."""

    def test_the_store_has_a_created_queue_before_the_client_is_answered(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        events: list[tuple[str, str]] = []
        with LocalNamespace(store=tmp_path / "store.db") as namespace, admin(namespace) as client:
            server = namespace._server  # the seams between the loop, its store and the admin threads
            assert server.admin is not None
            save, answer = server.store.save, server.admin.answer

            def saving(broker: Any, changes: Any, seqs: Any) -> None:
                records = sorted(broker.admin.changed())
                save(broker, changes, seqs)
                events.extend(("saved", path) for path in records)

            def answering(method: str, *args: Any) -> Any:
                response = answer(method, *args)
                events.append(("answered", method))
                return response

            monkeypatch.setattr(server.store, "save", saving)
            monkeypatch.setattr(server.admin, "answer", answering)
            client.create_queue("orders", max_delivery_count=3)
            with sqlite3.connect(tmp_path / "store.db") as db:  # another reader, as after a crash
                rows = db.execute("SELECT path FROM entity_records").fetchall()
        assert events[:2] == [("saved", "orders"), ("answered", "PUT")]
        assert rows == [("orders",)]


class TestDeleteTakesOnlyItsOwn:
    """Deleting ``orders`` leaves ``orders/eu`` (a name that starts with it) whole."""

    def test_a_restart_keeps_the_longer_name_and_its_messages(self, tmp_path: Path) -> None:
        store = tmp_path / "store.db"
        with LocalNamespace(store=store) as namespace, admin(namespace) as client:
            client.create_queue("orders")
            client.create_queue("orders/eu")
            send(namespace, "orders/eu", *(ServiceBusMessage(f"m{i}") for i in range(3)))
            send(namespace, "orders", ServiceBusMessage("gone"))
            client.delete_queue("orders")
            assert namespace.counts() == {"orders/eu": 3}
        with LocalNamespace(store=store) as namespace, admin(namespace) as client:
            assert [q.name for q in client.list_queues()] == ["orders/eu"]
            assert namespace.counts() == {"orders/eu": 3}
            send(namespace, "orders/eu", ServiceBusMessage("next"))
            with ServiceBusClient.from_connection_string(namespace.connection_string) as sb:
                with sb.get_queue_receiver("orders/eu") as receiver:
                    numbers = [m.sequence_number for m in receiver.peek_messages(10, sequence_number=1)]
            assert numbers == [1, 2, 3, 4]  # its counter survived: no number is used twice

    def test_a_receiver_of_the_deleted_queue_is_detached_and_the_other_kept(self, namespace: LocalNamespace) -> None:
        with admin(namespace) as client:
            client.create_queue("orders")
            client.create_queue("orders/eu")
            with ServiceBusClient.from_connection_string(namespace.connection_string, retry_total=0) as sb:
                with sb.get_queue_receiver("orders/eu") as kept, sb.get_queue_receiver("orders") as lost:
                    kept.peek_messages(1)
                    lost.peek_messages(1)
                    client.delete_queue("orders")
                    send(namespace, "orders/eu", ServiceBusMessage("still here"))
                    assert [str(m) for m in kept.receive_messages(1, max_wait_time=5)] == ["still here"]
                    with pytest.raises(Exception, match="could not be found"):
                        lost.receive_messages(1, max_wait_time=5)


class TestFaultsOnAdminConnections:
    """A namespace that refuses or black-holes its AMQP clients does the same to admin ones."""

    def test_refused_then_healed(self, namespace: LocalNamespace) -> None:
        with admin(namespace) as client:
            client.create_queue("before")
            namespace.refuse()
            with pytest.raises(ServiceRequestError):
                client.get_queue("before")
            namespace.heal()
            assert client.get_queue("before").name == "before"

    def test_black_holed_requests_are_not_answered_until_healed(self, namespace: LocalNamespace) -> None:
        with admin(namespace, read_timeout=1) as client:
            client.create_queue("before")
            namespace.black_hole()
            with pytest.raises(ServiceResponseError):
                client.get_queue("before")
            namespace.heal()
            assert client.get_queue("before").name == "before"


class TestTlsHandshake:
    """A TLS handshake left half done is dropped at the handshake limit, or by a fault."""

    @staticmethod
    def hung_up(sock: socket.socket) -> bool:
        try:
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def test_a_stalled_handshake_is_dropped_at_the_limit(self) -> None:
        with LocalNamespace(limits=Limits(handshake_timeout=0.5)) as namespace:
            with socket.create_connection((LOOPBACK, namespace.port), timeout=0.2) as sock:
                sock.sendall(b"\x16\x03\x01\x02\x00")  # a record header, and nothing after it
                eventually(lambda: self.hung_up(sock), within=10.0, what="the server kept a stalled handshake")

    def test_drop_reaches_a_connection_in_its_handshake(self, namespace: LocalNamespace) -> None:
        with socket.create_connection((LOOPBACK, namespace.port), timeout=0.2) as sock:
            sock.sendall(b"\x16\x03\x01\x02\x00")
            eventually(lambda: namespace.drop_connections() >= 1, within=5.0, what="no admin connection to drop")
            eventually(lambda: self.hung_up(sock), within=5.0, what="the dropped connection stayed open")


class TestRuleCopies:
    """What a rule's action does stays in its copy: binary fields, the session it set,
    a cancelled schedule; typed rule values survive a restart."""

    def test_binary_fields_are_kept_in_an_action_copy(self, namespace: LocalNamespace) -> None:
        with admin(namespace) as client:
            client.create_topic("t")
            client.create_subscription("t", "s")
            client.create_rule("t", "s", "act", filter=SqlRuleFilter("1=1"), action=SqlRuleAction("SET a = 1"))
        # The SDK decodes binary application properties to text before sending: the
        # properties section's user-id is a binary field it sends as it is.
        message = AmqpAnnotatedMessage(data_body=b"x", properties={"user_id": b"\x00\xffme"})
        send(namespace, "t", message, topic=True)
        with ServiceBusClient.from_connection_string(namespace.connection_string) as sb:
            with sb.get_subscription_receiver("t", "s") as receiver:
                got = receiver.receive_messages(2, max_wait_time=2)
        assert [m.raw_amqp_message.properties.user_id for m in got] == [b"\x00\xffme", b"\x00\xffme"]

    def test_an_action_that_sets_the_session_moves_the_copy_to_that_session(self, namespace: LocalNamespace) -> None:
        with admin(namespace) as client:
            client.create_topic("t")
            client.create_subscription("t", "s", requires_session=True)
            client.delete_rule("t", "s", "$Default")
            client.create_rule("t", "s", "move", filter=SqlRuleFilter("1=1"), action=SqlRuleAction("SET sys.SessionId = 'b'"))
        send(namespace, "t", ServiceBusMessage("x", session_id="a"), topic=True)
        with ServiceBusClient.from_connection_string(namespace.connection_string) as sb:
            with sb.get_subscription_receiver("t", "s", session_id="b", max_wait_time=2) as receiver:
                got = receiver.receive_messages(1, max_wait_time=2)
        assert [(str(m), m.session_id) for m in got] == [("x", "b")]

    def test_cancelling_a_schedule_cancels_every_rule_copy(self, namespace: LocalNamespace) -> None:
        with admin(namespace) as client:
            client.create_topic("t")
            client.create_subscription("t", "s")
            for name in ("r1", "r2"):
                client.create_rule("t", "s", name, filter=SqlRuleFilter("1=1"), action=SqlRuleAction(f"SET rule = '{name}'"))
            with ServiceBusClient.from_connection_string(namespace.connection_string) as sb:
                with sb.get_topic_sender("t") as sender:
                    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
                    [number] = sender.schedule_messages(ServiceBusMessage("later"), later)
                    assert client.get_topic_runtime_properties("t").scheduled_message_count == 1
                    sender.cancel_scheduled_messages(number)
            assert namespace.counts() == {}
            assert client.get_topic_runtime_properties("t").scheduled_message_count == 0

    def test_typed_rule_values_survive_a_restart(self, tmp_path: Path) -> None:
        store = tmp_path / "store.db"
        when = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.timezone.utc)
        with LocalNamespace(store=store) as namespace, admin(namespace) as client:
            client.create_topic("t")
            client.create_subscription("t", "s")
            client.create_rule("t", "s", "due", filter=CorrelationRuleFilter(properties={"due": when}))
            client.create_rule("t", "s", "slow", filter=SqlRuleFilter("took > @limit", parameters={"@limit": 2.5}))
        with LocalNamespace(store=store) as namespace, admin(namespace) as client:
            rules = {rule.name: rule.filter for rule in client.list_rules("t", "s")}
            assert rules["due"].properties == {"due": when}
            assert rules["slow"].parameters == {"@limit": 2.5}


class TestEntitiesFileOverARecord:
    """A file's settings apply to an entity the API made, and the API shows them."""

    def test_get_shows_what_the_broker_does(self, tmp_path: Path) -> None:
        store = tmp_path / "store.db"
        with LocalNamespace(store=store) as namespace, admin(namespace) as client:
            client.create_queue("orders", lock_duration=datetime.timedelta(seconds=20), max_size_in_megabytes=2048)
        entities = {"queues": {"orders": {"lock_duration": 45}}}
        with LocalNamespace(store=store, entities=entities) as namespace, admin(namespace) as client:
            queue = client.get_queue("orders")
            assert queue.lock_duration == datetime.timedelta(seconds=45)
            assert queue.max_size_in_megabytes == 2048  # what the file does not decide is kept
