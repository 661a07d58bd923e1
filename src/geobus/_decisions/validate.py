"""Every field of an outgoing message, checked before anything is sent or buffered.

azure-servicebus's pure-Python AMQP encoder meets a field it cannot encode only
once a send is under way, and raises a plain ``ServiceBusError("Handler failed:
...")`` that reads like an outage; some values it writes wrongly without a word
(a negative ulong as its absolute value, an ``int`` property key or a ``str``
``user_id`` as a map). Service Bus limits some fields further. Checked here,
each problem is a ``TypeError`` (a type the SDK cannot encode) or a
``ValueError`` (out of range, too long, inconsistent) naming the field, raised
before any namespace is tried or anything is buffered.

Errors describe a bad value with geobus's one describer (``_redact.describe``,
``prefix=False``): by its type, its size or what it looks like, never by any part
of the value itself: a field may hold a secret.
"""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from collections.abc import Mapping
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType, AmqpMessageProperties

from .._config import MAX_MESSAGE_ID_LENGTH
from .._redact import describe

# The AMQP ranges of the types the SDK encodes these fields as.
_UBYTE = (0, 2**8 - 1)
_UINT = (0, 2**32 - 1)
_ULONG = (0, 2**64 - 1)
_INT = (-(2**31), 2**31 - 1)  # an int application property or annotation: an AMQP int
_LONG = (-(2**63), 2**63 - 1)  # a timestamp, in milliseconds
_RANGE_TEXT = {_UBYTE: "0..255", _UINT: "0..2**32-1", _ULONG: "0..2**64-1", _INT: "-2**31..2**31-1", _LONG: "-2**63..2**63-1"}

_PARTITION_KEY = b"x-opt-partition-key"
_SCHEDULED_TIME = b"x-opt-scheduled-enqueue-time"
# Annotations the SDK itself sends as an AMQP long (times a received message carries).
_LONG_ANNOTATIONS = frozenset({b"x-opt-enqueued-time", b"x-opt-locked-until"})
_ID_TYPES = "str, int, uuid.UUID, bytes"
_INT_HINT = " (the SDK sends an int of no declared type as an AMQP int; send a larger one as a str or a float)"
_PROPERTY_TYPES = "str, bytes, bool, int, float, uuid.UUID, datetime, None"


def validate_message(message: ServiceBusMessage | AmqpAnnotatedMessage, *, field: str = "") -> str:
    """Check every field of ``message``; return its MessageId as text.

    ``field`` prefixes the field names in errors (``messages[2].``). A
    ``ServiceBusMessage``'s fields are named as the SDK names them
    (``session_id``), an ``AmqpAnnotatedMessage``'s by their AMQP section
    (``properties.group_id``).

    Raises:
        TypeError: a field of a type the SDK cannot encode.
        ValueError: a field out of its AMQP range, over a Service Bus limit,
            not valid UTF-8, or a partition key other than the session id.
    """
    fields = _Fields(message, field)
    raw = fields.raw
    properties, header, annotations = raw.properties, raw.header, raw.annotations
    message_id = properties.message_id if properties is not None else None
    if message_id is None:
        raise ValueError(f"{fields.name('message_id', 'properties.message_id')}: the message has no id")
    text = _message_id(fields.name("message_id", "properties.message_id"), message_id, limit=MAX_MESSAGE_ID_LENGTH)
    if not text:
        raise ValueError(f"{fields.name('message_id', 'properties.message_id')}: must not be empty")
    session_id: str | None = None
    if properties is not None:
        if properties.correlation_id is not None:
            _message_id(fields.name("correlation_id", "properties.correlation_id"), properties.correlation_id)
        for attr, public in (("to", "to"), ("subject", "subject"), ("reply_to", "reply_to")):
            _string(fields.name(public, f"properties.{attr}"), getattr(properties, attr))
        session_id = _string(fields.name("session_id", "properties.group_id"), properties.group_id, limit=MAX_MESSAGE_ID_LENGTH)
        _string(
            fields.name("reply_to_session_id", "properties.reply_to_group_id"),
            properties.reply_to_group_id,
            limit=MAX_MESSAGE_ID_LENGTH,
        )
        _symbol(fields.name("content_type", "properties.content_type"), properties.content_type)
        _symbol(fields.name("", "properties.content_encoding"), properties.content_encoding)
        _binary(fields.name("", "properties.user_id"), properties.user_id)
        _integer(fields.name("", "properties.group_sequence"), properties.group_sequence, _UINT)
        for attr in ("creation_time", "absolute_expiry_time"):
            _integer(fields.name("", f"properties.{attr}"), getattr(properties, attr), _LONG, floats=True)
    if header is not None:
        _time_to_live(fields.name("time_to_live", "header.time_to_live"), header.time_to_live)
        _integer(fields.name("", "header.delivery_count"), header.delivery_count, _UINT)
        _integer(fields.name("", "header.priority"), header.priority, _UBYTE)
    if annotations is not None:
        _annotations(fields, annotations, session_id)
    for section in ("delivery_annotations", "footer"):
        _map(fields.name("", section), getattr(raw, section), keys="annotation")
    _application_properties(fields, raw.application_properties)
    _body(fields, raw)
    return text


