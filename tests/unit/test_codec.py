"""The AMQP section codec: splitting, batches, parsing, and what it writes back."""

from __future__ import annotations

import random
from collections.abc import Callable
from itertools import pairwise

import pytest
from azure.servicebus import ServiceBusMessage
from proton import Data, Message, symbol, timestamp, ubyte, uint

from geobus.local._broker import Broker
from geobus.local._codec import (
    AMQP_SEQUENCE,
    AMQP_VALUE,
    APPLICATION_PROPERTIES,
    DATA,
    FOOTER,
    HEADER,
    MESSAGE_ANNOTATIONS,
    PROPERTIES,
    CodecError,
    encode_annotations,
    encode_header,
    parse_message,
    split_sections,
    unpack_batch,
    with_application_properties,
)
from geobus.local._deliveries import render
from geobus.local._entities import EntitySettings
from geobus.testing import FakeClock

from .helpers import START, encode, sdk_batch, sdk_encode

# One value per width class of the AMQP type system (the format code's high nibble
# decides how long a value is). Sizes are counted by hand; proton decodes each.
VALUES_BY_WIDTH = {
    "0x4_ fixed 0 (null)": b"\x40",
    "0x4_ fixed 0 (true)": b"\x41",
    "0x5_ fixed 1 (ubyte)": b"\x50\x07",
    "0x6_ fixed 2 (ushort)": b"\x60\x00\x07",
    "0x7_ fixed 4 (uint)": b"\x70\x00\x00\x00\x07",
    "0x7_ fixed 4 (char)": b"\x73\x00\x00\x00\x41",
    "0x8_ fixed 8 (ulong)": b"\x80" + bytes(8),
    "0x9_ fixed 16 (uuid)": b"\x98" + bytes(16),
    "0x9_ fixed 16 (decimal128)": b"\x94" + bytes(16),
    "0xA_ size 1 (str8)": b"\xa1\x03abc",
    "0xB_ size 4 (str32)": b"\xb1\x00\x00\x00\x03abc",
    "0xC_ size 1 (list8)": b"\xc0\x03\x02\x41\x42",
    "0xC_ size 1 (map8)": b"\xc1\x04\x02\xa1\x00\x40",
    "0xD_ size 4 (list32)": b"\xd0\x00\x00\x00\x06\x00\x00\x00\x02\x41\x42",
    "0xE_ size 1 (array8)": b"\xe0\x04\x02\x50\x01\x02",
    "0xF_ size 4 (array32)": b"\xf0\x00\x00\x00\x07\x00\x00\x00\x02\x50\x01\x02",
    "0x00 described": b"\x00\x53\x01\xa1\x01x",
}
FOOTER_SECTION = b"\x00\x53\x78\xc1\x01\x00"  # footer: an empty map8


def value_section(value: bytes) -> bytes:
    return b"\x00\x53\x77" + value


def data_section(payload: bytes) -> bytes:
    assert len(payload) < 256
    return b"\x00\x53\x75\xa0" + bytes([len(payload)]) + payload


def proton_decodes(value: bytes) -> bool:
    data = Data()
    return data.decode(value) == len(value)


