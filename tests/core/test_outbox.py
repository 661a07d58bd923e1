"""The outbox file: lanes, limits, time to live, encoding, durability, damage, dead letters (fake clock)."""

from __future__ import annotations

import datetime
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType

from geobus import OutboxError, OutboxFullError, OutboxPolicy, ReplicationError
from geobus._storage.messages import decode_message, encode_message
from geobus._storage.outbox import ANY_LANE, Outbox

from .fakes import FakeClock

Q = "queue:orders"
MakeOutbox = Callable[..., Outbox]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
def make_outbox(path: Path, clock: FakeClock) -> Iterator[MakeOutbox]:
    """Open outboxes on ``path`` (policy options as keywords); each is closed after the test."""
    opened: list[Outbox] = []

    def make(*, lock: bool = True, **options: Any) -> Outbox:
        outbox = Outbox(OutboxPolicy(path=str(path), **options), clock=clock, lock=lock)
        opened.append(outbox)
        return outbox

    yield make
    for outbox in opened:
        outbox.close()


@pytest.fixture
def outbox(make_outbox: MakeOutbox) -> Outbox:
    return make_outbox()


def message(message_id: str, ttl: float | None = None, body: bytes = b"order") -> ServiceBusMessage:
    return ServiceBusMessage(
        body,
        message_id=message_id,
        time_to_live=datetime.timedelta(seconds=ttl) if ttl is not None else None,
    )


def ids(outbox: Outbox, lane: str = ANY_LANE, entity: str = Q, limit: int = 1000) -> list[str]:
    return [entry.message_id for entry in outbox.head(entity, lane, limit)]


def roundtrip(outbox: Outbox, msg: ServiceBusMessage | AmqpAnnotatedMessage) -> AmqpAnnotatedMessage:
    """``msg`` as the drainer would get it back from the file."""
    outbox.append(Q, [ANY_LANE], [msg])
    (entry,) = outbox.head(Q, ANY_LANE, 10)
    outbox.remove([entry.id])
    return entry.message


