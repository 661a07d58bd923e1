"""Broker: addressing, declaring, sending, fan-out, duplicate detection and change tracking."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from geobus.local._broker import BadAddress, Broker, EntityNotFound, entity_path
from geobus.local._entities import MessageLog, MessageState
from geobus.testing import FakeClock

from .helpers import START, lock, parsed, queue

MakeBroker = Callable[..., Broker]


class TestEntityPath:
    """Link addresses normalise to one lower-case path per entity."""

    @pytest.mark.parametrize(
        "address",
        [
            "q",
            "Q",
            "/q",
            "q/",
            "amqps://host:5671/Q",
            "amqp://127.0.0.1:5672/q",
            "sb://ns.servicebus.windows.net/q",
        ],
    )
    def test_every_spelling_names_the_same_entity(self, address: str) -> None:
        assert entity_path(address) == "q"

    def test_escapes_and_case_in_dead_letter_paths(self) -> None:
        assert entity_path("amqps://h/Q/%24DeadLetterQueue") == "q/$deadletterqueue"
        assert entity_path("T/Subscriptions/S") == "t/subscriptions/s"

    @pytest.mark.parametrize("address", ["", "/", "amqps://host:5671/", "amqps://host"])
    def test_an_empty_path_is_a_bad_address(self, address: str) -> None:
        with pytest.raises(BadAddress):
            entity_path(address)

    def test_a_full_address_reaches_the_entity_a_short_one_created(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker(auto_create=False)
        log = broker.declare_queue("q")
        assert broker.send_target("amqps://host:5671/Q") is log
        assert broker.receive_source("amqps://host:5671/Q") is log


class TestDeclare:
    """Declaring is idempotent and a name is either a queue or a topic."""

    def test_declaring_twice_returns_the_same_entity(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        assert broker.declare_queue("q") is broker.declare_queue("Q")
        topic = broker.declare_topic("t", ["a"])
        assert broker.declare_topic("T", ["A", "b"]) is topic
        assert sorted(topic.subscriptions) == ["a", "b"]
        assert topic.subscriptions["a"].path == "t/subscriptions/a"

    def test_a_queue_name_cannot_become_a_topic_or_the_reverse(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker()
        broker.declare_queue("q")
        broker.declare_topic("t")
        with pytest.raises(BadAddress):
            broker.declare_topic("q")
        with pytest.raises(BadAddress):
            broker.declare_subscription("q", "s")
        with pytest.raises(BadAddress):
            broker.declare_queue("t")

    def test_a_subscription_declares_its_topic(self, make_broker: MakeBroker) -> None:
        broker = make_broker(auto_create=False)
        sub = broker.declare_subscription("t", "s")
        assert broker.topics["t"].subscriptions["s"] is sub

    def test_entity_settings_are_inherited_unless_given(self, make_broker: MakeBroker) -> None:
        broker = make_broker(lock_duration=5)
        assert broker.declare_queue("q").settings.lock_duration == 5
        assert broker.declare_subscription("t", "s").settings.lock_duration == 5


class TestSendTarget:
    """A sender may write to a queue or a topic, never to a subscription or a DLQ."""

    def test_auto_create_makes_an_unknown_name_a_queue(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        target = broker.send_target("orders")
        assert isinstance(target, MessageLog)
        assert broker.queues == {"orders": target}

    def test_strict_mode_refuses_unknown_names_and_creates_nothing(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker(auto_create=False)
        with pytest.raises(EntityNotFound):
            broker.send_target("orders")
        assert broker.queues == {} and broker.topics == {}

    def test_a_topic_name_resolves_to_the_topic(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        topic = broker.declare_topic("t", ["s"])
        assert broker.send_target("amqps://h/T") is topic

    @pytest.mark.parametrize(
        "address", ["t/subscriptions/s", "q/$DeadLetterQueue", "t/subscriptions/s/$deadletterqueue"]
    )
    @pytest.mark.parametrize("auto_create", [True, False])
    def test_subscriptions_and_dead_letter_queues_are_not_targets(
        self, make_broker: MakeBroker, address: str, auto_create: bool
    ) -> None:
        broker = make_broker(auto_create=auto_create)
        broker.declare_queue("q")
        broker.declare_topic("t", ["s"])
        with pytest.raises(BadAddress):
            broker.send_target(address)


class TestReceiveSource:
    """A receiver reads a queue, a subscription, or either one's dead-letter queue."""

    def test_queue_and_its_dead_letter_queue(self, make_broker: MakeBroker) -> None:
        broker = make_broker(auto_create=False)
        log = broker.declare_queue("q")
        assert broker.receive_source("q") is log
        assert broker.receive_source("Q/$DeadLetterQueue") is log.dead_letter

    def test_subscription_and_its_dead_letter_queue(self, make_broker: MakeBroker) -> None:
        broker = make_broker(auto_create=False)
        sub = broker.declare_subscription("t", "s")
        assert broker.receive_source("T/Subscriptions/S") is sub
        assert broker.receive_source("t/subscriptions/s/$deadletterqueue") is sub.dead_letter

    @pytest.mark.parametrize("address", ["nope", "nope/$deadletterqueue", "t/subscriptions/x"])
    def test_strict_mode_refuses_unknown_entities(
        self, make_broker: MakeBroker, address: str
    ) -> None:
        broker = make_broker(auto_create=False)
        broker.declare_topic("t", ["s"])
        with pytest.raises(EntityNotFound):
            broker.receive_source(address)
        assert set(broker.topics["t"].subscriptions) == {"s"}
        assert broker.queues == {}

    def test_auto_create_declares_a_subscription_and_its_topic(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker()
        sub = broker.receive_source("t/subscriptions/s")
        assert broker.topics["t"].subscriptions == {"s": sub}

    def test_a_topic_itself_cannot_be_read(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        broker.declare_topic("t")
        with pytest.raises(EntityNotFound):
            broker.receive_source("t")

    def test_a_queue_has_no_subscriptions_even_with_auto_create(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker()
        broker.declare_queue("q")
        with pytest.raises(EntityNotFound):
            broker.receive_source("q/subscriptions/s")

    def test_log_looks_up_what_the_store_names_and_returns_none_for_the_rest(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker(auto_create=False)
        sub = broker.declare_subscription("t", "s")
        assert broker.log("t/subscriptions/s/$deadletterqueue") is sub.dead_letter
        assert broker.log("t") is None
        assert broker.log("") is None
        assert broker.log("missing") is None


class TestEnqueue:
    """enqueue numbers, times and stores one message."""

    def test_sequence_numbers_count_up_per_entity(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        a, b = queue(broker, "a"), queue(broker, "b")
        assert [broker.enqueue(a, parsed()) for _ in range(3)] == [1, 2, 3]
        assert broker.enqueue(b, parsed()) == 1
        assert sorted(a.messages) == [1, 2, 3]

    def test_the_message_is_stored_as_parsed_and_stamped_with_the_clock(
        self, make_broker: MakeBroker, clock: FakeClock
    ) -> None:
        broker = make_broker()
        log = queue(broker)
        message = parsed("hello", message_id="m-1")
        broker.enqueue(log, message)
        kept = log.messages[1]
        assert (kept.rest, kept.message_id, kept.enqueued_at) == (message.rest, "m-1", clock.now)
        assert (kept.state, kept.expires_at, kept.delivery_count) == (MessageState.ACTIVE, None, 0)

    def test_the_header_ttl_sets_the_expiry(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        log = queue(broker)
        broker.enqueue(log, parsed(ttl=30))
        assert log.messages[1].expires_at == START + 30

    def test_the_entity_default_ttl_applies_when_the_message_has_none(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker(default_ttl=60)
        log = queue(broker)
        broker.enqueue(log, parsed())
        broker.enqueue(log, parsed(ttl=10))
        assert [log.messages[s].expires_at for s in (1, 2)] == [START + 60, START + 10]

    def test_a_message_ttl_cannot_outlive_the_entity_default(self, make_broker: MakeBroker) -> None:
        broker = make_broker(default_ttl=60)
        log = queue(broker)
        broker.enqueue(log, parsed(ttl=600))
        assert log.messages[1].expires_at == START + 60

    def test_the_lowered_ttl_is_the_one_the_receiver_reads(self, make_broker: MakeBroker) -> None:
        broker = make_broker(default_ttl=60)
        log = queue(broker)
        broker.enqueue(log, parsed(ttl=600))
        broker.enqueue(log, parsed(ttl=30))
        headers = [log.messages[s].header for s in (1, 2)]
        assert [h[2] if h else None for h in headers] == [60_000, 30_000]

    def test_the_scheduled_enqueue_time_annotation_schedules(
        self, make_broker: MakeBroker, clock: FakeClock
    ) -> None:
        broker = make_broker()
        log = queue(broker)
        seq = broker.enqueue(log, parsed(scheduled_at=START + 30))
        kept = log.messages[seq]
        assert (kept.state, kept.scheduled_at) == (MessageState.SCHEDULED, START + 30)
        assert log.take(clock.now, peek_lock=True) is None
        clock.advance(30)
        assert broker.tick() == [log]
        assert lock(log, clock.now).seq == seq

    def test_an_explicit_schedule_wins_and_a_past_one_is_immediate(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker()
        log = queue(broker)
        broker.enqueue(log, parsed(scheduled_at=START + 30), scheduled_at=START + 90)
        broker.enqueue(log, parsed(scheduled_at=START - 5))
        assert log.messages[1].scheduled_at == START + 90
        assert log.messages[2].state == MessageState.ACTIVE

    def test_a_scheduled_message_lives_its_ttl_after_it_appears(
        self, make_broker: MakeBroker, clock: FakeClock
    ) -> None:
        broker = make_broker()
        log = queue(broker)
        broker.enqueue(log, parsed(ttl=60, scheduled_at=START + 120))
        clock.advance(120)
        broker.tick()
        assert log.take(clock.now, peek_lock=True) is not None

    def test_a_scheduled_message_expires_its_ttl_after_it_appears(
        self, make_broker: MakeBroker, clock: FakeClock
    ) -> None:
        broker = make_broker()
        log = queue(broker)
        broker.enqueue(log, parsed(ttl=60, scheduled_at=START + 120))
        broker.enqueue(log, parsed(ttl=60, scheduled_at=START - 5))  # due: lives from now
        assert [log.messages[s].expires_at for s in (1, 2)] == [START + 180, START + 60]

    def test_cancel_scheduled_reaches_every_subscription(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        topic = broker.declare_topic("t", ["a", "b"])
        seq = broker.enqueue(topic, parsed(scheduled_at=START + 30))
        broker.cancel_scheduled(topic, seq)
        assert broker.counts() == {}


class TestTopicFanOut:
    """A topic gives each subscription its own copy, settled independently."""

    def test_each_subscription_gets_a_copy_with_the_topic_sequence_number(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker()
        topic = broker.declare_topic("t", ["a", "b"])
        assert broker.enqueue(topic, parsed("x")) == 1
        a, b = topic.subscriptions["a"], topic.subscriptions["b"]
        assert a.messages[1] is not b.messages[1]
        assert a.messages[1].rest == b.messages[1].rest
        assert broker.counts() == {"t/subscriptions/a": 1, "t/subscriptions/b": 1}

    def test_settling_one_copy_leaves_the_other(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        topic = broker.declare_topic("t", ["a", "b"])
        broker.enqueue(topic, parsed())
        a, b = topic.subscriptions["a"], topic.subscriptions["b"]
        first = lock(a)
        a.abandon(first.lock_token, START)
        a.complete(lock(a).lock_token, START)
        assert a.messages == {}
        copy = lock(b)
        assert (copy.seq, copy.delivery_count) == (1, 0)

    def test_a_topic_without_subscriptions_drops_the_message(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        topic = broker.declare_topic("t")
        assert broker.enqueue(topic, parsed()) == 1
        assert broker.counts() == {}
        sub = broker.declare_subscription("t", "late")
        broker.enqueue(topic, parsed())
        assert sorted(sub.messages) == [2]


class TestDuplicateDetection:
    """A message id seen within the window is dropped; after it, accepted again."""

    def test_a_repeat_inside_the_window_is_dropped_without_a_sequence_number(
        self, make_broker: MakeBroker, clock: FakeClock
    ) -> None:
        broker = make_broker(duplicate_detection_window=60)
        log = queue(broker)
        assert broker.enqueue(log, parsed(message_id="m")) == 1
        clock.advance(59)
        assert broker.enqueue(log, parsed(message_id="m")) is None
        assert broker.enqueue(log, parsed(message_id="other")) == 2
        assert sorted(log.messages) == [1, 2]

    def test_a_repeat_after_the_window_is_accepted(
        self, make_broker: MakeBroker, clock: FakeClock
    ) -> None:
        broker = make_broker(duplicate_detection_window=60)
        log = queue(broker)
        broker.enqueue(log, parsed(message_id="m"))
        clock.advance(60)
        assert broker.enqueue(log, parsed(message_id="m")) == 2

    def test_the_window_runs_from_the_first_sighting(
        self, make_broker: MakeBroker, clock: FakeClock
    ) -> None:
        broker = make_broker(duplicate_detection_window=60)
        log = queue(broker)
        broker.enqueue(log, parsed(message_id="m"))
        clock.advance(40)
        assert broker.enqueue(log, parsed(message_id="m")) is None
        clock.advance(20)
        assert broker.enqueue(log, parsed(message_id="m")) == 2

    def test_off_without_a_window_and_never_for_messages_without_an_id(
        self, make_broker: MakeBroker
    ) -> None:
        plain = make_broker()
        log = queue(plain)
        assert [plain.enqueue(log, parsed(message_id="m")) for _ in range(2)] == [1, 2]
        detecting = make_broker(duplicate_detection_window=60)
        log = queue(detecting)
        assert [detecting.enqueue(log, parsed()) for _ in range(2)] == [1, 2]

    def test_each_entity_has_its_own_window(self, make_broker: MakeBroker) -> None:
        broker = make_broker(duplicate_detection_window=60)
        a, b = queue(broker, "a"), queue(broker, "b")
        assert broker.enqueue(a, parsed(message_id="m")) == 1
        assert broker.enqueue(b, parsed(message_id="m")) == 1

    def test_a_topic_drops_the_duplicate_for_every_subscription(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker(duplicate_detection_window=60)
        topic = broker.declare_topic("t", ["a", "b"])
        broker.enqueue(topic, parsed(message_id="m"))
        assert broker.enqueue(topic, parsed(message_id="m")) is None
        assert broker.counts() == {"t/subscriptions/a": 1, "t/subscriptions/b": 1}


class TestTakeChanges:
    """take_changes reports, once, what the store must write before replying."""

    def test_a_send_reports_the_message_and_the_sequence_counter(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker()
        log = queue(broker)
        broker.enqueue(log, parsed())
        changes, seqs = broker.take_changes()
        assert [(path, m.seq, deleted) for path, m, deleted in changes] == [("q", 1, False)]
        assert changes[0][1] is log.messages[1]
        assert seqs == {"q": 1}
        assert broker.take_changes() == ([], {})

    def test_a_topic_send_reports_each_copy_and_one_topic_counter(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker()
        topic = broker.declare_topic("t", ["a", "b"])
        broker.enqueue(topic, parsed())
        broker.enqueue(topic, parsed())
        changes, seqs = broker.take_changes()
        assert sorted((path, m.seq) for path, m, _ in changes) == [
            ("t/subscriptions/a", 1),
            ("t/subscriptions/a", 2),
            ("t/subscriptions/b", 1),
            ("t/subscriptions/b", 2),
        ]
        assert seqs == {"t": 2}

    def test_settlements_report_deletions_and_locks_report_nothing(
        self, make_broker: MakeBroker
    ) -> None:
        broker = make_broker()
        log = queue(broker)
        broker.enqueue(log, parsed())
        broker.enqueue(log, parsed())
        broker.take_changes()
        first, second = lock(log), lock(log)
        assert broker.take_changes() == ([], {})
        log.complete(first.lock_token, START)
        log.dead_letter_locked(second.lock_token, START, "R", None)
        changes, seqs = broker.take_changes()
        assert [(path, m.seq, deleted) for path, m, deleted in changes] == [
            ("q", 1, True),
            ("q", 2, True),
            ("q/$deadletterqueue", 2, False),
        ]
        assert seqs == {}

    def test_a_dropped_duplicate_reports_nothing(self, make_broker: MakeBroker) -> None:
        broker = make_broker(duplicate_detection_window=60)
        log = queue(broker)
        broker.enqueue(log, parsed(message_id="m"))
        broker.take_changes()
        broker.enqueue(log, parsed(message_id="m"))
        assert broker.take_changes() == ([], {})

    def test_restore_sequence_never_moves_a_counter_back(self, make_broker: MakeBroker) -> None:
        broker = make_broker()
        log = queue(broker)
        broker.restore_sequence("q", 41)
        broker.restore_sequence("q", 7)
        assert broker.enqueue(log, parsed()) == 42
        assert broker.take_changes()[1] == {"q": 42}


class TestTick:
    """tick and next_deadline drive the clock's work over every log, dead-letter queues too."""

    def test_tick_returns_the_logs_that_gained_ready_messages(
        self, make_broker: MakeBroker, clock: FakeClock
    ) -> None:
        broker = make_broker(lock_duration=30)
        a, b = queue(broker, "a"), queue(broker, "b")
        broker.enqueue(a, parsed())
        broker.enqueue(b, parsed(scheduled_at=START + 60))
        lock(a)
        assert broker.next_deadline() == START + 30
        clock.advance(30)
        assert broker.tick() == [a]
        assert broker.next_deadline() == START + 60
        clock.advance(30)
        assert broker.tick() == [b]
        assert broker.next_deadline() is None

    def test_locks_in_a_dead_letter_queue_expire_too(
        self, make_broker: MakeBroker, clock: FakeClock
    ) -> None:
        broker = make_broker(lock_duration=30)
        log = queue(broker)
        broker.enqueue(log, parsed())
        log.dead_letter_locked(lock(log).lock_token, START, "R", None)
        dlq = broker.receive_source("q/$deadletterqueue")
        lock(dlq)
        clock.advance(30)
        assert broker.tick() == [dlq]
        assert lock(dlq, clock.now).delivery_count == 1