def validate_schedule_time(value: Any) -> None:
    """Raises TypeError unless ``value`` is a ``datetime`` (``schedule_messages``'s time)."""
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"schedule_time_utc: expected a datetime, got {type(value).__name__}")


class _Fields:
    """Names ``message``'s fields as its caller knows them."""

    def __init__(self, message: ServiceBusMessage | AmqpAnnotatedMessage, prefix: str) -> None:
        self.public = isinstance(message, ServiceBusMessage)
        self.raw = message.raw_amqp_message if isinstance(message, ServiceBusMessage) else message
        self.prefix = prefix

    def name(self, public: str, amqp: str) -> str:
        if self.public:
            return self.prefix + (public or f"raw_amqp_message.{amqp}")
        return self.prefix + amqp


# -- one field ------------------------------------------------------------------------------


def _utf8(field: str, value: bytes | bytearray) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{field}: {describe(value, prefix=False)} that are not UTF-8 text") from None


def _text(field: str, value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field}: {describe(value, prefix=False)} that cannot be encoded as UTF-8") from None
    return value


def _message_id(field: str, value: Any, *, limit: int | None = None) -> str:
    """A message-id (MessageId, CorrelationId): an AMQP string, ulong, uuid or binary."""
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID, bytes)):
        raise TypeError(f"{field}: {type(value).__name__} is not a valid message id type ({_ID_TYPES})")
    if isinstance(value, int):
        _in_range(field, value, _ULONG, "AMQP ulong")
        text = str(value)
    elif isinstance(value, uuid.UUID):
        text = str(value)
    elif isinstance(value, bytes):
        # An AMQP binary id (JMS and Qpid producers send them): UTF-8 text arrives as a str,
        # anything else as bytes; either way it is a valid id.
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            if limit is not None and len(value) > limit:
                raise ValueError(f"{field}: {describe(value, prefix=False)}; Service Bus allows at most {limit}") from None
            return value.hex()
    else:
        text = _text(field, value)
    if limit is not None and len(text) > limit:
        raise ValueError(f"{field}: {describe(value, prefix=False)}; Service Bus allows at most {limit}")
    return text