def mutations(seed: int, originals: list[bytes], count: int) -> list[bytes]:
    """Truncated, bit-flipped, spliced and random variants of ``originals``."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        buf = bytearray(rng.choice(originals))
        kind = rng.randrange(4)
        if kind == 0:
            del buf[rng.randrange(len(buf)) :]
        elif kind == 1:
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif kind == 2:
            at = rng.randrange(len(buf))
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            buf = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            buf[0] = 0x00  # past the first check, into the skipper
        out.append(bytes(buf))
    return out


def only_codec_errors(fn: Callable[[bytes], object], inputs: list[bytes]) -> list[str]:
    """Run ``fn`` over ``inputs``; describe every exception that is not a CodecError."""
    escaped = []
    for buf in inputs:
        try:
            fn(buf)
        except CodecError:
            pass
        except Exception as exc:
            escaped.append(f"{type(exc).__name__} on {buf[:16].hex()}")
    return escaped


def rich_message() -> bytes:
    return encode(
        {"k": [1, 2.5, "s", b"b"]},
        message_id="m-1",
        ttl=30,
        properties={"tenant": "a"},
        annotations={"x-opt-partition-key": "p"},
    )


def sdk_samples() -> list[bytes]:
    return [
        sdk_encode(ServiceBusMessage('{"order": 1}', message_id="a", subject="s")),
        sdk_batch(
            ServiceBusMessage("one", message_id="1"),
            ServiceBusMessage(b"two", message_id="2", application_properties={"k": 1}),
        ),
    ]


# Cut inside a section descriptor.
TRUNCATED = [b"\x00", b"\x00\x53", b"\x00\x80\x00\x00"]
# A run of 0x00 bytes is "described, described, ...": the skipper recurses per byte.
DEEP = b"\x00\x53\x77" + b"\x00" * 5000


class TestSplitSections:
    """split_sections finds every section's bounds by skipping each AMQP width class."""

    @pytest.mark.parametrize("value", VALUES_BY_WIDTH.values(), ids=VALUES_BY_WIDTH.keys())
    def test_every_width_class_is_skipped_exactly(self, value: bytes) -> None:
        assert proton_decodes(value)
        first = value_section(value)
        assert split_sections(first + FOOTER_SECTION) == [
            (AMQP_VALUE, 0, len(first)),
            (FOOTER, len(first), len(first) + len(FOOTER_SECTION)),
        ]

    @pytest.mark.parametrize("value", VALUES_BY_WIDTH.values(), ids=VALUES_BY_WIDTH.keys())
    def test_every_width_class_cut_short_is_a_codec_error(self, value: bytes) -> None:
        with pytest.raises(CodecError):
            split_sections(value_section(value)[:-1])

    def test_a_proton_message_splits_into_its_sections(self) -> None:
        buf = rich_message()
        sections = split_sections(buf)
        assert [code for code, _, _ in sections] == [
            HEADER,
            MESSAGE_ANNOTATIONS,
            PROPERTIES,
            APPLICATION_PROPERTIES,
            AMQP_VALUE,
        ]
        assert sections[0][1] == 0 and sections[-1][2] == len(buf)
        assert all(end == start for (_, _, end), (_, start, _) in pairwise(sections))

    @pytest.mark.parametrize(
        "descriptor",
        [
            b"\x53\x77",  # smallulong
            b"\x80\x00\x00\x00\x00\x00\x00\x00\x77",  # ulong
            b"\xa3\x0camqp:value:*",  # sym8
            b"\xb3\x00\x00\x00\x0camqp:value:*",  # sym32
        ],
        ids=["smallulong", "ulong", "sym8", "sym32"],
    )
    def test_every_descriptor_form_is_understood(self, descriptor: bytes) -> None:
        buf = b"\x00" + descriptor + b"\xa1\x01x"
        assert split_sections(buf) == [(AMQP_VALUE, 0, len(buf))]

    @pytest.mark.parametrize(
        "buf",
        [
            b"",
            b"\xa1\x01x",  # not a described type
            b"\x00\x53\x10\xa1\x01x",  # a described type that is not a section
            b"\x00\x44\xa1\x01x",  # ulong0 descriptor
            b"\x00\xa3\x03abc\xa1\x01x",  # unknown symbolic descriptor
            b"\x00\x53\x77\x10",  # unknown format code
            b"\x00\x53\x77\xa1\x05ab",  # size runs past the end
            b"\x00\x53\x77\xb1\x00\x00",  # size prefix cut short
            b"\x00\x53\x77",  # no value after the descriptor
            b"\x00\xa3",  # symbolic descriptor cut short
            value_section(b"\xa1\x01x") + b"\x41",  # trailing bytes after a section
        ],
    )
    def test_malformed_input_is_a_codec_error(self, buf: bytes) -> None:
        with pytest.raises(CodecError):
            split_sections(buf)

    @pytest.mark.parametrize("buf", TRUNCATED, ids=[b.hex() for b in TRUNCATED])
    def test_a_cut_descriptor_is_a_codec_error(self, buf: bytes) -> None:
        with pytest.raises(CodecError):
            split_sections(buf)

    def test_deeply_nested_described_values_are_a_codec_error(self) -> None:
        with pytest.raises(CodecError):
            split_sections(DEEP)


class TestUnpackBatch:
    """unpack_batch returns a batch's inner messages and None for any plain message."""

    def test_an_sdk_batch_yields_each_message_as_the_sdk_encoded_it(self) -> None:
        one = ServiceBusMessage('{"a": 1}', message_id="x1")
        two = ServiceBusMessage(b"raw", message_id="x2", application_properties={"k": "v"})
        inner = unpack_batch(sdk_batch(one, two))
        assert inner == [sdk_encode(one), sdk_encode(two)]
        assert [parse_message(m).message_id for m in inner] == ["x1", "x2"]

    def test_a_batch_of_one_is_still_a_batch(self) -> None:
        only = ServiceBusMessage("solo", message_id="s")
        assert unpack_batch(sdk_batch(only)) == [sdk_encode(only)]

    @pytest.mark.parametrize(
        "buf",
        [
            sdk_encode(ServiceBusMessage('{"json": true}', message_id="j")),
            sdk_encode(ServiceBusMessage(b"\x00not a message")),
            sdk_encode(ServiceBusMessage(b"\x00\x53\x77")),  # starts like one, is cut
            encode("an amqp-value string"),
            encode(None),  # no body at all
            b"\x00\x53\x76\xc0\x01\x00",  # amqp-sequence body
            data_section(b""),
            data_section(value_section(b"\x41")) + data_section(b"{"),
        ],
        ids=[
            "json-body",
            "binary-starting-0x00",
            "binary-cut-message",
            "amqp-value",
            "no-body",
            "amqp-sequence",
            "empty-data",
            "one-of-two-data-not-a-message",
        ],
    )
    def test_plain_messages_are_not_batches(self, buf: bytes) -> None:
        assert unpack_batch(buf) is None

    def test_a_data_section_that_is_not_binary_is_a_codec_error(self) -> None:
        with pytest.raises(CodecError):
            unpack_batch(b"\x00\x53\x75\xa1\x01x")

    def test_a_binary_body_that_is_an_encoded_message_is_taken_for_a_batch(self) -> None:
        # Documented limitation: structure is all the server can see.
        inner = encode("x")
        assert unpack_batch(data_section(inner)) == [inner]

    @pytest.mark.parametrize("buf", [*TRUNCATED, DEEP], ids=[*(b.hex() for b in TRUNCATED), "deep"])
    def test_truncated_input_is_a_codec_error(self, buf: bytes) -> None:
        with pytest.raises(CodecError):
            unpack_batch(buf)