class TestLanes:
    """Append and head: FIFO within a lane, lanes and entities independent."""

    def test_head_is_fifo(self, outbox: Outbox) -> None:
        outbox.append(Q, [ANY_LANE], [message("m1"), message("m2")])
        outbox.append(Q, [ANY_LANE], [message("m3")])
        assert ids(outbox) == ["m1", "m2", "m3"]
        assert ids(outbox, limit=2) == ["m1", "m2"]
        assert ids(outbox) == ["m1", "m2", "m3"]  # head does not take them away

    def test_entries_say_where_they_belong(self, outbox: Outbox, clock: FakeClock) -> None:
        outbox.append(Q, ["weu"], [message("m1")])
        (entry,) = outbox.head(Q, "weu", 10)
        assert (entry.entity, entry.lane, entry.message_id) == (Q, "weu", "m1")
        assert (entry.buffered_at, entry.attempts) == (clock(), 0)

    def test_remove_takes_from_the_head(self, outbox: Outbox) -> None:
        outbox.append(Q, [ANY_LANE], [message(f"m{i}") for i in range(5)])
        head = outbox.head(Q, ANY_LANE, 2)
        outbox.remove([entry.id for entry in head])
        assert ids(outbox) == ["m2", "m3", "m4"]
        assert outbox.pending(Q, ANY_LANE) == 3
        assert outbox.depth() == 3

    def test_one_message_in_two_lanes_is_two_copies(self, outbox: Outbox) -> None:
        outbox.append(Q, ["weu", "neu"], [message("m1"), message("m2")])
        assert (outbox.pending(Q, "weu"), outbox.pending(Q, "neu"), outbox.depth()) == (2, 2, 4)
        outbox.remove([entry.id for entry in outbox.head(Q, "weu", 10)])
        assert ids(outbox, "weu") == []
        assert ids(outbox, "neu") == ["m1", "m2"]

    def test_lanes_and_entities_are_independent(self, outbox: Outbox) -> None:
        outbox.append(Q, [ANY_LANE], [message("a1")])
        outbox.append("topic:events", [ANY_LANE], [message("b1")])
        outbox.append(Q, ["weu"], [message("c1")])
        outbox.append(Q, [ANY_LANE], [message("a2")])
        assert ids(outbox) == ["a1", "a2"]
        assert ids(outbox, entity="topic:events") == ["b1"]
        assert ids(outbox, "weu") == ["c1"]
        assert ids(outbox, "neu") == []
        assert [(lane.entity, lane.lane, lane.depth) for lane in outbox.lanes()] == [
            (Q, ANY_LANE, 2),
            (Q, "weu", 1),
            ("topic:events", ANY_LANE, 1),
        ]

    def test_oldest_age_follows_the_clock(self, outbox: Outbox, clock: FakeClock) -> None:
        assert outbox.oldest_age() is None
        outbox.append(Q, [ANY_LANE], [message("m1")])
        clock.advance(7.5)
        outbox.append(Q, ["weu"], [message("m2")])
        clock.advance(2.5)
        assert outbox.oldest_age() == pytest.approx(10.0)
        assert outbox.lanes()[0].oldest_buffered_at == clock() - 10.0

    def test_unsupported_value_is_a_type_error_and_nothing_is_stored(self, outbox: Outbox) -> None:
        outbox.append(Q, [ANY_LANE], [message("m0")])
        bad = ServiceBusMessage(b"x", message_id="bad", application_properties={"when": object()})
        with pytest.raises(TypeError, match="object"):
            outbox.append(Q, [ANY_LANE, "weu"], [message("m1"), bad, message("m2")])
        assert ids(outbox) == ["m0"]
        assert ids(outbox, "weu") == []
        assert outbox.depth() == 1
        outbox.recount()
        assert outbox.depth() == 1

    def test_repr_is_short(self, outbox: Outbox, path: Path) -> None:
        outbox.append(Q, [ANY_LANE], [message("m1")])
        assert repr(outbox) == f"Outbox({str(path)!r}, depth=1)"


class TestLimits:
    """A full outbox refuses the whole append, by count and by bytes."""

    def test_full_by_count(self, make_outbox: MakeOutbox) -> None:
        outbox = make_outbox(max_messages=3)
        outbox.append(Q, [ANY_LANE], [message("m1"), message("m2")])
        with pytest.raises(OutboxFullError) as caught:
            outbox.append(Q, [ANY_LANE], [message("m3"), message("m4")])
        assert isinstance(caught.value, ReplicationError)
        assert caught.value.causes == {}
        assert "2 messages" in str(caught.value) and "3 messages" in str(caught.value)
        assert ids(outbox) == ["m1", "m2"]
        outbox.append(Q, [ANY_LANE], [message("m3")])  # exactly at the limit is fine
        assert outbox.depth() == 3

    def test_every_lane_copy_counts(self, make_outbox: MakeOutbox) -> None:
        outbox = make_outbox(max_messages=3)
        with pytest.raises(OutboxFullError):
            outbox.append(Q, ["weu", "neu"], [message("m1"), message("m2")])
        assert outbox.depth() == 0

    def test_full_by_bytes(self, make_outbox: MakeOutbox) -> None:
        size = len(encode_message(message("m1", body=b"x" * 1000)))
        outbox = make_outbox(max_bytes=2 * size + 10)
        outbox.append(Q, [ANY_LANE], [message("m1", body=b"x" * 1000)])
        with pytest.raises(OutboxFullError, match="bytes"):
            outbox.append(Q, [ANY_LANE], [message("m2", body=b"x" * 1000), message("m3", body=b"x" * 1000)])
        assert ids(outbox) == ["m1"]
        outbox.append(Q, [ANY_LANE], [message("m2", body=b"x" * 1000)])
        assert ids(outbox) == ["m1", "m2"]

    def test_room_comes_back_when_messages_leave(self, make_outbox: MakeOutbox) -> None:
        size = len(encode_message(message("m1", body=b"x" * 1000)))
        outbox = make_outbox(max_messages=10, max_bytes=size + 10)
        outbox.append(Q, [ANY_LANE], [message("m1", body=b"x" * 1000)])
        with pytest.raises(OutboxFullError):
            outbox.append(Q, [ANY_LANE], [message("m2", body=b"x" * 1000)])
        outbox.dead_letter([entry.id for entry in outbox.head(Q, ANY_LANE, 1)], "test")
        outbox.append(Q, [ANY_LANE], [message("m2", body=b"x" * 1000)])
        assert ids(outbox) == ["m2"]


