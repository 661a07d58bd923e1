"""Every field of an outgoing message, checked before anything is sent: what passes, what is
refused, and that each refusal names its field without quoting its value."""

from __future__ import annotations

import base64
import datetime
import decimal
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus._pyamqp._decode import decode_payload
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.amqp import AmqpAnnotatedMessage

from geobus._decisions.validate import prepare_message, validate_message, validate_schedule_time

# Made at run time: a key-shaped literal in the repository would look like a leaked one.
SECRET = "Endpoint=sb://x/;SharedAccessKey=" + base64.b64encode(b"secret-key-value").decode().rstrip("=")
UTC = datetime.timezone.utc


def sb(**fields: Any) -> ServiceBusMessage:
    return ServiceBusMessage(b"body", **{"message_id": "m-1", **fields})


def amqp(**properties: Any) -> AmqpAnnotatedMessage:
    return AmqpAnnotatedMessage(data_body=b"body", properties={"message_id": "m-1", **properties})


def with_raw(change: Callable[[AmqpAnnotatedMessage], None]) -> ServiceBusMessage:
    """A ServiceBusMessage whose raw AMQP message was changed behind the SDK's setters."""
    message = sb()
    change(message.raw_amqp_message)
    return message


def _set(section: str, **values: Any) -> Callable[[AmqpAnnotatedMessage], None]:
    def change(raw: AmqpAnnotatedMessage) -> None:
        for name, value in values.items():
            setattr(getattr(raw, section), name, value)

    return change


def _annotate(key: bytes, value: Any) -> Callable[[AmqpAnnotatedMessage], None]:
    def change(raw: AmqpAnnotatedMessage) -> None:
        raw.annotations = {**(raw.annotations or {}), key: value}

    return change


REFUSED: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    # (id, message, error, field named in the error)
    ("float-id", lambda: sb(message_id=3.5), TypeError, "message_id"),
    ("object-id", lambda: sb(message_id=object()), TypeError, "message_id"),
    ("bool-id", lambda: sb(message_id=True), TypeError, "message_id"),
    ("bytearray-id", lambda: sb(message_id=bytearray(b"x")), TypeError, "message_id"),
    ("negative-id", lambda: sb(message_id=-1), ValueError, "message_id"),
    ("ulong-overflow-id", lambda: sb(message_id=2**64), ValueError, "message_id"),
    ("129-char-id", lambda: amqp(message_id="x" * 129), ValueError, "properties.message_id"),
    ("empty-id", lambda: with_raw(_set("properties", message_id="")), ValueError, "message_id"),
    ("float-correlation-id", lambda: sb(correlation_id=2.5), TypeError, "correlation_id"),
    ("ulong-overflow-correlation-id", lambda: sb(correlation_id=2**64), ValueError, "correlation_id"),
    ("int-session-id", lambda: amqp(group_id=5), TypeError, "properties.group_id"),
    ("long-session-id", lambda: with_raw(_set("properties", group_id="s" * 129)), ValueError, "session_id"),
    ("partition-key-not-session-id", lambda: _pk_mismatch(), ValueError, "partition_key"),
    ("long-partition-key", lambda: with_raw(_annotate(b"x-opt-partition-key", "p" * 129)), ValueError, "partition_key"),
    ("int-to", lambda: sb(to=5), TypeError, "to"),
    ("list-reply-to", lambda: sb(reply_to=["q"]), TypeError, "reply_to"),
    ("long-reply-to-session-id", lambda: with_raw(_set("properties", reply_to_group_id="r" * 129)), ValueError, "reply_to_session_id"),
    ("int-subject", lambda: sb(subject=7), TypeError, "subject"),
    ("surrogate-subject", lambda: sb(subject="\ud800"), ValueError, "subject"),
    ("non-ascii-content-type", lambda: sb(content_type="application/jsön"), ValueError, "content_type"),
    ("str-user-id", lambda: amqp(user_id="me"), TypeError, "properties.user_id"),
    ("negative-ttl", lambda: sb(time_to_live=datetime.timedelta(seconds=-1)), ValueError, "time_to_live"),
    ("60-day-ttl", lambda: sb(time_to_live=datetime.timedelta(days=60)), ValueError, "time_to_live"),
    ("str-ttl", lambda: with_raw(_set("header", time_to_live="1000")), TypeError, "time_to_live"),
    ("priority-256", lambda: with_raw(_set("header", priority=256)), ValueError, "raw_amqp_message.header.priority"),
    ("int-scheduled-time", lambda: sb(scheduled_enqueue_time_utc=1_700_000_000_000), TypeError, "scheduled_enqueue_time_utc"),
    ("set-property", lambda: sb(application_properties={"colours": {"red"}}), TypeError, "application_properties['colours']"),
    ("list-property", lambda: sb(application_properties={"ids": [1, 2]}), TypeError, "application_properties['ids']"),
    ("dict-property", lambda: sb(application_properties={"d": {"a": 1}}), TypeError, "application_properties['d']"),
    ("decimal-property", lambda: sb(application_properties={"price": decimal.Decimal("1.5")}), TypeError, "application_properties['price']"),
    ("int32-overflow-property", lambda: sb(application_properties={"n": 2**31}), ValueError, "application_properties['n']"),
    ("int-key", lambda: sb(application_properties={5: "x"}), TypeError, "application_properties"),
    ("non-utf8-bytes-property", lambda: sb(application_properties={"b": b"\xff"}), ValueError, "application_properties['b']"),
    ("tuple-properties", lambda: sb(application_properties=(("a", 1),)), TypeError, "application_properties"),
    ("set-annotation", lambda: with_raw(_annotate(b"x-opt-custom", {1})), TypeError, "raw_amqp_message.annotations"),
    ("set-body", lambda: AmqpAnnotatedMessage(value_body={1}, properties={"message_id": "m"}), TypeError, "body"),
    ("int-data-section", lambda: AmqpAnnotatedMessage(data_body=[b"a", 5], properties={"message_id": "m"}), TypeError, "body[1]"),
]


