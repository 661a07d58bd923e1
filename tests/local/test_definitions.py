"""Entity definitions: the TOML file's parsing and errors, then its settings at work with
the real SDK against ``LocalNamespace``, ``geobus local --entities``,
``LocalNamespaceProcess``. (The pytest fixtures' ``geobus_entities``:
``tests/testing/test_pytest_entities.py``, run by pytester.)

Lock, time-to-live and duplicate-window crossings move the namespace's clock
(``ServerClock``) instead of waiting; only the short declared lock is real time.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.exceptions import MessageLockLostError

from geobus import ConfigurationError
from geobus._cli import main
from geobus.local import (
    EntityDefinitions,
    EntitySettings,
    LocalNamespace,
    LocalNamespaceProcess,
    load_entities,
)
from geobus.testing import eventually

from .contract_helpers import NO_KEEP_ALIVE, WITHIN, ServerClock, numbered, receive

Factory = Callable[..., LocalNamespace]
LATER = 120.0  # a declared time to live / window the clock jumps past

EXAMPLE = """
[queues.orders]
requires_session = true
lock_duration = 30
max_delivery_count = 10

[queues.slow]
lock_duration = "PT5M"
default_message_time_to_live = "P1D"
dead_lettering_on_message_expiration = true
requires_duplicate_detection = true
duplicate_detection_history_time_window = "PT1H30M"

[topics.events]
requires_duplicate_detection = true

[topics.events.subscriptions.audit]
requires_session = true
max_delivery_count = 3
"""


def _write(tmp_path: Path, text: str, name: str = "entities.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _problem(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        EntityDefinitions.from_mapping(data, source="defs.toml")
    assert caught.value.problem.endswith("(in defs.toml)")
    return str(caught.value)


class TestParsing:
    """A file of definitions becomes settings, with Service Bus's defaults for what it leaves out."""

    def test_the_example_file(self, tmp_path: Path) -> None:
        definitions = load_entities(_write(tmp_path, EXAMPLE))
        orders, slow = definitions.queues
        [events] = definitions.topics
        [audit] = events.subscriptions
        assert definitions.source.endswith("entities.toml")
        assert len(definitions) == 4
        assert orders.settings() == EntitySettings(lock_duration=30.0, requires_session=True)
        assert slow.settings() == EntitySettings(
            lock_duration=300.0,
            default_ttl=86400.0,
            dead_letter_on_expiration=True,
            duplicate_detection_window=5400.0,
        )
        base = EntitySettings(lock_duration=7.0)
        assert events.settings(base) == EntitySettings(
            lock_duration=7.0, duplicate_detection_window=600.0
        )
        assert audit.settings() == EntitySettings(max_delivery_count=3, requires_session=True)

    def test_defaults_are_service_bus_defaults(self) -> None:
        definitions = EntityDefinitions.from_mapping({"queues": {"q": {}}, "topics": {"t": {}}})
        assert definitions.queues[0].settings() == EntitySettings()
        assert definitions.queues[0].settings().lock_duration == 60.0
        assert definitions.queues[0].settings().max_delivery_count == 10
        assert definitions.queues[0].settings().default_ttl is None
        assert definitions.topics[0].duplicate_detection_history_time_window == 600.0
        assert definitions.topics[0].settings(EntitySettings()).duplicate_detection_window is None
        assert len(EntityDefinitions.from_mapping({})) == 0

    @pytest.mark.parametrize(
        ("given", "seconds"),
        [
            (30, 30.0),
            (2.5, 2.5),
            ("PT30S", 30.0),
            ("PT1M", 60.0),
            ("PT1H", 3600.0),
            ("P1D", 86400.0),
            ("P1DT12H", 129600.0),
            ("P2W", 1209600.0),
            ("PT0.5S", 0.5),
            (datetime.timedelta(minutes=2), 120.0),
        ],
    )
    def test_durations(self, given: Any, seconds: float) -> None:
        [queue] = EntityDefinitions.from_mapping({"queues": {"q": {"lock_duration": given}}}).queues
        assert queue.lock_duration == seconds

    def test_the_longest_time_span_is_forever(self) -> None:
        data = {"queues": {"q": {"default_message_time_to_live": "P10675199DT2H48M5.4775807S"}}}
        assert EntityDefinitions.from_mapping(data).queues[0].settings().default_ttl is None

    def test_window_without_detection_is_kept_and_does_nothing(self) -> None:
        data = {"queues": {"q": {"duplicate_detection_history_time_window": "PT20S"}}}
        [queue] = EntityDefinitions.from_mapping(data).queues
        assert queue.duplicate_detection_history_time_window == 20.0
        assert queue.settings().duplicate_detection_window is None