def _string(field: str, value: Any, *, limit: int | None = None) -> str | None:
    """An AMQP string: ``str``, or ``bytes`` of UTF-8 text (as a received message holds it)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        text = _utf8(field, value)
    elif isinstance(value, str):
        text = _text(field, value)
    else:
        raise TypeError(f"{field}: expected str, got {type(value).__name__}")
    if limit is not None and len(text) > limit:
        raise ValueError(f"{field}: {describe(value, prefix=False)}; Service Bus allows at most {limit}")
    return text


def _symbol(field: str, value: Any) -> None:
    """An AMQP symbol: ASCII text."""
    text = _string(field, value)
    if text is not None and not text.isascii():
        raise ValueError(f"{field}: {describe(value, prefix=False)} with non-ASCII characters; an AMQP symbol is ASCII")


def _binary(field: str, value: Any) -> None:
    if value is not None and not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{field}: expected bytes, got {type(value).__name__}")


def _in_range(field: str, value: int, bounds: tuple[int, int], kind: str, hint: str = "") -> None:
    low, high = bounds
    if not low <= value <= high:
        raise ValueError(f"{field}: int outside the {kind} range {_RANGE_TEXT[bounds]}{hint}")


def _integer(field: str, value: Any, bounds: tuple[int, int], *, floats: bool = False) -> None:
    if value is None:
        return
    allowed = (int, float) if floats else (int,)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise TypeError(f"{field}: expected int, got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{field}: a float that is not finite")
        value = int(value)
    _in_range(field, value, bounds, "AMQP")


def _time_to_live(field: str, value: Any) -> None:
    """The header's time to live, in milliseconds: an AMQP uint, so at most about 49.7 days."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field}: expected milliseconds as an int, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{field}: a float that is not finite")
    if value < 0:
        raise ValueError(f"{field}: must not be negative")
    if value > _UINT[1]:
        raise ValueError(
            f"{field}: {datetime.timedelta(milliseconds=value).days} days is over the 2**32-1 milliseconds"
            " (about 49.7 days) the SDK can send; leave it unset to use the entity's default"
        )


# -- maps and values ------------------------------------------------------------------------


def _annotations(fields: _Fields, annotations: Any, session_id: str | None) -> None:
    if not isinstance(annotations, Mapping):
        raise TypeError(f"{fields.name('', 'annotations')}: expected a dict, got {type(annotations).__name__}")
    by_symbol = {(k.encode() if isinstance(k, str) else k): v for k, v in annotations.items()}
    partition_key = _string(
        fields.name("partition_key", "annotations[x-opt-partition-key]"),
        by_symbol.get(_PARTITION_KEY),
        limit=MAX_MESSAGE_ID_LENGTH,
    )
    if partition_key and session_id is not None and partition_key != session_id:
        raise ValueError(
            f"{fields.name('partition_key', 'annotations[x-opt-partition-key]')}: must equal the session id"
            " when both are set"
        )
    scheduled = by_symbol.get(_SCHEDULED_TIME)
    if scheduled is not None and not isinstance(scheduled, datetime.datetime):
        name = fields.name("scheduled_enqueue_time_utc", "annotations[x-opt-scheduled-enqueue-time]")
        raise TypeError(f"{name}: expected a datetime, got {type(scheduled).__name__}")
    _map(fields.name("", "annotations"), annotations, keys="annotation", longs=_LONG_ANNOTATIONS)