class TestParseMessage:
    """parse_message keeps the client's sections byte for byte and reads what the broker needs."""

    def test_an_sdk_message(self) -> None:
        buf = sdk_encode(
            ServiceBusMessage(
                "hello",
                message_id="m1",
                session_id="s1",
                to="dest",
                application_properties={"a": 1},
            )
        )
        message = parse_message(buf)
        assert message.message_id == "m1"
        assert message.session_id == "s1"
        assert message.to == "dest"
        assert message.application_properties == {"a": 1}
        # Everything from the properties section on is kept exactly as sent.
        properties_start = next(s for c, s, _ in split_sections(buf) if c == PROPERTIES)
        assert message.rest == buf[properties_start:]

    def test_header_ttl_and_annotations(self) -> None:
        message = parse_message(rich_message())
        assert message.ttl_ms == 30_000
        assert message.annotation("x-opt-partition-key") == "p"
        assert message.annotation("x-opt-missing") is None
        assert [c for c, _, _ in split_sections(message.rest)] == [
            PROPERTIES,
            APPLICATION_PROPERTIES,
            AMQP_VALUE,
        ]

    def test_delivery_annotations_are_dropped(self) -> None:
        body = value_section(b"\xa1\x01x")
        delivery_annotations = b"\x00\x53\x71\xc1\x01\x00"
        message = parse_message(delivery_annotations + body)
        assert message.rest == body
        assert message.header is None and message.annotations == {}

    def test_a_message_without_header_or_properties(self) -> None:
        message = parse_message(value_section(b"\xa1\x01x"))
        assert message.ttl_ms is None
        assert (message.message_id, message.session_id, message.to) == (None, None, None)

    @pytest.mark.parametrize(
        "buf",
        [
            b"\x00\x53\x70\x41" + value_section(b"\x41"),  # header that is a boolean
            b"\x00\x53\x73\xc0\x03\x02\x41" + value_section(b"\x41"),  # list cut inside
        ],
        ids=["header-not-a-list", "properties-list-cut"],
    )
    def test_sections_proton_cannot_decode_are_a_codec_error(self, buf: bytes) -> None:
        with pytest.raises(CodecError):
            parse_message(buf)

    @pytest.mark.parametrize(
        "buf",
        [
            b"\x00\x53\x72\xc0\x03\x01\xa1\x00" + value_section(b"\x41"),
            b"\x00\x53\x70\xa1\x03abc" + value_section(b"\x41"),
        ],
        ids=["annotations-list", "header-string"],
    )
    def test_sections_of_the_wrong_type_are_a_codec_error(self, buf: bytes) -> None:
        with pytest.raises(CodecError):
            parse_message(buf)

    @pytest.mark.parametrize(
        "buf",
        [
            b"\x00\x53\x70\xc0\x05\x02\x40\xa1\x01x" + value_section(b"\x41"),
            b"\x00\x53\x70\xc0\x08\x03\x40\x40\x71\xff\xff\xff\xff" + value_section(b"\x41"),
            b"\x00\x53\x70\xc0\x03\x01\x50\x01" + value_section(b"\x41"),
            b"\x00\x53\x70\xc0\x07\x06" + b"\x40" * 6 + value_section(b"\x41"),
            b"\x00\x53\x73\xc1\x01\x00" + value_section(b"\x41"),
            b"\x00\x53\x74\xc0\x01\x00" + value_section(b"\x41"),
            encode("x", annotations={"x-opt-scheduled-enqueue-time": "soon"}),
        ],
        ids=[
            "header-priority-string",
            "header-ttl-negative",
            "header-durable-ubyte",
            "header-six-fields",
            "properties-map",
            "application-properties-list",
            "scheduled-time-string",
        ],
    )
    def test_fields_the_broker_reads_or_rewrites_must_have_their_types(self, buf: bytes) -> None:
        # Each of these used to be stored, then failed at enqueue or at every delivery.
        with pytest.raises(CodecError):
            parse_message(buf)