class TestTimeToLive:
    """A message whose time to live passes while buffered is dead-lettered, never sent stale."""

    def test_head_shortens_the_ttl_by_the_wait(self, outbox: Outbox, clock: FakeClock) -> None:
        outbox.append(Q, [ANY_LANE], [message("m1", ttl=30)])
        clock.advance(10.0)
        (entry,) = outbox.head(Q, ANY_LANE, 1)
        assert entry.message.header is not None
        assert entry.message.header.time_to_live == 20_000

    def test_expired_while_buffered_is_dead_lettered_with_a_reason(self, outbox: Outbox, clock: FakeClock) -> None:
        outbox.append(Q, [ANY_LANE], [message("m1", ttl=10), message("m2"), message("m3", ttl=60)])
        clock.advance(10.0)
        assert ids(outbox) == ["m2", "m3"]
        assert outbox.pending(Q, ANY_LANE) == 2
        (dead,) = outbox.dead_letters()
        assert (dead.message_id, dead.entity, dead.lane) == ("m1", Q, ANY_LANE)
        assert "expired" in dead.reason and "time_to_live" in dead.reason
        assert dead.dead_lettered_at == clock()

    def test_without_ttl_never_expires(self, outbox: Outbox, clock: FakeClock) -> None:
        outbox.append(Q, [ANY_LANE], [message("m1")])
        clock.advance(365 * 24 * 3600.0)
        assert outbox.expire(Q, ANY_LANE) == 0
        assert ids(outbox) == ["m1"]

    def test_expire_counts_and_only_touches_its_lane(self, outbox: Outbox, clock: FakeClock) -> None:
        outbox.append(Q, ["weu", "neu"], [message("m1", ttl=5), message("m2", ttl=5)])
        clock.advance(5.0)
        assert outbox.expire(Q, "weu") == 2
        assert (outbox.pending(Q, "weu"), outbox.pending(Q, "neu")) == (0, 2)

    def test_a_whole_lane_expired_heads_to_nothing(self, outbox: Outbox, clock: FakeClock) -> None:
        outbox.append(Q, [ANY_LANE], [message("m1", ttl=1), message("m2", ttl=2)])
        clock.advance(3.0)
        assert outbox.head(Q, ANY_LANE, 10) == []
        assert outbox.depth() == 0
        assert [dead.message_id for dead in outbox.dead_letters()] == ["m1", "m2"]