def _map(field: str, value: Any, *, keys: str, longs: frozenset[bytes] = frozenset()) -> None:
    """An annotations-like map (keys: symbols or ulongs), its values any AMQP value (``longs``:
    the keys whose int values the SDK sends as an AMQP long)."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise TypeError(f"{field}: expected a dict, got {type(value).__name__}")
    for key, item in value.items():
        if isinstance(key, bool) or not isinstance(key, (str, bytes, int)):
            raise TypeError(f"{field}: a key of type {type(key).__name__}; {keys} keys are str, bytes or int")
        if isinstance(key, int):
            _in_range(f"{field}: a key", key, _ULONG, "AMQP ulong")
        else:
            _symbol(f"{field}: a key", key)
        if (key.encode() if isinstance(key, str) else key) in longs and isinstance(item, int):
            _integer(f"{field}[{_key(key)}]", item, _LONG)
        else:
            _value(f"{field}[{_key(key)}]", item)


def _application_properties(fields: _Fields, properties: Any) -> None:
    field = fields.name("application_properties", "application_properties")
    if properties is None:
        return
    if not isinstance(properties, dict):  # the SDK rewrites bytes values in place
        raise TypeError(f"{field}: expected a dict, got {type(properties).__name__}")
    for key, value in properties.items():
        if isinstance(key, (bytes, bytearray)):
            _utf8(f"{field}: a key", key)
        elif isinstance(key, str):
            _text(f"{field}: a key", key)
        else:
            raise TypeError(f"{field}: a key of type {type(key).__name__}; keys are str")
        name = f"{field}[{_key(key)}]"
        # AMQP allows simple values only here: no lists, maps or described values.
        if value is None or isinstance(value, (bool, float, uuid.UUID, datetime.datetime)):
            continue
        if isinstance(value, int):
            _in_range(name, value, _INT, "AMQP int", _INT_HINT)
        elif isinstance(value, str):
            _text(name, value)
        elif isinstance(value, (bytes, bytearray)):
            _utf8(name, value)  # the SDK sends bytes as the string they decode to
        elif isinstance(value, decimal.Decimal):
            _decimal(name)
        else:
            raise TypeError(f"{name}: {type(value).__name__} is not a valid application property type ({_PROPERTY_TYPES})")


def _value(field: str, value: Any, depth: int = 0) -> None:
    """Any value the SDK's encoder infers a type for (annotations, value and sequence bodies)."""
    if depth > 32:
        raise ValueError(f"{field}: nested too deep")
    if value is None or isinstance(value, (bool, float, uuid.UUID, datetime.datetime, bytes, bytearray)):
        return
    if isinstance(value, int):
        _in_range(field, value, _INT, "AMQP int", _INT_HINT)
    elif isinstance(value, str):
        _text(field, value)
    elif isinstance(value, decimal.Decimal):
        _decimal(field)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _value(f"{field}[{index}]", item, depth + 1)
    elif isinstance(value, dict):
        if set(value) == {"TYPE", "VALUE"}:
            return  # a value already typed the SDK's own way (amqp_long_value and the like)
        for key, item in value.items():
            _value(f"{field}: a key", key, depth + 1)
            _value(f"{field}[{_key(key)}]", item, depth + 1)
    elif isinstance(value, tuple) and len(value) == 2:  # an AMQP described value
        _value(f"{field}[0]", value[0], depth + 1)
        _value(f"{field}[1]", value[1], depth + 1)
    else:
        raise TypeError(f"{field}: the SDK cannot encode a {type(value).__name__}")


def _decimal(field: str) -> None:
    # azure-servicebus 7.15 writes a decimal128 that its own receiver fails to decode (1.5
    # comes back as an overflow): the message would poison every receiver of the entity.
    raise TypeError(f"{field}: a decimal.Decimal cannot be sent (the SDK cannot read it back); send it as a str")


def _body(fields: _Fields, raw: AmqpAnnotatedMessage) -> None:
    body_type = raw.body_type
    if body_type == AmqpMessageBodyType.DATA:
        for index, section in enumerate(raw.body):
            if not isinstance(section, (bytes, bytearray)):
                raise TypeError(f"{fields.prefix}body[{index}]: expected bytes, got {type(section).__name__}")
    elif body_type == AmqpMessageBodyType.SEQUENCE:
        for index, section in enumerate(raw.body):
            _value(f"{fields.prefix}body[{index}]", section)
    elif body_type == AmqpMessageBodyType.VALUE:
        _value(f"{fields.prefix}body", raw.body)


def _key(key: Any) -> str:
    """A map key for an error message: its text, shortened (a key is a name, not a secret)."""
    text = key.decode("utf-8", "replace") if isinstance(key, (bytes, bytearray)) else str(key)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def prepare_message(message: Any, *, field: str = "") -> str:
    """Give ``message`` a MessageId if it has none; check every field; return the id as text.

    ``field`` prefixes the field names in errors (``messages[2].``).

    Raises:
        TypeError: not a ServiceBusMessage or AmqpAnnotatedMessage, or a field of a
            type the SDK cannot encode (the error names the field).
        ValueError: a field out of range, too long or inconsistent (an empty id, one
            over 128 characters, a partition key other than the session id...).
    """
    if isinstance(message, ServiceBusMessage):
        if message.message_id is None:
            message.message_id = str(uuid.uuid4())
    elif isinstance(message, AmqpAnnotatedMessage):
        properties = message.properties
        if properties is None:
            # The SDK sends such a message as it is; geobus only needs somewhere to put the id.
            properties = message.properties = AmqpMessageProperties()
        if properties.message_id is None:
            properties.message_id = str(uuid.uuid4())
    else:
        raise TypeError(
            f"{field}expected ServiceBusMessage or AmqpAnnotatedMessage, got {type(message).__name__}"
        )
    return validate_message(message, field=field)
