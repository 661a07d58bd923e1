"""SqliteStore: what a namespace saved comes back after a restart; a damaged file is refused."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from proton import symbol

from geobus.local._broker import Broker, Topic
from geobus.local._entities import EntitySettings, MessageState
from geobus.local._store import MemoryStore, SqliteStore
from geobus.testing import FakeClock

from .helpers import START, app_properties_of, body_of, lock, parsed, queue

OpenStore = Callable[[Path], SqliteStore]

# Where a store file is cut, given its size: inside the header, at and around page
# boundaries, halfway, and one byte short.
CUTS: dict[str, Callable[[int], int]] = {
    "1-byte": lambda size: 1,
    "16-bytes": lambda size: 16,
    "99-bytes": lambda size: 99,
    "header-only": lambda size: 100,
    "page-minus-one": lambda size: 4095,
    "page-plus-one": lambda size: 4097,
    "half": lambda size: size // 2 + 1,
    "last-page-gone": lambda size: size - 4096,
    "last-byte-gone": lambda size: size - 1,
}


@pytest.fixture
def open_store() -> Iterator[OpenStore]:
    """Open SqliteStores; every one still open is closed after the test."""
    with contextlib.ExitStack() as opened:

        def open_(path: Path) -> SqliteStore:
            store = SqliteStore(path)
            opened.callback(store.close)
            return store

        yield open_


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "namespace.sqlite"


def persist(broker: Broker, store: SqliteStore | MemoryStore) -> None:
    """What the server does after every loop turn."""
    store.save(broker, *broker.take_changes())


def restart(
    path: Path, open_store: OpenStore, clock: FakeClock, *, auto_create: bool = True
) -> Broker:
    """A new store on the same file and a new broker loaded from it."""
    broker = Broker(EntitySettings(lock_duration=30), auto_create=auto_create, clock=clock)
    open_store(path).load(broker)
    return broker


def saved_store(path: Path, clock: FakeClock, count: int) -> None:
    """A store file holding ``count`` messages in queue ``q``, closed."""
    broker = Broker(clock=clock)
    store = SqliteStore(path)
    for n in range(count):
        broker.enqueue(queue(broker), parsed("x" * 200, message_id=str(n)))
    persist(broker, store)
    store.close()


class TestRoundTrip:
    """Messages, states, counts and entities saved by one broker load into the next."""

    def test_messages_come_back_byte_for_byte(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        broker = Broker(clock=clock)
        store = open_store(path)
        log = queue(broker)
        broker.enqueue(
            log,
            parsed(
                {"order": 7},
                message_id="m-1",
                ttl=600,
                properties={"tenant": "a"},
                annotations={"x-opt-partition-key": "p"},
            ),
        )
        persist(broker, store)
        before = log.messages[1]

        after = queue(restart(path, open_store, clock)).messages[1]
        # seq, sections, id, times, state, count: all equal; the header comes back with
        # every field written out, the delivery count among them.
        assert replace(after, header=None) == replace(before, header=None)
        assert after.header == [None, None, 600_000, None, 0]
        assert body_of(after) == {"order": 7}
        assert app_properties_of(after) == {"tenant": "a"}
        assert after.annotations[symbol("x-opt-partition-key")] == "p"

    def test_states_delivery_counts_and_dead_letters_survive(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        broker = Broker(EntitySettings(lock_duration=30), clock=clock)
        store = open_store(path)
        log = queue(broker)
        for n in range(4):
            broker.enqueue(log, parsed(f"m{n}", message_id=str(n)))
        broker.enqueue(log, parsed("later", scheduled_at=START + 300))
        abandoned, deferred, dead = lock(log), lock(log), lock(log)
        log.abandon(abandoned.lock_token, START)
        log.defer(deferred.lock_token, START)
        log.dead_letter_locked(dead.lock_token, START, "Poison", "bad")
        persist(broker, store)

        log = queue(restart(path, open_store, clock))
        assert {s: (m.state, m.delivery_count) for s, m in log.messages.items()} == {
            1: (MessageState.ACTIVE, 1),
            2: (MessageState.DEFERRED, 0),
            4: (MessageState.ACTIVE, 0),
            5: (MessageState.SCHEDULED, 0),
        }
        assert log.messages[5].scheduled_at == START + 300
        moved = log.dead_letter.messages[3]
        assert app_properties_of(moved) == {
            "DeadLetterReason": "Poison",
            "DeadLetterErrorDescription": "bad",
        }
        # Restored messages behave: ready in order, deferred by number, scheduled on time.
        for seq in (1, 4):
            log.complete(lock(log).lock_token, START)
            assert seq not in log.messages
        assert log.take_deferred(2, START, peek_lock=True).seq == 2
        assert log.tick(START + 300) is True
        assert lock(log, START + 300).seq == 5

    def test_locks_are_not_kept_and_a_restart_does_not_count_a_delivery(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        broker = Broker(clock=clock)
        store = open_store(path)
        broker.enqueue(queue(broker), parsed())
        lock(queue(broker))
        persist(broker, store)

        message = lock(queue(restart(path, open_store, clock)))
        assert (message.seq, message.delivery_count) == (1, 0)

    def test_settled_messages_stay_gone(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        broker = Broker(clock=clock)
        store = open_store(path)
        log = queue(broker)
        for _ in range(3):
            broker.enqueue(log, parsed())
        persist(broker, store)
        log.complete(lock(log).lock_token, START)
        log.take(START, peek_lock=False)
        persist(broker, store)

        assert sorted(queue(restart(path, open_store, clock)).messages) == [3]

    def test_topics_and_subscriptions_come_back_with_their_own_copies(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        broker = Broker(clock=clock)
        store = open_store(path)
        topic = broker.declare_topic("t", ["a", "b"])
        broker.enqueue(topic, parsed("fan"))
        a = topic.subscriptions["a"]
        a.dead_letter_locked(lock(a).lock_token, START, "R", None)
        persist(broker, store)

        restored = restart(path, open_store, clock, auto_create=False)
        topic = restored.send_target("t")
        assert isinstance(topic, Topic)
        assert sorted(topic.subscriptions) == ["a", "b"]
        assert restored.counts() == {
            "t/subscriptions/a/$deadletterqueue": 1,
            "t/subscriptions/b": 1,
        }

    def test_entities_declared_before_any_message_survive(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        broker = Broker(clock=clock)
        store = open_store(path)
        broker.receive_source("t/subscriptions/s")  # a receiver attached first
        broker.declare_queue("idle")
        persist(broker, store)

        restored = restart(path, open_store, clock, auto_create=False)
        assert isinstance(restored.send_target("t"), Topic)
        assert restored.receive_source("t/subscriptions/s") is not None
        assert restored.receive_source("idle") is not None

    def test_sequence_numbers_continue_after_a_restart(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        broker = Broker(clock=clock)
        store = open_store(path)
        log = queue(broker)
        topic = broker.declare_topic("t", ["s"])
        for _ in range(3):
            broker.enqueue(log, parsed())
            broker.enqueue(topic, parsed())
        persist(broker, store)
        while (message := log.take(START, peek_lock=False)) is not None:
            assert message.seq <= 3
        persist(broker, store)  # the queue is empty now: only the counter remembers

        restored = restart(path, open_store, clock)
        assert restored.enqueue(queue(restored), parsed()) == 4
        assert restored.enqueue(restored.send_target("t"), parsed()) == 4

    def test_a_failed_save_writes_nothing(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        broker = Broker(clock=clock)
        store = open_store(path)
        log = queue(broker)
        broker.enqueue(log, parsed("good"))
        broker.enqueue(log, parsed("bad"))
        log.messages[2].annotations[symbol("x-unencodable")] = object()
        with pytest.raises(KeyError):  # proton has no encoding for object()
            persist(broker, store)

        restored = restart(path, open_store, clock)
        assert restored.counts() == {}
        assert restored.enqueue(queue(restored), parsed()) == 1

    def test_the_memory_store_keeps_nothing(self, clock: FakeClock) -> None:
        broker = Broker(clock=clock)
        store = MemoryStore()
        broker.enqueue(queue(broker), parsed())
        persist(broker, store)
        fresh = Broker(clock=clock)
        store.load(fresh)
        store.close()
        assert (fresh.queues, fresh.counts()) == ({}, {})


class TestDamagedFiles:
    """A file that is not a sound store is refused at open, named, and left as it was."""

    def refused(self, path: Path, open_store: OpenStore, clock: FakeClock) -> ValueError:
        before = path.read_bytes() if path.is_file() else None
        with pytest.raises(ValueError, match="not a geobus local store") as info:
            restart(path, open_store, clock)
        assert str(path) in str(info.value)
        if before is not None:
            assert path.read_bytes() == before
        return info.value

    def test_a_file_that_is_not_a_database(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        path.write_bytes(b"this is not a database\n" * 100)
        self.refused(path, open_store, clock)

    @pytest.mark.parametrize("keep", CUTS.values(), ids=CUTS.keys())
    def test_a_truncated_store(
        self, path: Path, open_store: OpenStore, clock: FakeClock, keep: Callable[[int], int]
    ) -> None:
        saved_store(path, clock, 200)
        with path.open("r+b") as file:
            file.truncate(keep(path.stat().st_size))
        self.refused(path, open_store, clock)

    def test_a_store_with_an_overwritten_page(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        saved_store(path, clock, 200)
        with path.open("r+b") as file:
            file.seek(4096)  # the first table's root page
            file.write(b"\xff" * 16)
        self.refused(path, open_store, clock)

    def test_another_programs_database_is_not_adopted(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (text TEXT)")
        db.close()
        self.refused(path, open_store, clock)
        with sqlite3.connect(path) as db:
            tables = db.execute("SELECT name FROM sqlite_master").fetchall()
        db.close()
        assert tables == [("notes",)]

    def test_a_damaged_message_row_is_reported_at_load(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        saved_store(path, clock, 1)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE messages SET body = ?", (b"garbage",))
        db.close()
        error = self.refused(path, open_store, clock)
        assert "'q'" in str(error)

    def test_a_directory_is_reported(
        self, tmp_path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        self.refused(tmp_path, open_store, clock)

    def test_an_empty_file_is_a_new_store(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        path.touch()  # created, never written: nothing was ever acknowledged from it
        broker = restart(path, open_store, clock)
        broker.enqueue(queue(broker), parsed())
        assert broker.counts() == {"q": 1}

    def test_a_sound_store_is_accepted(
        self, path: Path, open_store: OpenStore, clock: FakeClock
    ) -> None:
        saved_store(path, clock, 3)
        assert restart(path, open_store, clock).counts() == {"q": 3}