class TestEncoding:
    """Every AMQP section survives the file; what cannot be kept is refused at append."""

    def test_service_bus_message(self, outbox: Outbox) -> None:
        when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.timezone.utc)
        token = uuid.UUID("12345678-1234-5678-1234-567812345678")
        original = ServiceBusMessage(
            b"\x00payload\xff",
            message_id="m-1",
            session_id="session-7",
            partition_key="session-7",
            subject="created",
            content_type="application/json",
            correlation_id="corr",
            to="dest",
            reply_to="replies",
            reply_to_session_id="reply-session",
            time_to_live=datetime.timedelta(minutes=5),
            application_properties={
                "bytes": b"\x01\x02",
                "when": when,
                "token": token,
                "count": 7,
                "ratio": 0.25,
                "text": "hé",
                "flag": True,
                "nothing": None,
            },
        )
        back = roundtrip(outbox, original)
        assert back.body_type == AmqpMessageBodyType.DATA
        assert list(back.body) == [b"\x00payload\xff"]
        assert back.application_properties == original.application_properties
        assert isinstance(back.application_properties["when"], datetime.datetime)
        assert isinstance(back.application_properties["token"], uuid.UUID)
        assert back.annotations == {b"x-opt-partition-key": "session-7"}
        props = back.properties
        assert props is not None
        assert (props.message_id, props.group_id, props.reply_to_group_id) == ("m-1", "session-7", "reply-session")
        assert (props.subject, props.content_type, props.correlation_id) == ("created", "application/json", "corr")
        assert (props.to, props.reply_to) == ("dest", "replies")
        assert back.header is not None and back.header.time_to_live == 300_000

    def test_str_body_becomes_bytes(self, outbox: Outbox) -> None:
        back = roundtrip(outbox, ServiceBusMessage("héllo", message_id="m"))
        assert list(back.body) == ["héllo".encode()]

    def test_data_body_with_several_sections(self, outbox: Outbox) -> None:
        original = AmqpAnnotatedMessage(data_body=[b"one", b"two"], properties={"message_id": "m"})
        back = roundtrip(outbox, original)
        assert back.body_type == AmqpMessageBodyType.DATA
        assert list(back.body) == [b"one", b"two"]

    def test_value_body(self, outbox: Outbox) -> None:
        value = {"order": 42, "lines": [1, b"raw", {"nested": None}], b"binary-key": 1.5}
        back = roundtrip(outbox, AmqpAnnotatedMessage(value_body=value, properties={"message_id": "m"}))
        assert back.body_type == AmqpMessageBodyType.VALUE
        assert back.body == value

    def test_sequence_body(self, outbox: Outbox) -> None:
        original = AmqpAnnotatedMessage(sequence_body=[[1, "a"], [b"b", None]], properties={"message_id": "m"})
        back = roundtrip(outbox, original)
        assert back.body_type == AmqpMessageBodyType.SEQUENCE
        assert list(back.body) == [[1, "a"], [b"b", None]]

    def test_annotations_header_footer(self, outbox: Outbox) -> None:
        original = AmqpAnnotatedMessage(
            data_body=b"x",
            header={"priority": 7, "durable": True, "time_to_live": 60_000},
            properties={"message_id": b"binary-id", "user_id": b"someone"},
            annotations={b"x-opt-scheduled-enqueue-time": 1_700_000_000_000, b"x-custom": b"\xff"},
            delivery_annotations={b"x-da": "v"},
            footer={b"x-footer": 3},
            application_properties={"key": "value"},
        )
        back = roundtrip(outbox, original)
        assert back.annotations == original.annotations
        assert back.delivery_annotations == {b"x-da": "v"}
        assert back.footer == {b"x-footer": 3}
        assert back.header is not None
        assert (back.header.priority, back.header.durable, back.header.time_to_live) == (7, True, 60_000)
        assert back.properties is not None
        assert (back.properties.message_id, back.properties.user_id) == (b"binary-id", b"someone")
        assert back.application_properties == {"key": "value"}

    def test_binary_message_id_is_the_entry_id(self, outbox: Outbox) -> None:
        outbox.append(Q, [ANY_LANE], [AmqpAnnotatedMessage(data_body=b"x", properties={"message_id": b"bin"})])
        assert ids(outbox) == ["bin"]

    def test_encode_decode_without_the_file(self) -> None:
        original = ServiceBusMessage(b"body", message_id="m", application_properties={b"k": b"v"})
        back = decode_message(encode_message(original))
        assert back.application_properties == {b"k": b"v"}

    @pytest.mark.parametrize("data", [b"", b"not json", b'{"body_type": 99}', b'{"m": 1}', b'{"x": [1]}'])
    def test_decode_refuses_what_encode_did_not_write(self, data: bytes) -> None:
        with pytest.raises(ValueError):
            decode_message(data)

    @pytest.mark.parametrize(
        "bad",
        [
            ServiceBusMessage(b"x", message_id="bad", application_properties={"set": {1, 2}}),
            AmqpAnnotatedMessage(data_body=b"x", properties={"message_id": "bad"}, annotations={b"k": object()}),
            AmqpAnnotatedMessage(value_body=[1, complex(1, 2)], properties={"message_id": "bad"}),
        ],
        ids=["set-property", "object-annotation", "complex-value"],
    )
    def test_unsupported_values_refused_at_append(self, outbox: Outbox, bad: Any) -> None:
        with pytest.raises(TypeError, match="cannot keep"):
            outbox.append(Q, [ANY_LANE], [bad])
        assert outbox.depth() == 0
        assert ids(outbox) == []

    def test_unreadable_row_is_dead_lettered_not_sent(self, make_outbox: MakeOutbox, path: Path) -> None:
        outbox = make_outbox()
        outbox.append(Q, [ANY_LANE], [message("m1"), message("m2")])
        outbox.close()
        with sqlite3.connect(path) as db:  # bit rot inside one row's body (the file itself is whole)
            db.execute("UPDATE outbox SET body = ? WHERE message_id = 'm1'", (b"{garbage",))
        db.close()
        outbox = make_outbox()
        assert ids(outbox) == ["m2"]
        (dead,) = outbox.dead_letters()
        assert dead.message_id == "m1" and "unreadable" in dead.reason