class TestErrors:
    """Every bad definition is refused with the file, the entity and the key named."""

    def test_unknown_key_lists_the_known_ones(self) -> None:
        message = _problem({"queues": {"orders": {"lock_durations": 30}}})
        assert message.startswith("queues.orders.lock_durations: unknown key (known: ")
        assert "lock_duration," in message

    def test_unknown_section(self) -> None:
        assert _problem({"queue": {"orders": {}}}).startswith(
            "queue: unknown key (known: queues, topics)"
        )

    def test_a_queue_key_on_a_topic(self) -> None:
        assert _problem({"topics": {"t": {"lock_duration": 5}}}).startswith(
            "topics.t.lock_duration: unknown key"
        )

    @pytest.mark.parametrize(
        ("key", "value", "expected"),
        [
            ("requires_session", "yes", "must be true or false, got 'yes'"),
            ("requires_session", 1, "must be true or false, got 1"),
            ("max_delivery_count", "3", "must be a whole number, got '3'"),
            ("max_delivery_count", 2.5, "must be a whole number, got 2.5"),
            ("max_delivery_count", True, "must be a whole number, got True"),
            ("max_delivery_count", 0, "must be at least 1, got 0"),
            ("lock_duration", True, "must be a duration"),
            ("lock_duration", [30], "must be a duration"),
            ("lock_duration", -1, "must be a positive duration, got -1 seconds"),
            ("lock_duration", 0, "must be a positive duration, got 0 seconds"),
            ("lock_duration", "-PT5S", "must be a positive duration, got a negative one"),
            ("lock_duration", "30s", "ISO-8601"),
            ("lock_duration", "PT", "ISO-8601"),
            ("lock_duration", "P1M", "years and months have no fixed length"),
            ("default_message_time_to_live", "P1Y", "years and months have no fixed length"),
            (
                "duplicate_detection_history_time_window",
                float("nan"),
                "must be a positive duration",
            ),
            ("dead_lettering_on_message_expiration", "true", "must be true or false"),
        ],
    )
    def test_wrong_type_or_range(self, key: str, value: Any, expected: str) -> None:
        message = _problem({"queues": {"orders": {key: value}}})
        assert message.startswith(f"queues.orders.{key}: ")
        assert expected in message

    def test_a_subscription_under_a_queue(self) -> None:
        message = _problem({"queues": {"orders": {"subscriptions": {"audit": {}}}}})
        assert message.startswith("queues.orders.subscriptions: a queue has no subscriptions")
        assert "[topics.orders.subscriptions.NAME]" in message

    def test_one_name_for_a_queue_and_a_topic(self) -> None:
        message = _problem({"queues": {"orders": {}}, "topics": {"Orders": {}}})
        assert message.startswith("topics.Orders: names the same entity as queues.orders")

    def test_one_subscription_twice(self) -> None:
        message = _problem({"topics": {"t": {"subscriptions": {"a": {}, "A": {}}}}})
        assert message.startswith("topics.t.subscriptions.A: is declared twice")

    def test_duplicate_detection_on_a_subscription(self) -> None:
        data = {"topics": {"t": {"subscriptions": {"a": {"requires_duplicate_detection": True}}}}}
        assert "is a topic's setting: put it in [topics.t]" in _problem(data)

    def test_a_subscription_key_error_names_the_subscription(self) -> None:
        data = {"topics": {"t": {"subscriptions": {"a": {"max_delivery_count": 0}}}}}
        assert _problem(data).startswith("topics.t.subscriptions.a.max_delivery_count: ")

    @pytest.mark.parametrize("name", ["has space", "-lead", "trail/", "a//b", "x" * 261, ""])
    def test_bad_entity_names(self, name: str) -> None:
        assert "is not an entity name" in _problem({"queues": {name: {}}})

    def test_bad_subscription_name(self) -> None:
        assert "is not an entity name" in _problem(
            {"topics": {"t": {"subscriptions": {"a/b": {}}}}}
        )

    @pytest.mark.parametrize(
        "data",
        [
            {"queues": {"orders": 5}},
            {"queues": ["orders"]},
            {"topics": {"t": {"subscriptions": 1}}},
        ],
    )
    def test_not_a_table(self, data: dict[str, Any]) -> None:
        assert "must be a table" in _problem(data)

    def test_the_file_is_named(self, tmp_path: Path) -> None:
        path = _write(tmp_path, "[queues.orders]\nlock_duration = -5\n")
        with pytest.raises(
            ConfigurationError, match=r"queues\.orders\.lock_duration: .*entities\.toml"
        ):
            load_entities(path)

    def test_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="does not exist"):
            load_entities(tmp_path / "absent.toml")

    def test_not_toml(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="is not valid TOML"):
            load_entities(_write(tmp_path, "[queues.orders\n"))

    def test_the_namespace_refuses_a_bad_file_before_serving(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match=r"queues\.orders\.max_delivery_count"):
            LocalNamespace(entities=_write(tmp_path, "[queues.orders]\nmax_delivery_count = 0\n"))
        with pytest.raises(
            ConfigurationError, match="must be a file path, EntityDefinitions or a mapping"
        ):
            LocalNamespace(entities=42)  # type: ignore[arg-type]


