"""AMQP 1.0 message sections, as the local namespace stores and re-delivers them.

A message is kept as the client sent it, minus the sections the broker owns
(header, delivery annotations, message annotations), which are rebuilt at every
delivery. The body, properties, application properties and footer go back to the
client byte for byte, so whatever the SDK encoded, it decodes again.

Splitting is done by a small skipper over the AMQP type encoding (every format
code says how long its value is), which avoids proton's ``Data`` quirks; proton is
used only to decode the few sections the broker reads and to encode the ones it
writes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proton import Data, Described, symbol, ubyte, uint, ulong

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78

_SECTION_NAMES = {
    b"amqp:header:list": HEADER,
    b"amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    b"amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    b"amqp:properties:list": PROPERTIES,
    b"amqp:application-properties:map": APPLICATION_PROPERTIES,
    b"amqp:data:binary": DATA,
    b"amqp:amqp-sequence:list": AMQP_SEQUENCE,
    b"amqp:value:*": AMQP_VALUE,
    b"amqp:footer:map": FOOTER,
}
# The header's fields, which the broker re-encodes: (name, type, upper bound of an int).
_HEADER_FIELDS: tuple[tuple[str, type, int], ...] = (
    ("durable", bool, 0),
    ("priority", int, 0xFF),
    ("ttl", int, 0xFFFFFFFF),
    ("first-acquirer", bool, 0),
    ("delivery-count", int, 0xFFFFFFFF),
)
SCHEDULED_ENQUEUE_TIME = "x-opt-scheduled-enqueue-time"
_BODY = (DATA, AMQP_SEQUENCE, AMQP_VALUE)

# Width of the size prefix (variable, compound and array codes) or of the value
# itself (fixed codes), by the format code's high nibble.
_FIXED_WIDTH = {0x4: 0, 0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8, 0x9: 16}
_SIZED_WIDTH = {0xA: 1, 0xB: 4, 0xC: 1, 0xD: 4, 0xE: 1, 0xF: 4}


class CodecError(ValueError):
    """The bytes are not a well-formed AMQP message."""


def _skip(buf: bytes, pos: int) -> int:
    """Return the offset just past the AMQP value that starts at ``pos``.

    A described value (0x00) is two values in a row, a descriptor then the value,
    either of which may be described again; counting the values still owed, rather
    than recursing, keeps a run of 0x00 bytes from exhausting the stack.

    Raises:
        CodecError: the value is cut short or uses an unknown format code.
    """
    owed = 1
    while owed:
        if pos >= len(buf):
            raise CodecError("truncated value")
        code = buf[pos]
        pos += 1
        if code == 0x00:
            owed += 1  # this value becomes a descriptor and a value
            continue
        nibble = code >> 4
        width = _FIXED_WIDTH.get(nibble)
        if width is not None:
            end = pos + width
        else:
            size_width = _SIZED_WIDTH.get(nibble)
            if size_width is None:
                raise CodecError(f"unknown format code 0x{code:02x}")
            if pos + size_width > len(buf):
                raise CodecError("truncated size")
            size = buf[pos] if size_width == 1 else struct.unpack_from(">I", buf, pos)[0]
            end = pos + size_width + size
        if end > len(buf):
            raise CodecError("truncated value")
        pos = end
        owed -= 1
    return pos


def _descriptor_code(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a section descriptor at ``pos`` (just past 0x00); return (code, end).

    Raises:
        CodecError: the descriptor is cut short or names no message section.
    """
    if pos >= len(buf):
        raise CodecError("truncated descriptor")
    code = buf[pos]
    if code == 0x53:
        if pos + 2 > len(buf):
            raise CodecError("truncated descriptor")
        return buf[pos + 1], pos + 2
    if code == 0x80:
        if pos + 9 > len(buf):
            raise CodecError("truncated descriptor")
        value: int = struct.unpack_from(">Q", buf, pos + 1)[0]
        return value, pos + 9
    if code in (0xA3, 0xB3):
        end = _skip(buf, pos)
        name = bytes(buf[pos + (2 if code == 0xA3 else 5) : end])
        if name in _SECTION_NAMES:
            return _SECTION_NAMES[name], end
    if code == 0x44:
        return 0, pos + 1
    raise CodecError("section has an unknown descriptor")


