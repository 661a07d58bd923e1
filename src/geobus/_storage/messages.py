"""What the outbox keeps of a message: every AMQP section, as tagged JSON.

No pickle: the outbox file is data, not code. A value JSON cannot hold (bytes,
a timestamp, a UUID, a map whose keys are not strings) is written as a one-key
object naming its type, and read back as that type.
"""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from collections.abc import Sequence
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType

_HEADER_FIELDS = ("delivery_count", "time_to_live", "durable", "first_acquirer", "priority")
_PROPERTY_FIELDS = (
    "message_id", "user_id", "to", "subject", "reply_to", "correlation_id", "content_type",
    "content_encoding", "creation_time", "absolute_expiry_time", "group_id", "group_sequence",
    "reply_to_group_id",
)  # fmt: skip


def encode_message(message: ServiceBusMessage | AmqpAnnotatedMessage) -> bytes:
    """Every AMQP section of ``message``, as tagged JSON (no pickle: the file is data, not code).

    Raises:
        TypeError: a property holds a value geobus cannot keep (not an AMQP primitive).
    """
    raw = _raw(message)
    body_type = raw.body_type
    if body_type == AmqpMessageBodyType.DATA:
        body: Any = [bytes(section) for section in raw.body]
    elif body_type == AmqpMessageBodyType.SEQUENCE:
        body = [list(section) for section in raw.body]
    else:
        body = raw.body
    document = {
        "body_type": body_type.value,
        "body": body,
        "header": _fields(raw.header, _HEADER_FIELDS),
        "properties": _fields(raw.properties, _PROPERTY_FIELDS),
        "application_properties": raw.application_properties,
        "annotations": raw.annotations,
        "delivery_annotations": raw.delivery_annotations,
        "footer": raw.footer,
    }
    return json.dumps(_tag(document), separators=(",", ":")).encode()


def decode_message(data: bytes) -> AmqpAnnotatedMessage:
    """The message ``encode_message`` wrote.

    Raises:
        ValueError: ``data`` is not such a message.
    """
    try:
        document = _untag(json.loads(data))
        body_type = AmqpMessageBodyType(document["body_type"])
        body_argument = {
            AmqpMessageBodyType.DATA: "data_body",
            AmqpMessageBodyType.SEQUENCE: "sequence_body",
            AmqpMessageBodyType.VALUE: "value_body",
        }[body_type]
        return AmqpAnnotatedMessage(
            **{body_argument: document["body"]},
            header=document["header"],
            properties=document["properties"],
            application_properties=document["application_properties"],
            annotations=document["annotations"],
            delivery_annotations=document["delivery_annotations"],
            footer=document["footer"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a buffered message: {exc}") from exc


def _fields(section: Any, names: Sequence[str]) -> dict[str, Any] | None:
    if section is None:
        return None
    values = {name: getattr(section, name, None) for name in names}
    return {name: value for name, value in values.items() if value is not None} or None


def _tag(value: Any) -> Any:
    """JSON with every non-JSON value (and every map, whose keys may be bytes) tagged."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return {"t": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    if isinstance(value, dict):
        return {"m": [[_tag(k), _tag(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_tag(item) for item in value]
    raise TypeError(f"the outbox cannot keep a value of type {type(value).__name__}")


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(item) for item in value]
    if not isinstance(value, dict):
        return value
    ((tag, inner),) = value.items()
    if tag == "b":
        return base64.b64decode(inner)
    if tag == "t":
        return datetime.datetime.fromisoformat(inner)
    if tag == "u":
        return uuid.UUID(inner)
    if tag == "m":
        return {_untag(k): _untag(v) for k, v in inner}
    raise ValueError(f"unknown tag {tag!r}")


def _raw(message: ServiceBusMessage | AmqpAnnotatedMessage) -> AmqpAnnotatedMessage:
    return message.raw_amqp_message if isinstance(message, ServiceBusMessage) else message


def id_of(message: ServiceBusMessage | AmqpAnnotatedMessage) -> str:
    """``message``'s id as text (``str(None)`` when it has none)."""
    raw = _raw(message)
    value = raw.properties.message_id if raw.properties is not None else None
    if isinstance(value, bytes):  # a binary id: its text when it is UTF-8, as the SDK reads it
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def ttl_of(message: ServiceBusMessage | AmqpAnnotatedMessage) -> float | None:
    """``message``'s time to live in seconds, or None when it has none."""
    raw = _raw(message)
    ttl = raw.header.time_to_live if raw.header is not None else None
    return ttl / 1000.0 if ttl else None