# -- the settings at work, with the real SDK ---------------------------------------------------


def _client(ns: LocalNamespace | str) -> ServiceBusClient:
    connection_string = ns if isinstance(ns, str) else ns.connection_string
    return ServiceBusClient.from_connection_string(connection_string, retry_total=1)


def _send(
    ns: LocalNamespace | str, entity: str, *messages: ServiceBusMessage, topic: bool = False
) -> None:
    with _client(ns) as client:
        get = client.get_topic_sender if topic else client.get_queue_sender
        with get(entity, **NO_KEEP_ALIVE) as sender:
            for message in messages:
                sender.send_messages(message)


def _look(
    ns: LocalNamespace, entity: str, subscription: str | None = None, *, complete: bool = True
) -> list[str]:
    """The ids of what one short receive finds (completed, or abandoned if not ``complete``)."""
    with _client(ns) as client:
        receiver = (
            client.get_subscription_receiver(entity, subscription)
            if subscription
            else client.get_queue_receiver(entity)
        )
        with receiver:
            found = receiver.receive_messages(max_message_count=10, max_wait_time=1)
            for message in found:
                (receiver.complete_message if complete else receiver.abandon_message)(message)
    return [str(m.message_id) for m in found]


class TestSettingsAtWork:
    """Declared entities exist at start with their settings; others still come on first use."""

    def test_declared_entities_exist_at_start(self, namespace_factory: Factory) -> None:
        data = {"queues": {"orders": {}}, "topics": {"events": {"subscriptions": {"audit": {}}}}}
        ns = namespace_factory(entities=data, auto_create=False)
        _send(ns, "orders", numbered(1))
        _send(ns, "events", numbered(2), topic=True)
        assert ns.counts() == {"orders": 1, "events/subscriptions/audit": 1}

    def test_a_declared_lock_duration(self, namespace_factory: Factory) -> None:
        ns = namespace_factory(entities={"queues": {"short": {"lock_duration": 2}}})
        with _client(ns) as client:
            _send(ns, "short", numbered(1))
            _send(ns, "undeclared", numbered(2))
            with (
                client.get_queue_receiver("short") as receiver,
                client.get_queue_receiver("undeclared") as other,
            ):
                [short] = receive(receiver)
                [default] = receive(other)
                now = datetime.datetime.now(datetime.timezone.utc)
                assert short.locked_until_utc is not None and default.locked_until_utc is not None
                assert (
                    datetime.timedelta(0)
                    < short.locked_until_utc - now
                    < datetime.timedelta(seconds=10)
                )
                assert default.locked_until_utc - now > datetime.timedelta(seconds=30)
                other.complete_message(default)
                receiver.complete_message(short)

    def test_a_declared_lock_duration_expires(self, namespace_factory: Factory) -> None:
        clock = ServerClock()
        ns = namespace_factory(clock=clock, entities={"queues": {"q": {"lock_duration": LATER}}})
        _send(ns, "q", numbered(1))
        with _client(ns) as client, client.get_queue_receiver("q") as receiver:
            [message] = receive(receiver)
            clock.advance(LATER + 1)
            with pytest.raises(MessageLockLostError):
                receiver.complete_message(message)
            [again] = receive(receiver)
            assert again.delivery_count == 1
            receiver.complete_message(again)

    def test_max_delivery_count_dead_letters_after_two_abandons(
        self, namespace_factory: Factory
    ) -> None:
        ns = namespace_factory(entities={"queues": {"poison": {"max_delivery_count": 2}}})
        _send(ns, "poison", numbered(1))
        with _client(ns) as client:
            with client.get_queue_receiver("poison") as receiver:
                for _ in range(2):
                    [message] = receive(receiver)
                    receiver.abandon_message(message)
                assert receiver.receive_messages(max_wait_time=1) == []
            with client.get_queue_receiver(
                "poison", sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dead:
                [message] = receive(dead)
                assert str(message.message_id) == "m-0001"
                assert message.dead_letter_reason == "MaxDeliveryCountExceeded"
                dead.complete_message(message)
        assert ns.counts() == {}

    def test_time_to_live_and_dead_lettering_on_expiration(
        self, namespace_factory: Factory
    ) -> None:
        clock = ServerClock()
        data = {
            "queues": {
                "expiring": {
                    "default_message_time_to_live": LATER,
                    "dead_lettering_on_message_expiration": True,
                },
                "dropping": {"default_message_time_to_live": LATER},
            }
        }
        ns = namespace_factory(clock=clock, entities=data)
        _send(ns, "expiring", numbered(1))
        _send(ns, "dropping", numbered(2))
        assert ns.counts() == {"expiring": 1, "dropping": 1}
        clock.advance(LATER + 1)
        # As in Service Bus, a message expires when a receiver reaches it.
        assert _look(ns, "expiring") == _look(ns, "dropping") == []
        eventually(
            lambda: ns.counts() == {"expiring/$deadletterqueue": 1}, within=WITHIN, what=ns.counts
        )
        with _client(ns) as client:
            with client.get_queue_receiver(
                "expiring", sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dead:
                [message] = receive(dead)
                assert str(message.message_id) == "m-0001"
                dead.complete_message(message)

    def test_a_subscription_time_to_live_is_its_own(self, namespace_factory: Factory) -> None:
        clock = ServerClock()
        audit = {
            "default_message_time_to_live": LATER,
            "dead_lettering_on_message_expiration": True,
        }
        data = {"topics": {"events": {"subscriptions": {"audit": audit, "billing": {}}}}}
        ns = namespace_factory(clock=clock, entities=data)
        _send(ns, "events", numbered(1), topic=True)
        clock.advance(LATER + 1)
        assert _look(ns, "events", "audit") == []
        assert len(_look(ns, "events", "billing", complete=False)) == 1
        expected = {
            "events/subscriptions/audit/$deadletterqueue": 1,
            "events/subscriptions/billing": 1,
        }
        eventually(lambda: ns.counts() == expected, within=WITHIN, what=ns.counts)

    def test_duplicate_detection_drops_a_resent_message_id(
        self, namespace_factory: Factory
    ) -> None:
        clock = ServerClock()
        data = {
            "queues": {
                "once": {
                    "requires_duplicate_detection": True,
                    "duplicate_detection_history_time_window": LATER,
                }
            },
            "topics": {
                "events": {"requires_duplicate_detection": True, "subscriptions": {"audit": {}}}
            },
        }
        ns = namespace_factory(clock=clock, entities=data)
        for entity, topic in (("once", False), ("events", True), ("undeclared", False)):
            _send(ns, entity, numbered(1), numbered(1), numbered(2), topic=topic)
        assert ns.counts() == {"once": 2, "events/subscriptions/audit": 2, "undeclared": 3}
        clock.advance(LATER + 1)
        _send(ns, "once", numbered(1))  # the queue's window has passed: a new message
        assert ns.counts()["once"] == 3


class TestStoreAndDefinitions:
    """With a store, the file's settings win and the messages stay."""

    def test_the_file_wins_for_settings_and_messages_stay(self, tmp_path: Path) -> None:
        store = tmp_path / "ns.sqlite"
        with LocalNamespace(store=store, entities={"queues": {"orders": {}}}) as ns:
            _send(ns, "orders", numbered(1), numbered(2))
            with _client(ns) as client, client.get_queue_receiver("orders") as receiver:
                for message in receive(receiver, 2):
                    receiver.abandon_message(message)  # delivery count 1 each
        with LocalNamespace(
            store=store, entities={"queues": {"orders": {"max_delivery_count": 2}}}
        ) as ns:
            assert ns.counts() == {"orders": 2}
            with _client(ns) as client, client.get_queue_receiver("orders") as receiver:
                for message in receive(receiver, 2):
                    receiver.abandon_message(message)  # the second delivery: the new limit
            assert ns.counts() == {"orders/$deadletterqueue": 2}

    def test_a_stored_queue_declared_as_a_topic(self, tmp_path: Path) -> None:
        store = tmp_path / "ns.sqlite"
        with LocalNamespace(store=store) as ns:
            _send(ns, "orders", numbered(1))
        with pytest.raises(
            ValueError,
            match=r"ns\.sqlite: 'orders' is already a queue.*declare it as the other kind",
        ):
            LocalNamespace(store=store, entities={"topics": {"orders": {}}})


class TestCommandLineAndProcess:
    """``geobus local --entities`` and ``LocalNamespaceProcess(entities=...)``."""

    def test_a_bad_file_exits_with_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = _write(tmp_path, "[queues.orders]\nlock_duration = -1\n")
        assert main(["local", "--port", "0", "--entities", str(path)]) == 2
        err = capsys.readouterr().err
        assert "geobus local: queues.orders.lock_duration: must be a positive duration" in err
        assert str(path) in err

    def test_a_missing_file_exits_with_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["local", "--port", "0", "--entities", str(tmp_path / "none.toml")]) == 2
        assert "does not exist" in capsys.readouterr().err

    def test_the_process_refuses_a_bad_file_at_once(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match=r"queues\.orders\.bogus: unknown key"):
            LocalNamespaceProcess(entities=_write(tmp_path, "[queues.orders]\nbogus = 1\n"))

    @pytest.mark.slow
    def test_a_process_with_entities_and_a_store_restarts_with_its_messages(
        self, tmp_path: Path
    ) -> None:
        entities = _write(
            tmp_path, "[queues.orders]\nlock_duration = 2\n[topics.events.subscriptions.audit]\n"
        )
        with LocalNamespaceProcess(
            store=tmp_path / "p.sqlite", entities=entities, args=["--strict"]
        ) as process:
            _send(process.connection_string, "orders", numbered(1))
            _send(process.connection_string, "events", numbered(2), topic=True)
            with (
                _client(process.connection_string) as client,
                client.get_queue_receiver("orders") as receiver,
            ):
                [message] = receive(receiver)
                now = datetime.datetime.now(datetime.timezone.utc)
                assert message.locked_until_utc is not None
                assert message.locked_until_utc - now < datetime.timedelta(seconds=10)
                receiver.abandon_message(message)
            entities.write_text(
                "[queues.orders]\nmax_delivery_count = 1\n[topics.events.subscriptions.audit]\n"
            )
            process.restart()
            counts = process.control.status()["counts"]
            assert counts == {"orders": 1, "events/subscriptions/audit": 1}
            with (
                _client(process.connection_string) as client,
                client.get_queue_receiver("orders") as receiver,
            ):
                [message] = receive(receiver)
                assert message.delivery_count == 1
                receiver.abandon_message(message)  # max_delivery_count 1 now: dead-lettered
            counts = process.control.status()["counts"]
            assert counts == {"orders/$deadletterqueue": 1, "events/subscriptions/audit": 1}