class TestRandomizedInput:
    """Mutated encodings, from a fixed seed, produce a result or a CodecError, nothing else."""

    def test_parse_message_raises_only_codec_errors(self) -> None:
        inputs = mutations(1, [rich_message(), *sdk_samples()], 1500)
        assert only_codec_errors(parse_message, [*inputs, *TRUNCATED, DEEP]) == []

    @pytest.mark.parametrize("fn", [split_sections, unpack_batch])
    def test_split_and_unpack_raise_only_codec_errors(self, fn: Callable[[bytes], object]) -> None:
        inputs = mutations(2, [rich_message(), *sdk_samples()], 1500)
        assert only_codec_errors(fn, inputs) == []

    def test_what_parse_message_accepts_the_broker_stores_and_delivers(self) -> None:
        clock = FakeClock(START)
        broker = Broker(EntitySettings(default_ttl=60), clock=clock)
        log = broker.declare_queue("q")
        scheduled = encode("s", ttl=5, scheduled_at=START + 1)
        accepted = 0
        for buf in mutations(3, [rich_message(), scheduled, *sdk_samples()], 1500):
            try:
                message = parse_message(buf)
            except CodecError:
                continue
            broker.enqueue(log, message)
            accepted += 1
        assert accepted > 100, "the mutations hardly ever parsed: the test proves little"
        clock.advance(2)
        broker.tick()
        for stored in log.messages.values():
            again = parse_message(render(stored))
            assert again.rest == stored.rest


class TestWriting:
    """encode_header, encode_annotations and with_application_properties write valid sections."""

    def test_header_keeps_the_client_fields_and_sets_the_delivery_count(self) -> None:
        rest = value_section(b"\x41")
        header = encode_header([True, ubyte(4), uint(1000), False], 3)
        assert parse_message(header + rest).header == [True, 4, 1000, False, 3]
        assert parse_message(encode_header(None, 0) + rest).header == [None] * 4 + [0]

    def test_a_header_from_a_parsed_message_round_trips(self) -> None:
        original = parse_message(rich_message())
        again = parse_message(encode_header(original.header, 2) + original.rest)
        assert again.ttl_ms == original.ttl_ms
        assert again.header[4] == 2

    def test_annotations_round_trip_and_empty_writes_nothing(self) -> None:
        assert encode_annotations({}) == b""
        notes = {symbol("x-opt-enqueued-time"): timestamp(1500), symbol("x-opt-n"): 7}
        message = parse_message(encode_annotations(notes) + value_section(b"\x41"))
        assert message.annotations == notes

    def test_extra_properties_merge_into_the_existing_section(self) -> None:
        rest = parse_message(rich_message()).rest
        merged = with_application_properties(rest, {"DeadLetterReason": "R", "tenant": "b"})
        decoded = Message()
        decoded.decode(merged)
        assert decoded.properties == {"tenant": "b", "DeadLetterReason": "R"}
        assert decoded.body == {"k": [1, 2.5, "s", b"b"]}
        assert decoded.id == "m-1"

    @pytest.mark.parametrize(
        ("rest", "order"),
        [
            (
                b"\x00\x53\x73\x45" + value_section(b"\xa1\x01x"),
                [PROPERTIES, APPLICATION_PROPERTIES, AMQP_VALUE],
            ),
            (
                b"\x00\x53\x75\xa0\x01x" + b"\x00\x53\x75\xa0\x01y",
                [APPLICATION_PROPERTIES, DATA, DATA],
            ),
            (b"\x00\x53\x76\x45", [APPLICATION_PROPERTIES, AMQP_SEQUENCE]),
            (b"\x00\x53\x73\x45" + FOOTER_SECTION, [PROPERTIES, APPLICATION_PROPERTIES, FOOTER]),
            (b"\x00\x53\x73\x45", [PROPERTIES, APPLICATION_PROPERTIES]),
        ],
        ids=["before-value", "before-data", "before-sequence", "before-footer", "at-end"],
    )
    def test_a_missing_section_is_added_where_amqp_puts_it(
        self, rest: bytes, order: list[int]
    ) -> None:
        out = with_application_properties(rest, {"DeadLetterReason": "R"})
        assert [c for c, _, _ in split_sections(out)] == order
        assert parse_message(out).application_properties == {"DeadLetterReason": "R"}
        # The client's own sections are untouched.
        kept = [out[s:e] for c, s, e in split_sections(out) if c != APPLICATION_PROPERTIES]
        assert b"".join(kept) == rest