class TestDurability:
    """What was appended is on disk: after close, and after a process dies without closing."""

    def test_close_and_reopen(self, make_outbox: MakeOutbox) -> None:
        first = make_outbox()
        first.append(Q, [ANY_LANE], [message("m1"), message("m2")])
        first.append(Q, ["weu"], [message("m3")])
        first.dead_letter([first.head(Q, ANY_LANE, 1)[0].id], "refused")
        first.close()
        first.close()  # twice is fine
        second = make_outbox()
        assert ids(second) == ["m2"]
        assert ids(second, "weu") == ["m3"]
        assert second.pending(Q, "weu") == 1 and second.depth() == 2
        assert [dead.message_id for dead in second.dead_letters()] == ["m1"]

    def test_killed_process_loses_nothing_acknowledged(self, path: Path, make_outbox: MakeOutbox) -> None:
        script = textwrap.dedent(
            f"""
            import os
            from azure.servicebus import ServiceBusMessage
            from geobus import OutboxPolicy
            from geobus._storage.outbox import Outbox
            outbox = Outbox(OutboxPolicy(path={str(path)!r}))
            for i in range(5):
                outbox.append("{Q}", ["any"], [ServiceBusMessage(b"x", message_id=f"m{{i}}")])
            os._exit(0)  # no close, no checkpoint, no lock release but the kernel's
            """
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        outbox = make_outbox()
        assert ids(outbox) == [f"m{i}" for i in range(5)]


class TestLocking:
    """One owner per file: a second outbox on it is refused, naming the holder."""

    def test_second_outbox_on_the_same_file(self, make_outbox: MakeOutbox, path: Path) -> None:
        first = make_outbox()
        with pytest.raises(OutboxError) as caught:
            make_outbox()
        assert str(path) in str(caught.value)
        assert f"in use by process {os.getpid()}" in str(caught.value)
        first.append(Q, [ANY_LANE], [message("m1")])  # the owner is unaffected
        first.close()
        assert ids(make_outbox()) == ["m1"]

    def test_unlocked_reader_for_inspection(self, make_outbox: MakeOutbox) -> None:
        owner = make_outbox()
        owner.append(Q, [ANY_LANE], [message("m1")])
        reader = make_outbox(lock=False)
        assert ids(reader) == ["m1"]


def _outbox_bytes(tmp_path: Path, count: int = 200) -> bytes:
    """A real outbox file's bytes, several pages long."""
    source = tmp_path / "source.db"
    outbox = Outbox(OutboxPolicy(path=str(source)), clock=FakeClock())
    outbox.append(Q, [ANY_LANE], [message(f"m{i}", body=b"x" * 500) for i in range(count)])
    outbox.close()
    return source.read_bytes()


def _other_programs_database(tmp_path: Path) -> bytes:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices (total) VALUES (9.5)")
    db.close()
    return other.read_bytes()


def _wrong_format(tmp_path: Path) -> bytes:
    source = tmp_path / "future.db"
    outbox = Outbox(OutboxPolicy(path=str(source)))
    outbox.append(Q, [ANY_LANE], [message("m1")])
    outbox._db.execute("UPDATE meta SET value = '2' WHERE key = 'format'")
    outbox.close()
    return source.read_bytes()


DAMAGE: dict[str, Callable[[Path], bytes]] = {
    "truncated-mid-page": lambda tmp: (lambda data: data[: len(data) // 2 + 7])(_outbox_bytes(tmp)),
    "truncated-whole-pages": lambda tmp: _outbox_bytes(tmp)[: 3 * 4096],
    "header-only": lambda tmp: _outbox_bytes(tmp)[:100],
    "random-bytes": lambda tmp: random.Random(7).randbytes(8192),
    "few-random-bytes": lambda tmp: random.Random(8).randbytes(40),
    "text-file": lambda tmp: b"active = 'weu'\n",
    "middle-page-overwritten": lambda tmp: (
        lambda data: data[: 2 * 4096] + random.Random(9).randbytes(4096) + data[3 * 4096 :]
    )(_outbox_bytes(tmp)),
    "another-programs-database": _other_programs_database,
    "newer-outbox-format": _wrong_format,
}


class TestDamagedFiles:
    """A file that is not a whole outbox is refused, and left exactly as it was."""

    @pytest.mark.parametrize("damage", list(DAMAGE))
    def test_refused_and_left_unchanged(self, tmp_path: Path, path: Path, clock: FakeClock, damage: str) -> None:
        content = DAMAGE[damage](tmp_path)
        path.write_bytes(content)
        with pytest.raises(OutboxError) as caught:
            Outbox(OutboxPolicy(path=str(path)), clock=clock)
        assert str(path) in str(caught.value)
        assert "not a geobus outbox" in str(caught.value)
        assert path.read_bytes() == content
        # The refused open released the file: a sound one at the same place opens at once.
        path.unlink()
        Outbox(OutboxPolicy(path=str(path)), clock=clock).close()

    def test_empty_file_is_a_new_outbox(self, make_outbox: MakeOutbox, path: Path) -> None:
        path.write_bytes(b"")
        outbox = make_outbox()
        assert outbox.depth() == 0
        outbox.append(Q, [ANY_LANE], [message("m1")])
        assert ids(outbox) == ["m1"]

    def test_missing_file_is_created(self, make_outbox: MakeOutbox, path: Path) -> None:
        assert not path.exists()
        make_outbox()
        assert path.exists()

    @pytest.mark.parametrize("where", ["missing directory", "a directory", "under a file", "read-only directory"])
    def test_unusable_path_is_an_outbox_error_naming_it(self, tmp_path: Path, clock: FakeClock, where: str) -> None:
        if where == "missing directory":
            path = tmp_path / "no-such-dir" / "outbox.db"
        elif where == "a directory":
            path = tmp_path / "outbox.db"
            path.mkdir()
        elif where == "under a file":
            (tmp_path / "file").write_text("x")
            path = tmp_path / "file" / "outbox.db"
        else:
            if os.geteuid() == 0:
                pytest.skip("root writes into read-only directories")
            path = tmp_path / "ro" / "outbox.db"
            path.parent.mkdir(mode=0o500)
        with pytest.raises(OutboxError) as caught:
            Outbox(OutboxPolicy(path=str(path)), clock=clock)
        assert str(path) in str(caught.value)
        assert "outbox" in str(caught.value)
        assert not isinstance(caught.value.__cause__, OutboxError)

    def test_no_path_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="no path"):
            Outbox(OutboxPolicy())


class TestDeadLetters:
    """Dead letters keep the reason and the attempts; they can be retried or purged, all or by id."""

    @pytest.fixture
    def filled(self, outbox: Outbox) -> Outbox:
        """Lane any: m4 waiting; dead letters m1, m2 (any) and m3 (weu)."""
        outbox.append(Q, [ANY_LANE], [message("m1"), message("m2")])
        outbox.append(Q, ["weu"], [message("m3")])
        head = outbox.head(Q, ANY_LANE, 2)
        outbox.record_failure([head[0].id], "ServiceBusConnectionError: down")
        outbox.record_failure([head[0].id], "ServiceBusConnectionError: down")
        outbox.dead_letter([entry.id for entry in head], "refused by the namespace: too large")
        outbox.dead_letter([entry.id for entry in outbox.head(Q, "weu", 1)], "expired")
        outbox.append(Q, [ANY_LANE], [message("m4")])
        return outbox

    def test_listed_with_reason_and_attempts(self, filled: Outbox) -> None:
        dead = filled.dead_letters()
        assert [(d.message_id, d.lane, d.reason, d.attempts) for d in dead] == [
            ("m1", ANY_LANE, "refused by the namespace: too large", 2),
            ("m2", ANY_LANE, "refused by the namespace: too large", 0),
            ("m3", "weu", "expired", 0),
        ]
        assert [d.message_id for d in filled.dead_letters(limit=1)] == ["m1"]
        assert filled.depth() == 1

    def test_attempts_counted_while_buffered(self, filled: Outbox) -> None:
        (entry,) = filled.head(Q, ANY_LANE, 10)
        filled.record_failure([entry.id], "boom")
        assert filled.head(Q, ANY_LANE, 10)[0].attempts == 1

    def test_retry_all_goes_to_the_tail_of_each_lane(self, filled: Outbox) -> None:
        assert filled.retry_dead_letters() == 3
        assert filled.dead_letters() == []
        assert ids(filled) == ["m4", "m1", "m2"]
        assert ids(filled, "weu") == ["m3"]
        assert (filled.pending(Q, ANY_LANE), filled.pending(Q, "weu")) == (3, 1)
        assert [entry.attempts for entry in filled.head(Q, ANY_LANE, 10)] == [0, 0, 0]

    def test_retry_by_id(self, filled: Outbox) -> None:
        second = filled.dead_letters()[1]
        assert filled.retry_dead_letters([second.id]) == 1
        assert ids(filled) == ["m4", "m2"]
        assert [d.message_id for d in filled.dead_letters()] == ["m1", "m3"]

    def test_purge_all(self, filled: Outbox) -> None:
        assert filled.purge_dead_letters() == 3
        assert filled.dead_letters() == []
        assert ids(filled) == ["m4"]

    def test_purge_by_id(self, filled: Outbox) -> None:
        first = filled.dead_letters()[0]
        assert filled.purge_dead_letters([first.id, 9999]) == 1
        assert [d.message_id for d in filled.dead_letters()] == ["m2", "m3"]

    def test_recount_sees_another_process_retry(self, filled: Outbox, make_outbox: MakeOutbox) -> None:
        inspector = make_outbox(lock=False)  # as `geobus outbox retry` opens it
        assert inspector.retry_dead_letters() == 3
        assert filled.pending(Q, ANY_LANE) == 1  # the owner's counters are stale until...
        filled.recount()
        assert (filled.pending(Q, ANY_LANE), filled.pending(Q, "weu"), filled.depth()) == (3, 1, 4)
        assert ids(filled) == ["m4", "m1", "m2"]


def test_a_new_outbox_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    outbox = Outbox(OutboxPolicy(path=str(tmp_path / "private.db")))
    try:
        assert (tmp_path / "private.db").stat().st_mode & 0o777 == 0o600
    finally:
        outbox.close()
