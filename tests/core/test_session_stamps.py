"""The sender's session order stamps (``SessionStamper``), and the stamping in ``ReplicatedSender``."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageProperties
from azure.servicebus.exceptions import MessageSizeExceededError

from geobus._config import ReplicationMode
from geobus._decisions.session_stamps import (
    PRODUCER,
    SEQUENCE,
    SessionStamper,
    Stamp,
    session_of,
    stamp_of,
)
from geobus._engine.sender import ReplicatedSender

from .fakes import FakeSendChannel as _FakeSendChannel


class FakeSendChannel(_FakeSendChannel):
    """Keeps the message objects it was given (``sent``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.sent: list[Any] = []

    async def send(self, payload: Any, *, timeout: float) -> None:
        await super().send(payload, timeout=timeout)
        self.sent += payload if isinstance(payload, list) else [payload]


def stamps(messages: list[ServiceBusMessage]) -> list[Stamp | None]:
    return [stamp_of(m.application_properties) for m in messages]


class TestStamper:
    """Numbers per session, once per message, from 1."""

    def test_each_session_counts_from_one(self) -> None:
        stamper = SessionStamper("s")
        messages = [ServiceBusMessage("x", session_id=sid) for sid in ("a", "b", "a", "a", "b")]
        for message in messages:
            stamper.stamp(message)
        seqs = [(session_of(m), s.seq if s else None) for m, s in zip(messages, stamps(messages), strict=True)]
        assert seqs == [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]
        assert len({s.producer for s in stamps(messages) if s}) == 2  # one stream per session

    def test_a_stamped_message_keeps_its_place(self) -> None:
        stamper = SessionStamper("s")
        message = ServiceBusMessage("x", session_id="a")
        first = stamper.stamp(message)
        assert stamper.stamp(message) is None  # sent again: the same stamp
        assert stamp_of(message.application_properties) == first

    def test_a_message_built_from_a_received_ones_properties_gets_a_fresh_stamp(self) -> None:
        stamper = SessionStamper("s")
        received = {b"geobus-producer": b"other.1", b"geobus-session-seq": 1, b"trace": b"t-1"}
        one, two = (ServiceBusMessage("x", session_id="a", application_properties=dict(received)) for _ in range(2))
        stamper.stamp(one)
        stamper.stamp(two)
        assert stamps([one, two]) == [Stamp("s.1", 1), Stamp("s.1", 2)]
        assert one.application_properties is not None and one.application_properties[b"trace"] == b"t-1"
        assert b"geobus-session-seq" not in one.application_properties  # the received stamp is gone

    def test_a_relayed_message_is_a_producer_of_its_own(self) -> None:
        first, relay = SessionStamper("origin"), SessionStamper("relay")
        message = ServiceBusMessage("x", session_id="a")
        first.stamp(message)
        assert relay.stamp(message) == Stamp("relay.1", 1)
        assert relay.stamp(message) is None  # the relay's own retry keeps its place

    def test_no_session_no_stamp(self) -> None:
        message = ServiceBusMessage("x", application_properties={"k": "v"})
        assert SessionStamper().stamp(message) is None
        assert message.application_properties == {"k": "v"}

    def test_a_shared_properties_dict_is_not_written_to(self) -> None:
        shared = {"k": "v"}
        stamper = SessionStamper("s")
        one, two = (ServiceBusMessage("x", session_id="a", application_properties=shared) for _ in range(2))
        stamper.stamp(one)
        stamper.stamp(two)
        assert shared == {"k": "v"}
        assert [s.seq for s in stamps([one, two]) if s] == [1, 2]

    def test_an_amqp_message_is_stamped_by_its_group_id(self) -> None:
        message = AmqpAnnotatedMessage(data_body=b"x", properties=AmqpMessageProperties(group_id="a"))
        assert SessionStamper("s").stamp(message) == Stamp("s.1", 1)
        assert message.application_properties == {PRODUCER: "s.1", SEQUENCE: 1}

    def test_unstamp_gives_the_last_number_back(self) -> None:
        stamper = SessionStamper("s")
        message = ServiceBusMessage("x", session_id="a")
        stamp = stamper.stamp(message)
        assert stamp is not None
        stamper.unstamp(message, stamp)
        assert stamp_of(message.application_properties) is None
        assert stamper.stamp(message) == stamp

    def test_a_dropped_counter_starts_a_new_stream(self) -> None:
        stamper = SessionStamper("s", max_sessions=1)
        first, other, again = (ServiceBusMessage("x", session_id=sid) for sid in ("a", "b", "a"))
        for message in (first, other, again):
            stamper.stamp(message)
        one, three = stamp_of(first.application_properties), stamp_of(again.application_properties)
        assert one is not None and three is not None
        assert three.seq == 1 and three.producer != one.producer

    @pytest.mark.parametrize(
        "properties",
        [None, {}, {b"geobus-producer": b"p"}, {b"geobus-producer": b"p", b"geobus-session-seq": 0},
         {b"geobus-producer": b"p", b"geobus-session-seq": True}, {"geobus-producer": 3, "geobus-session-seq": 1}],
    )
    def test_a_missing_or_malformed_stamp_reads_as_none(self, properties: dict[object, object] | None) -> None:
        assert stamp_of(properties) is None

    def test_a_received_stamp_reads_from_bytes(self) -> None:
        assert stamp_of({b"geobus-producer": b"p.1", b"geobus-session-seq": 4}) == Stamp("p.1", 4)


class TestSender:
    """``ReplicatedSender`` stamps once, before replication: both copies carry the same stamp."""

    def test_both_copies_carry_one_stamp(self) -> None:
        async def run() -> list[list[object]]:
            channels = [FakeSendChannel("primary"), FakeSendChannel("secondary")]
            sender = ReplicatedSender(channels, mode=ReplicationMode.ACTIVE)
            await sender.send_messages([ServiceBusMessage(str(n), session_id="a") for n in range(3)])
            await sender.send_messages(ServiceBusMessage("3", session_id="a"))
            await sender.close()
            return [[stamp_of(m.application_properties) for m in channel.sent] for channel in channels]

        primary, secondary = asyncio.run(run())
        assert primary == secondary
        assert [s.seq for s in primary if isinstance(s, Stamp)] == [1, 2, 3, 4]

    def test_a_batch_stamps_as_messages_are_added_and_a_refused_one_takes_no_number(self) -> None:
        async def run() -> list[Stamp | None]:
            channels = [FakeSendChannel("primary"), FakeSendChannel("secondary")]
            sender = ReplicatedSender(channels, mode=ReplicationMode.PASSIVE)
            batch = await sender.create_message_batch(max_size_in_bytes=400)
            added = []
            for _n in range(20):
                message = ServiceBusMessage("x" * 40, session_id="a")
                try:
                    batch.add_message(message)
                except MessageSizeExceededError:
                    break
                added.append(message)
            await sender.send_messages(batch)
            after = ServiceBusMessage("y", session_id="a")
            await sender.send_messages(after)
            await sender.close()
            return [stamp_of(m.application_properties) for m in [*added, after]]

        seqs = [s.seq for s in asyncio.run(run()) if s]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2

    def test_a_scheduled_message_keeps_its_session_and_is_not_stamped(self) -> None:
        async def run() -> ServiceBusMessage:
            channels = [FakeSendChannel("primary"), FakeSendChannel("secondary")]
            sender = ReplicatedSender(channels, mode=ReplicationMode.ACTIVE)
            message = ServiceBusMessage("x", session_id="a")
            when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
            await sender.schedule_messages(message, when)
            await sender.close()
            return message

        message = asyncio.run(run())
        assert message.session_id == "a" and stamp_of(message.application_properties) is None


class TestShared:
    """Senders sharing a client's health share one stream per session and entity."""

    def test_a_sender_per_message_still_numbers_one_stream(self) -> None:
        from geobus._decisions.health import Health

        async def run() -> list[Stamp | None]:
            health = Health(["primary", "secondary"])
            out = []
            for n in range(3):
                channel = FakeSendChannel("primary")
                sender = ReplicatedSender([channel, FakeSendChannel("secondary")], health=health, entity="queue:q")
                await sender.send_messages(ServiceBusMessage(str(n), session_id="a"))
                await sender.close()
                out += [stamp_of(m.application_properties) for m in channel.sent]
            other = ReplicatedSender([FakeSendChannel("primary"), FakeSendChannel("secondary")], health=health, entity="queue:r")
            message = ServiceBusMessage("x", session_id="a")
            await other.send_messages(message)
            await other.close()
            return [*out, stamp_of(message.application_properties)]

        stamps = asyncio.run(run())
        assert [s.seq for s in stamps if s] == [1, 2, 3, 1]
        assert len({s.producer for s in stamps[:3] if s}) == 1