def _pk_mismatch() -> ServiceBusMessage:
    message = sb(session_id="s", partition_key="s")
    message.session_id = "other"  # the SDK checks the pair only when the partition key is set
    return message


ACCEPTED: list[tuple[str, Callable[[], Any]]] = [
    ("str-id", lambda: sb(message_id="order-1")),
    ("int-id", lambda: sb(message_id=2**64 - 1)),
    ("zero-id", lambda: sb(message_id=0)),
    ("uuid-id", lambda: sb(message_id=uuid.uuid4())),
    ("bytes-id", lambda: sb(message_id=b"order-1")),
    # An AMQP binary id that is not text (JMS, Qpid producers, a forwarded message).
    ("binary-id", lambda: sb(message_id=b"\xff\x00\x01")),
    ("128-char-id", lambda: sb(message_id="x" * 128)),
    ("uuid-correlation-id", lambda: sb(correlation_id=uuid.uuid4())),
    ("session-and-partition-key", lambda: sb(session_id="s" * 128, partition_key="s" * 128)),
    ("every-string", lambda: sb(to="q", reply_to="r", subject="é", content_type="application/json", reply_to_session_id="r")),
    ("49-day-ttl", lambda: sb(time_to_live=datetime.timedelta(days=49))),
    ("scheduled", lambda: sb(scheduled_enqueue_time_utc=datetime.datetime(2030, 1, 1, tzinfo=UTC))),
    (
        "every-property-type",
        lambda: sb(
            application_properties={
                "s": "text",
                b"b": b"utf-8 bytes",
                "t": True,
                "i": -(2**31),
                "j": 2**31 - 1,
                "f": float("nan"),
                "u": uuid.uuid4(),
                "d": datetime.datetime(2030, 1, 1, tzinfo=UTC),
                "n": None,
            }
        ),
    ),
    ("forwarded-times", lambda: with_raw(_annotate(b"x-opt-enqueued-time", 1_700_000_000_000))),
    ("value-body", lambda: AmqpAnnotatedMessage(value_body={"a": [1, "x", None]}, properties={"message_id": "m"})),
    ("sequence-body", lambda: AmqpAnnotatedMessage(sequence_body=[[1, 2], ["x"]], properties={"message_id": "m"})),
    ("no-properties", lambda: sb(application_properties=None)),
]


class TestRefused:
    """What the SDK cannot encode, or Service Bus would refuse: refused naming the field."""

    @pytest.mark.parametrize(("make", "error", "field"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
    def test_refused(self, make: Callable[[], Any], error: type[Exception], field: str) -> None:
        with pytest.raises(error) as caught:
            validate_message(make())
        assert str(caught.value).startswith(f"{field}:") or str(caught.value).startswith(f"{field}["), caught.value

    def test_a_value_is_never_quoted(self) -> None:
        for make in (
            lambda: sb(message_id=SECRET * 3),
            lambda: sb(message_id=b"\xff" * 60 + SECRET.encode() * 3),
            lambda: sb(subject=SECRET + "\ud800"),
            lambda: sb(application_properties={"token": SECRET.encode() + b"\xff"}),
            lambda: sb(application_properties={"pin": 2**40}),
        ):
            with pytest.raises((TypeError, ValueError)) as caught:
                validate_message(make())
            assert "SharedAccessKey" not in str(caught.value) and "1099511627776" not in str(caught.value)

    def test_a_list_names_the_message_at_fault(self) -> None:
        with pytest.raises(TypeError, match=r"^messages\[1\]\.message_id: float"):
            prepare_message(sb(message_id=3.5), field="messages[1].")

    def test_a_schedule_time_must_be_a_datetime(self) -> None:
        validate_schedule_time(datetime.datetime.now(UTC))
        with pytest.raises(TypeError, match="schedule_time_utc"):
            validate_schedule_time(1_700_000_000)


class TestAccepted:
    """What the SDK encodes and Service Bus takes passes, and encodes."""

    @pytest.mark.parametrize("make", [a[1] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
    def test_accepted_and_encodable(self, make: Callable[[], Any]) -> None:
        message = make()
        validate_message(message)
        raw = message.raw_amqp_message if isinstance(message, ServiceBusMessage) else message
        output = bytearray()
        encode_payload(output, PyamqpTransport.to_outgoing_amqp_message(raw))
        decode_payload(memoryview(output))  # and the SDK can read it back

    def test_the_id_is_returned_as_text(self) -> None:
        assert validate_message(sb(message_id=42)) == "42"
        assert validate_message(sb(message_id=b"b-1")) == "b-1"