def split_sections(buf: bytes) -> list[tuple[int, int, int]]:
    """Split an encoded message into ``(section code, start, end)`` triples."""
    sections = []
    pos = 0
    while pos < len(buf):
        if buf[pos] != 0x00:
            raise CodecError("message section is not a described type")
        code, _ = _descriptor_code(buf, pos + 1)
        if not HEADER <= code <= FOOTER:
            raise CodecError(f"unknown message section 0x{code:x}")
        end = _skip(buf, pos)
        sections.append((code, pos, end))
        pos = end
    if not sections:
        raise CodecError("empty message")
    return sections


def _data_payload(buf: bytes, start: int, end: int) -> bytes:
    _, pos = _descriptor_code(buf, start + 1)
    code = buf[pos] if pos < end else None
    if code == 0xA0:
        return bytes(buf[pos + 2 : end])
    if code == 0xB0:
        return bytes(buf[pos + 5 : end])
    raise CodecError("data section does not hold binary")


def unpack_batch(buf: bytes) -> list[bytes] | None:
    """The inner messages of a batch transfer (format 0x80013700), else None.

    proton does not expose a transfer's message-format, so a batch is recognised
    by its structure: a body made only of data sections, each of which decodes
    completely as an AMQP message. An ordinary message whose binary body is
    itself an encoded AMQP message would be taken for a batch; azure-servicebus
    never sends one.

    Raises:
        CodecError: ``buf`` is not a well-formed message (an inner message that is
            not well-formed only makes ``buf`` a plain message).
    """
    sections = split_sections(buf)
    bodies = [s for s in sections if s[0] in _BODY]
    if not bodies or any(code != DATA for code, _, _ in bodies):
        return None
    inner: list[bytes] = []
    for _, start, end in bodies:
        payload = _data_payload(buf, start, end)
        if not payload or payload[0] != 0x00:
            return None
        try:
            split_sections(payload)
        except CodecError:
            return None
        inner.append(payload)
    return inner


def _decode_section(buf: bytes, start: int, end: int) -> Any:
    data = Data()
    data.decode(bytes(buf[start:end]))
    data.rewind()
    data.next()
    obj = data.get_object()
    # Copied while ``data`` lives: its values may point into buffers proton frees with it.
    return _copy(obj.value if isinstance(obj, Described) else obj)


def _copy(value: Any) -> Any:
    """Detach proton values from buffers proton may free (memoryviews)."""
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):
        return {_copy(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@dataclass
class ParsedMessage:
    """What the broker needs of one message, and the bytes it keeps."""

    header: list[Any] | None
    annotations: dict[Any, Any]
    rest: bytes  # properties, application properties, body, footer: as sent
    message_id: Any = None
    session_id: str | None = None
    to: str | None = None
    application_properties: dict[Any, Any] = field(default_factory=dict)
    # The properties section's 13 fields (message-id, user-id, to, subject, reply-to,
    # correlation-id, content-type, content-encoding, absolute-expiry-time,
    # creation-time, group-id, group-sequence, reply-to-group-id), None where unset.
    properties: list[Any] = field(default_factory=lambda: [None] * 13)

    @property
    def ttl_ms(self) -> int | None:
        if self.header and len(self.header) > 2 and self.header[2] is not None:
            return int(self.header[2])
        return None

    @property
    def scheduled_enqueue_ms(self) -> int | None:
        """``x-opt-scheduled-enqueue-time``, ms since the epoch (checked by ``parse_message``)."""
        value = self.annotation(SCHEDULED_ENQUEUE_TIME)
        return None if value is None else int(value)

    def annotation(self, name: str) -> Any:
        return self.annotations.get(symbol(name))


def _checked_header(value: Any) -> list[Any]:
    """The header's fields, each of its AMQP type or null (``encode_header`` needs that)."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > len(_HEADER_FIELDS):
        raise CodecError("the header section is not a header list")
    for item, (name, kind, bound) in zip(value, _HEADER_FIELDS, strict=False):
        if item is None:
            continue
        if kind is bool and not isinstance(item, bool):
            raise CodecError(f"header {name} is not a boolean")
        if kind is int and (isinstance(item, bool) or not isinstance(item, int)):
            raise CodecError(f"header {name} is not an integer")
        if kind is int and not 0 <= item <= bound:
            raise CodecError(f"header {name} is out of range")
    return value


def _checked_map(value: Any, section: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CodecError(f"the {section} section is not a map")
    return value


def _checked_annotations(value: Any) -> dict[Any, Any]:
    annotations = _checked_map(value, "message-annotations")
    scheduled = annotations.get(symbol(SCHEDULED_ENQUEUE_TIME))
    if scheduled is not None and (isinstance(scheduled, bool) or not isinstance(scheduled, int)):
        raise CodecError(f"{SCHEDULED_ENQUEUE_TIME} is not a timestamp")
    if annotations:
        # They are written back at every delivery: a value proton decoded but cannot
        # encode again must fail this send, not every later receive.
        encode_annotations(annotations)
    return annotations


def parse_message(buf: bytes) -> ParsedMessage:
    """Parse one (non-batch) encoded message.

    Sections the broker reads must have their AMQP types: a header list, maps for
    annotations and application properties, a properties list.

    Raises:
        CodecError: the bytes are not a well-formed message.
    """
    header: list[Any] | None = None
    annotations: dict[Any, Any] = {}
    rest = bytearray()
    props: list[Any] = []
    app_props: dict[Any, Any] = {}
    try:
        for code, start, end in split_sections(buf):
            if code == HEADER:
                header = _checked_header(_copy(_decode_section(buf, start, end)))
            elif code == MESSAGE_ANNOTATIONS:
                annotations = _checked_annotations(_copy(_decode_section(buf, start, end)))
            elif code == DELIVERY_ANNOTATIONS:
                continue
            else:
                if code == PROPERTIES:
                    value = _copy(_decode_section(buf, start, end))
                    if value is not None and not isinstance(value, list):
                        raise CodecError("the properties section is not a list")
                    props = list(value or [])
                elif code == APPLICATION_PROPERTIES:
                    app_props = _checked_map(
                        _copy(_decode_section(buf, start, end)), "application-properties"
                    )
                rest += buf[start:end]
    except CodecError:
        raise
    except Exception as exc:  # proton raises its own types for bad encodings
        raise CodecError(f"cannot decode message: {type(exc).__name__}") from exc
    props += [None] * (13 - len(props))
    return ParsedMessage(
        header=header,
        annotations=annotations,
        rest=bytes(rest),
        message_id=props[0],
        to=props[2],
        session_id=props[10],
        application_properties=app_props,
        properties=props[:13],
    )


def _encode(obj: Any) -> bytes:
    data = Data()
    data.put_object(obj)
    return bytes(data.encode())


def encode_header(header: list[Any] | None, delivery_count: int) -> bytes:
    fields = list(header or [])
    fields += [None] * (5 - len(fields))
    durable, priority, ttl, first_acquirer = fields[:4]
    return _encode(
        Described(
            ulong(HEADER),
            [
                bool(durable) if durable is not None else None,
                ubyte(priority) if priority is not None else None,
                uint(ttl) if ttl is not None else None,
                bool(first_acquirer) if first_acquirer is not None else None,
                uint(delivery_count),
            ],
        )
    )


def encode_annotations(annotations: dict[Any, Any]) -> bytes:
    if not annotations:
        return b""
    return _encode(Described(ulong(MESSAGE_ANNOTATIONS), annotations))


def with_application_properties(rest: bytes, extra: Mapping[str, Any]) -> bytes:
    """Return ``rest`` with ``extra`` merged into its application-properties section."""
    out = bytearray()
    merged = False
    sections = split_sections(rest)
    for code, start, end in sections:
        if code == APPLICATION_PROPERTIES:
            props: dict[Any, Any] = _copy(_decode_section(rest, start, end)) or {}
            props.update(extra)
            out += _application_properties(props)
            merged = True
        else:
            if not merged and code in (*_BODY, FOOTER):
                out += _application_properties(dict(extra))
                merged = True
            out += rest[start:end]
    if not merged:
        out += _application_properties(dict(extra))
    return bytes(out)


def rewritten(rest: bytes, properties: list[Any], application_properties: Mapping[str, Any]) -> bytes:
    """Return ``rest`` with its properties section replaced by ``properties`` (13 fields)
    and its application properties by ``application_properties`` (a rule action's copy)."""
    out = bytearray()
    done = False
    for code, start, end in split_sections(rest):
        if code in (PROPERTIES, APPLICATION_PROPERTIES):
            continue
        if not done and code in (*_BODY, FOOTER):
            out += _properties(properties) + _application_properties(dict(application_properties))
            done = True
        out += rest[start:end]
    if not done:
        out += _properties(properties) + _application_properties(dict(application_properties))
    return bytes(out)


def _properties(fields: list[Any]) -> bytes:
    while fields and fields[-1] is None:
        fields = fields[:-1]
    return _encode(Described(ulong(PROPERTIES), list(fields)))


def _application_properties(props: dict[Any, Any]) -> bytes:
    return _encode(Described(ulong(APPLICATION_PROPERTIES), props))
