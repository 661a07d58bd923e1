"""The async ReplicatedSender over fake channels: passive failover, active quorum, deadlines, ids."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.amqp import AmqpAnnotatedMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
)

import geobus
from geobus import (
    BreakerPolicy,
    Deadlines,
    FailbackPolicy,
    NamespaceTimeoutError,
    NamespaceUnavailableError,
    OverridePolicy,
    ReplicationError,
    ReplicationMode,
    WriteQuorum,
)
from geobus._decisions.health import Health
from geobus._sync.portal import Portal
from geobus.aio import ReplicatedSender

from .fakes import FakeClock, FakeSendChannel, fail, hang, message_id_of, ok, sdk_handler_failed

# Deadline tests run on real loop time with tiny deadlines; bounds are generous on purpose.
SLACK = 0.15

MakeSender = Callable[..., ReplicatedSender]


@pytest.fixture
def weu() -> FakeSendChannel:
    return FakeSendChannel("weu")


@pytest.fixture
def neu() -> FakeSendChannel:
    return FakeSendChannel("neu")


@pytest.fixture
async def make_sender(weu: FakeSendChannel, neu: FakeSendChannel) -> AsyncIterator[MakeSender]:
    """Build senders over the two fakes (weu is the primary); each is closed after the test."""
    senders: list[ReplicatedSender] = []

    def make(**options: Any) -> ReplicatedSender:
        sender = ReplicatedSender([weu, neu], **options)
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.close()


def message(message_id: str | None = None) -> ServiceBusMessage:
    return ServiceBusMessage(b"order", message_id=message_id or str(uuid.uuid4()))


def elapsed_since(start: float) -> float:
    return asyncio.get_running_loop().time() - start


def now() -> float:
    return asyncio.get_running_loop().time()


AVAILABILITY = [
    ServiceBusConnectionError(message="refused"),
    ServiceBusCommunicationError(message="unreachable"),
    OperationTimeoutError(message="timed out"),
    ServiceBusServerBusyError(message="busy"),
    NamespaceTimeoutError("weu", 5.0),
]
REJECTIONS = [
    MessageSizeExceededError(message="too large"),
    ServiceBusAuthenticationError(message="bad key"),
    ServiceBusAuthorizationError(message="no send claim"),
    MessagingEntityNotFoundError(message="no such queue"),
]


def _id(exc: BaseException) -> str:
    return type(exc).__name__


class TestPassive:
    """Passive mode: the active namespace, the other only when the active one is unavailable."""

    async def test_primary_ok_no_swap(self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        sender = make_sender()
        result = await sender.send_messages(message("m1"))
        assert (result.landed, result.missed, result.failed_over) == (("weu",), {}, False)
        assert weu.stored == ["m1"]
        assert neu.sends == []
        assert sender.active_namespace == "weu"
        assert sender.stats.failovers == 0
        assert sender.stats.messages_sent == {"weu": 1, "neu": 0}

    @pytest.mark.parametrize("error", AVAILABILITY, ids=_id)
    async def test_availability_error_fails_over_and_swaps(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, error: BaseException
    ) -> None:
        weu.behave(fail(error))
        sender = make_sender()
        result = await sender.send_messages(message("m1"))
        assert result.failed_over
        assert result.landed == ("neu",)
        assert result.missed == {"weu": error}
        assert neu.stored == ["m1"] and weu.stored == []
        assert sender.active_namespace == "neu"
        assert sender.stats.failovers == 1
        assert sender.stats.send_failures == {"weu": 1, "neu": 0}

    async def test_after_a_swap_the_new_active_is_tried_first(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(fail(ServiceBusConnectionError(message="down")))
        sender = make_sender()
        await sender.send_messages(message("m1"))
        await sender.send_messages(message("m2"))
        assert len(weu.sends) == 1
        assert neu.stored == ["m1", "m2"]
        assert sender.stats.failovers == 1

    async def test_roles_are_shared_through_the_health_object(self, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        health = Health(["weu", "neu"])
        weu.behave(fail(ServiceBusConnectionError(message="down")))
        first = ReplicatedSender([weu, neu], health=health)
        second = ReplicatedSender([FakeSendChannel("weu"), FakeSendChannel("neu")], health=health)
        try:
            await first.send_messages(message())
            assert second.active_namespace == "neu"
        finally:
            await first.close()
            await second.close()

    @pytest.mark.parametrize("error", REJECTIONS, ids=_id)
    async def test_rejection_is_raised_unchanged_without_failover(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, error: BaseException
    ) -> None:
        weu.behave(fail(error))
        sender = make_sender()
        with pytest.raises(type(error)) as caught:
            await sender.send_messages(message())
        assert caught.value is error
        assert neu.sends == []
        assert sender.active_namespace == "weu"
        assert sender.stats.failovers == 0

    async def test_both_fail_raises_with_both_causes(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu_error, neu_error = ServiceBusConnectionError(message="weu down"), ServiceBusServerBusyError(message="busy")
        weu.behave(fail(weu_error))
        neu.behave(fail(neu_error))
        sender = make_sender()
        with pytest.raises(ReplicationError) as caught:
            await sender.send_messages(message())
        assert caught.value.causes == {"weu": weu_error, "neu": neu_error}
        assert caught.value.landed == ()
        assert caught.value.__cause__ is neu_error
        assert sender.active_namespace == "weu"
        assert sender.stats.failovers == 0
        assert sender.stats.send_failures == {"weu": 1, "neu": 1}

    async def test_hanging_primary_is_cut_at_the_attempt_deadline(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(hang())
        sender = make_sender(deadlines=Deadlines(attempt=0.1, send=2.0))
        start = now()
        result = await sender.send_messages(message("m1"))
        assert elapsed_since(start) < 0.1 + SLACK
        assert weu.sends[0].timeout == pytest.approx(0.1)
        assert isinstance(result.missed["weu"], NamespaceTimeoutError)
        assert result.landed == ("neu",) and neu.stored == ["m1"]
        assert sender.active_namespace == "neu"

    async def test_backup_gets_only_what_is_left_of_the_send_deadline(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(hang())
        neu.behave(hang())
        sender = make_sender(deadlines=Deadlines(attempt=0.15, send=0.2))
        start = now()
        with pytest.raises(ReplicationError) as caught:
            await sender.send_messages(message())
        assert elapsed_since(start) < 0.2 + SLACK
        assert weu.sends[0].timeout == pytest.approx(0.15)
        assert neu.sends[0].timeout <= 0.05 + 0.01
        assert all(isinstance(e, NamespaceTimeoutError) for e in caught.value.causes.values())

    async def test_per_call_timeout_bounds_the_whole_send(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(hang())
        neu.behave(hang())
        sender = make_sender()  # default deadlines: 5 s per attempt, 10 s per send
        start = now()
        with pytest.raises(ReplicationError):
            await sender.send_messages(message(), timeout=0.1)
        assert elapsed_since(start) < 0.1 + SLACK
        assert sum(call.timeout for call in weu.sends + neu.sends) <= 0.1 + 0.01

    @pytest.mark.parametrize("timeout", [0, -1])
    async def test_non_positive_timeout_is_rejected(self, make_sender: MakeSender, weu: FakeSendChannel, timeout: float) -> None:
        with pytest.raises(ValueError):
            await make_sender().send_messages(message(), timeout=timeout)
        assert weu.calls == []

    async def test_standby_is_warmed_once(self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        sender = make_sender()
        await sender.send_messages(message())
        await sender.send_messages(message())
        await asyncio.sleep(0)  # let the background warm-up run
        assert (weu.warmed, neu.warmed) == (0, 1)


class TestActive:
    """Active mode: both copies concurrently, judged by the write quorum."""

    async def test_both_copies_are_sent_concurrently(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(ok(delay=0.2))
        neu.behave(ok(delay=0.2))
        sender = make_sender(mode=ReplicationMode.ACTIVE)
        start = now()
        result = await sender.send_messages(message("m1"))
        assert elapsed_since(start) < 0.35
        (weu_call,), (neu_call,) = weu.sends, neu.sends
        assert weu_call.ended is not None and neu_call.ended is not None
        assert max(weu_call.started, neu_call.started) < min(weu_call.ended, neu_call.ended)  # overlap
        assert result.landed == ("weu", "neu") and not result.partial
        assert weu.stored == neu.stored == ["m1"]

    async def test_quorum_any_with_one_failure_is_a_partial_success(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        error = ServiceBusConnectionError(message="down")
        weu.behave(fail(error))
        sender = make_sender(mode="active", write_quorum=WriteQuorum.ANY)
        result = await sender.send_messages(message("m1"))
        assert result.partial
        assert result.landed == ("neu",)
        assert result.missed == {"weu": error}
        assert sender.stats.partial_writes == 1
        assert sender.stats.messages_sent == {"weu": 0, "neu": 1}
        assert sender.stats.send_failures == {"weu": 1, "neu": 0}

    async def test_partial_writes_warn_once_per_outage_and_count_each(
        self, make_sender: MakeSender, weu: FakeSendChannel, caplog: pytest.LogCaptureFixture
    ) -> None:
        down = fail(ServiceBusConnectionError(message="down"))
        weu.behave(down, down, ok(), down)
        sender = make_sender(mode="active")
        with caplog.at_level(logging.INFO, logger="geobus"):
            for index in range(4):
                await sender.send_messages(message(f"m{index}"))
        lines = [r.getMessage() for r in caplog.records if "partial writes" in r.getMessage() or "again" in r.getMessage()]
        assert len(lines) == 3, lines  # missing (m0, not m1), back (m2), missing again (m3)
        assert "copies for weu (ServiceBusConnectionError) are missing" in lines[0]
        assert "weu stores its copies again" in lines[1]
        assert sender.stats.partial_writes == 3

    async def test_quorum_any_with_a_hanging_namespace_is_bounded(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        neu.behave(hang())
        sender = make_sender(mode="active", deadlines=Deadlines(attempt=0.1, send=2.0))
        start = now()
        result = await sender.send_messages(message("m1"))
        assert elapsed_since(start) < 0.1 + SLACK
        assert result.landed == ("weu",)
        assert isinstance(result.missed["neu"], NamespaceTimeoutError)

    async def test_quorum_all_with_one_failure_raises_with_landed(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        error = ServiceBusServerBusyError(message="busy")
        neu.behave(fail(error))
        sender = make_sender(mode="active", write_quorum="all")
        with pytest.raises(ReplicationError) as caught:
            await sender.send_messages(message("m1"))
        assert caught.value.landed == ("weu",)
        assert caught.value.causes == {"neu": error}
        assert weu.stored == ["m1"]

    @pytest.mark.parametrize("quorum", list(WriteQuorum))
    async def test_both_fail_raises(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, quorum: WriteQuorum
    ) -> None:
        weu.behave(fail(ServiceBusConnectionError(message="a")))
        neu.behave(fail(ServiceBusCommunicationError(message="b")))
        sender = make_sender(mode="active", write_quorum=quorum)
        with pytest.raises(ReplicationError) as caught:
            await sender.send_messages(message())
        assert set(caught.value.causes) == {"weu", "neu"}
        assert caught.value.landed == ()

    async def test_same_rejection_on_both_is_raised_unchanged(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu_error = MessageSizeExceededError(message="too large")
        weu.behave(fail(weu_error))
        neu.behave(fail(MessageSizeExceededError(message="too large")))
        sender = make_sender(mode="active")
        with pytest.raises(MessageSizeExceededError) as caught:
            await sender.send_messages(message())
        assert caught.value is weu_error

    async def test_no_roles_in_active_mode(self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        weu.behave(fail(ServiceBusConnectionError(message="down")))
        sender = make_sender(mode="active")
        await sender.send_messages(message())
        await asyncio.sleep(0)
        assert sender.active_namespace == "weu"
        assert sender.stats.failovers == 0
        assert (weu.warmed, neu.warmed) == (0, 0)


class TestMessageId:
    """Every message carries one MessageId, the same on both copies, checked before sending."""

    async def test_assigned_when_missing_and_same_on_both_copies(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        msg = ServiceBusMessage(b"order")
        msg.message_id = None
        await make_sender(mode="active").send_messages(msg)
        assert msg.message_id is not None
        uuid.UUID(msg.message_id)
        assert weu.stored == neu.stored == [msg.message_id]

    async def test_existing_id_is_kept(self, make_sender: MakeSender, weu: FakeSendChannel) -> None:
        await make_sender().send_messages(message("order-42"))
        assert weu.stored == ["order-42"]

    async def test_each_message_of_a_list_gets_its_own_id(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        messages = [ServiceBusMessage(b"a"), ServiceBusMessage(b"b")]
        for m in messages:
            m.message_id = None
        await make_sender(mode="active").send_messages(messages)
        ids = [m.message_id for m in messages]
        assert None not in ids and len(set(ids)) == 2
        assert weu.stored == neu.stored == ids

    @pytest.mark.parametrize("properties", [True, False])
    async def test_amqp_annotated_message_gets_an_id(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, properties: bool
    ) -> None:
        msg = AmqpAnnotatedMessage(data_body=b"order", properties={} if properties else None)
        await make_sender(mode="active").send_messages(msg)
        assert weu.stored == neu.stored == [message_id_of(msg)]
        uuid.UUID(message_id_of(msg))

    async def test_128_characters_is_allowed(self, make_sender: MakeSender, weu: FakeSendChannel) -> None:
        await make_sender().send_messages(message("x" * 128))
        assert weu.stored == ["x" * 128]

    @pytest.mark.parametrize("bad_id", ["", "x" * 129])
    async def test_bad_id_rejected_before_any_channel(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, bad_id: str
    ) -> None:
        bad = message()
        bad.raw_amqp_message.properties.message_id = bad_id  # the SDK's setter refuses 129
        with pytest.raises(ValueError):
            await make_sender(mode="active").send_messages([message(), bad])
        assert weu.calls == [] and neu.calls == []

    @pytest.mark.parametrize("payload", ["text", {"body": 1}, 42, ServiceBusMessageBatch(max_size_in_bytes=1024)])
    async def test_wrong_type_rejected_before_any_channel(
        self, make_sender: MakeSender, weu: FakeSendChannel, payload: Any
    ) -> None:
        with pytest.raises(TypeError):
            await make_sender().send_messages(payload)
        assert weu.calls == []

    async def test_empty_list_sends_nothing(self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        result = await make_sender().send_messages([])
        assert result.landed == ()
        assert weu.calls == [] and neu.calls == []


class TestOtherOperations:
    """Scheduling, cancelling and batches follow the same replication rules."""

    async def test_schedule_fails_over_like_a_send(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(fail(ServiceBusConnectionError(message="down")))
        sender = make_sender()
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
        (scheduled,) = await sender.schedule_messages(message("m1"), when)
        assert scheduled.message_id == "m1"
        assert scheduled.sequence_numbers == {"neu": 1}
        assert sender.active_namespace == "neu"

    async def test_cancel_reaches_every_namespace_that_holds_the_message(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        sender = make_sender(mode="active")
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
        scheduled = await sender.schedule_messages([message("m1"), message("m2")], when)
        assert [s.sequence_numbers for s in scheduled] == [{"weu": 1, "neu": 1}, {"weu": 2, "neu": 2}]
        neu.behave(fail(ServiceBusConnectionError(message="down")))
        with pytest.raises(ReplicationError) as caught:
            await sender.cancel_scheduled_messages(scheduled)
        assert caught.value.landed == ("weu",)
        assert [c.method for c in weu.calls][-1] == "cancel_scheduled"

    async def test_batch_is_sized_by_the_reachable_namespace(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(fail(ServiceBusConnectionError(message="down")))
        batch = await make_sender().create_message_batch()
        assert batch.max_size_in_bytes == 256 * 1024
        batch.add_message(message("m1"))
        result = await make_sender(mode="active").send_messages(batch)
        assert result.landed == ("neu",)
        assert neu.stored[-1] == "m1"


DOWN = ServiceBusConnectionError(message="down")


class HeldBack:
    """A health whose namespaces the test holds back: by opening a breaker, or as an operator."""

    def __init__(self, how: str, path: Path) -> None:
        self.how = how
        self.path = path
        self.clock = FakeClock(0.0)
        self.health = Health(
            ["weu", "neu"],
            breaker=BreakerPolicy(failure_threshold=1, cooldown=30.0),
            override=OverridePolicy(path=str(path), interval=1.0),
            clock=self.clock,
        )

    def hold_back(self, *names: str) -> str:
        """Hold ``names`` back; returns how a skipped namespace's cause begins."""
        if self.how == "paused":
            self.path.write_text(f"paused = {list(names)!r}\n".replace("'", '"'))
            self.clock.advance(1.0)  # the file is read again on the next call
            return "paused by operator"
        for name in names:
            self.health.record(name, DOWN)
        return "circuit open"


@pytest.fixture(params=["breaker", "paused"])
def held(request: pytest.FixtureRequest, tmp_path: Path) -> HeldBack:
    return HeldBack(request.param, tmp_path / "override.toml")


def skipped(cause: BaseException, reason: str) -> bool:
    return isinstance(cause, NamespaceUnavailableError) and cause.reason.startswith(reason)


class TestEveryCallGoesThroughTheBreaker:
    """Sizing a batch, cancelling and warming skip a namespace its breaker or the operator holds
    back, as a send does; what they find out is told to the breaker."""

    async def test_a_batch_is_sized_by_the_namespace_not_held_back(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, held: HeldBack
    ) -> None:
        held.hold_back("weu")
        batch = await make_sender(health=held.health).create_message_batch()
        assert batch.max_size_in_bytes == 256 * 1024
        assert weu.calls == [] and [c.method for c in neu.calls] == ["max_batch_size"]

    async def test_a_batch_with_both_held_back_names_why(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, held: HeldBack
    ) -> None:
        reason = held.hold_back("weu", "neu")
        with pytest.raises(ReplicationError, match="size a batch") as caught:
            await make_sender(health=held.health).create_message_batch()
        assert set(caught.value.causes) == {"weu", "neu"}
        assert all(skipped(cause, reason) for cause in caught.value.causes.values()), caught.value.causes
        assert weu.calls == [] and neu.calls == []

    async def test_cancel_skips_a_namespace_held_back_and_names_it(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, held: HeldBack
    ) -> None:
        sender = make_sender(mode="active", health=held.health)
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
        scheduled = await sender.schedule_messages([message("m1"), message("m2")], when)
        reason = held.hold_back("weu")
        with pytest.raises(ReplicationError, match="cancellation") as caught:
            await sender.cancel_scheduled_messages(scheduled)
        assert caught.value.landed == ("neu",)
        assert list(caught.value.causes) == ["weu"] and skipped(caught.value.causes["weu"], reason)
        assert [c.method for c in weu.calls] == ["schedule"]
        assert [c.method for c in neu.calls] == ["schedule", "cancel_scheduled"]

    async def test_a_failed_sizing_counts_against_the_breaker(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(fail(DOWN))
        sender = make_sender(health=Health(["weu", "neu"], breaker=BreakerPolicy(failure_threshold=1)))
        await sender.create_message_batch()
        assert sender.stats.breakers == {"weu": "open", "neu": "closed"}
        await sender.create_message_batch()
        assert len(weu.calls) == 1 and len(neu.calls) == 2
        assert sender.stats.send_failures == {"weu": 0, "neu": 0}  # no message was sent

    async def test_a_standby_held_back_is_not_warmed(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, held: HeldBack
    ) -> None:
        held.hold_back("neu")
        sender = make_sender(health=held.health)
        await sender.send_messages(message())
        await asyncio.sleep(0)  # a warm-up would have run now
        assert neu.warmed == 0 and neu.calls == []
        assert sender.stats.breakers["neu"] == ("open" if held.how == "breaker" else "closed")


PREMIUM_LIMIT = 1024 * 1024  # a Premium namespace's batch limit; the fakes answer a Standard one's


class TestBatchSizing:
    """A batch fits the smaller namespace, even one held back now; sizing proves nothing."""

    async def test_a_namespace_held_back_still_counts_with_its_last_limit(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, held: HeldBack
    ) -> None:
        weu.batch_limit = PREMIUM_LIMIT
        sender = make_sender(health=held.health)
        assert (await sender.create_message_batch()).max_size_in_bytes == 256 * 1024
        held.hold_back("neu")
        # Sized for weu alone, the batch would be refused by neu, as the message's fault, once it is back.
        assert (await sender.create_message_batch()).max_size_in_bytes == 256 * 1024
        assert [c.method for c in neu.calls] == ["max_batch_size"]  # not asked while held back
        assert [c.method for c in weu.calls] == ["max_batch_size", "max_batch_size"]

    async def test_both_held_back_with_known_limits_asks_neither(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, held: HeldBack
    ) -> None:
        neu.batch_limit = PREMIUM_LIMIT
        sender = make_sender(health=held.health)
        await sender.create_message_batch()
        held.hold_back("weu", "neu")
        assert (await sender.create_message_batch()).max_size_in_bytes == 256 * 1024
        assert len(weu.calls) == len(neu.calls) == 1

    async def test_a_limit_told_once_counts_after_a_failed_sizing(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        neu.batch_limit = PREMIUM_LIMIT
        sender = make_sender()
        await sender.create_message_batch()
        weu.behave(fail(DOWN))
        assert (await sender.create_message_batch()).max_size_in_bytes == 256 * 1024

    async def test_an_answer_does_not_end_a_failure_streak(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        health = Health(["weu", "neu"], breaker=BreakerPolicy(failure_threshold=3))
        sender = make_sender(health=health)
        health.record("weu", DOWN)
        health.record("weu", DOWN)
        await sender.create_message_batch()  # weu answers from its link: no proof it is back
        assert len(weu.calls) == 1
        health.record("weu", DOWN)
        assert sender.stats.breakers["weu"] == "open"  # the third failure in a row

    async def test_a_breaker_past_its_cool_down_keeps_its_probe_for_a_send(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        clock = FakeClock(0.0)
        health = Health(["weu", "neu"], breaker=BreakerPolicy(failure_threshold=1, cooldown=30.0), clock=clock)
        sender = make_sender(health=health)
        await sender.create_message_batch()
        health.record("weu", DOWN)
        clock.advance(31.0)  # a probe may go through now
        assert (await sender.create_message_batch()).max_size_in_bytes == 256 * 1024
        assert len(weu.calls) == 1  # not asked: sizing takes no probe slot and closes no breaker
        assert sender.stats.breakers["weu"] == "open"
        result = await sender.send_messages(message("m1"))  # the send is the probe
        assert result.landed == ("weu",) and sender.stats.breakers["weu"] == "closed"


class TestFailoversCountedOnce:
    """A failover is counted once, by the sender whose send (or drain) moved the roles."""

    async def test_each_swap_counts_for_the_sender_that_made_it(self, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        health = Health(["weu", "neu"], failback=FailbackPolicy(mode="prefer_primary", healthy_probes=1, cooldown=0))
        first = ReplicatedSender([weu, neu], health=health)
        second = ReplicatedSender([FakeSendChannel("weu"), FakeSendChannel("neu")], health=health)
        try:
            weu.behave(fail(DOWN), ok(), fail(DOWN))
            assert (await first.send_messages(message())).failed_over
            await first.send_messages(message())  # straight to the new active: no failover
            await second.send_messages(message())  # the roles it found: no failover either
            assert (first.stats.failovers, second.stats.failovers) == (1, 0)
            assert health.observe_probe(True)  # the client's probe brings the roles home
            await first.send_messages(message())  # weu is active again: it takes this one
            assert (await first.send_messages(message())).failed_over
            assert (first.stats.failovers, first.stats.failbacks, second.stats.failovers) == (2, 1, 0)
            assert first.stats.send_failures == {"weu": 2, "neu": 0}
        finally:
            await first.close()
            await second.close()


class TestLifecycle:
    """Closing a sender closes its channels and refuses further sends."""

    async def test_close(self, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        async with ReplicatedSender([weu, neu]) as sender:
            await sender.send_messages(message())
        assert weu.closed and neu.closed
        with pytest.raises(RuntimeError):
            await sender.send_messages(message())

    def test_needs_two_channels(self, weu: FakeSendChannel) -> None:
        with pytest.raises(ValueError):
            ReplicatedSender([weu])


class TestSyncShell:
    """The sync sender runs the same core, and its deadline holds from a plain thread."""

    def test_sync_failover_from_a_hanging_primary(self, portal: Portal, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        weu.behave(hang())
        core = ReplicatedSender([weu, neu], deadlines=Deadlines(attempt=0.1, send=1.0))
        with geobus.ReplicatedSender(portal, core) as sender:
            start = time.monotonic()
            result = sender.send_messages(message("m1"))
            assert time.monotonic() - start < 0.1 + SLACK
            assert result.failed_over
            assert sender.active_namespace == "neu"
            assert sender.stats.failovers == 1
        assert weu.closed and neu.closed

    def test_sync_errors_pass_through_unchanged(self, portal: Portal, weu: FakeSendChannel) -> None:
        error = ServiceBusAuthorizationError(message="no claim")
        weu.behave(fail(error))
        sender = geobus.ReplicatedSender(portal, ReplicatedSender([weu, FakeSendChannel("neu")]))
        with pytest.raises(ServiceBusAuthorizationError) as caught:
            sender.send_messages(message())
        assert caught.value is error
        sender.close()


# -- bad input is never an outage -------------------------------------------------------------


def _bad(**fields: Any) -> Callable[[], ServiceBusMessage]:
    return lambda: ServiceBusMessage(b"order", **{"message_id": "bad", **fields})


BAD_MESSAGES = {
    "float-id": (_bad(message_id=3.5), TypeError, "message_id"),
    "object-id": (_bad(message_id=object()), TypeError, "message_id"),
    "float-correlation-id": (_bad(correlation_id=2.5), TypeError, "correlation_id"),
    "ulong-overflow-id": (_bad(message_id=2**64), ValueError, "message_id"),
    "set-property": (_bad(application_properties={"colours": {"red"}}), TypeError, "application_properties"),
    "int32-overflow-property": (_bad(application_properties={"n": 2**40}), ValueError, "application_properties"),
}
MODES = {
    "passive": {"mode": "passive"},
    "active-any": {"mode": "active", "write_quorum": "any"},
    "active-all": {"mode": "active", "write_quorum": "all"},
}




def closed(sender: ReplicatedSender) -> bool:
    return sender.stats.breakers == {"weu": "closed", "neu": "closed"}


class TestBadInput:
    """A message the SDK cannot encode is the message's fault: no failover, no breaker, and the
    next good message is sent."""

    @pytest.mark.parametrize("mode", list(MODES))
    @pytest.mark.parametrize("bad", list(BAD_MESSAGES))
    async def test_refused_naming_the_field_before_any_namespace(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, mode: str, bad: str
    ) -> None:
        make, error, field = BAD_MESSAGES[bad]
        sender = make_sender(**MODES[mode])
        for _ in range(4):  # more than the breaker's threshold of 3
            with pytest.raises(error, match=f"^{field}"):
                await sender.send_messages(make())
            with pytest.raises(error, match=rf"^messages\[1\]\.{field}"):
                await sender.send_messages([message("good"), make()])
        assert weu.calls == [] and neu.calls == []
        assert closed(sender) and sender.stats.failovers == 0
        result = await sender.send_messages(message("next"))
        assert "weu" in result.landed and weu.stored == ["next"]

    async def test_a_bad_batch_member_is_refused_when_added(self, make_sender: MakeSender, weu: FakeSendChannel) -> None:
        batch = await make_sender().create_message_batch()
        with pytest.raises(TypeError, match=r"^message_id"):
            batch.add_message(ServiceBusMessage(b"x", message_id=3.5))
        assert len(batch) == 0

    async def test_a_bad_schedule_is_refused(self, make_sender: MakeSender, weu: FakeSendChannel) -> None:
        when = datetime.datetime.now(datetime.timezone.utc)
        with pytest.raises(TypeError, match=r"^messages\[0\]\.message_id"):
            await make_sender().schedule_messages([ServiceBusMessage(b"x", message_id=3.5)], when)
        with pytest.raises(TypeError, match=r"^schedule_time_utc"):
            await make_sender().schedule_messages(message(), 1_700_000_000)  # type: ignore[arg-type]
        assert [c.method for c in weu.calls] == []

    @pytest.mark.parametrize("mode", list(MODES))
    async def test_what_the_sdk_refuses_to_encode_is_raised_unchanged(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel, mode: str
    ) -> None:
        # A field geobus's validation let through and the SDK's encoder refused.
        refusals = [sdk_handler_failed() for _ in range(4)]
        weu.behave(*(fail(e) for e in refusals), ok())
        neu.behave(*(fail(e) for e in refusals), ok())
        sender = make_sender(**MODES[mode])
        for expected in refusals:
            with pytest.raises(ServiceBusError, match="Handler failed") as caught:
                await sender.send_messages(message())
            assert caught.value is expected
        assert closed(sender) and sender.stats.failovers == 0 and sender.active_namespace == "weu"
        if mode == "passive":
            assert len(neu.calls) == 0  # never failed over
        result = await sender.send_messages(message("next"))
        assert "weu" in result.landed and weu.stored == ["next"]

    async def test_an_unknown_error_names_its_namespace_without_failover(
        self, make_sender: MakeSender, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        odd = RuntimeError("something geobus cannot classify")
        weu.behave(fail(odd), fail(odd), fail(odd), fail(odd), ok())
        sender = make_sender()
        for _ in range(4):
            with pytest.raises(geobus.NamespaceError) as caught:
                await sender.send_messages(message())
            assert caught.value.namespace == "weu" and caught.value.__cause__ is odd
        assert neu.calls == [] and closed(sender) and sender.stats.failovers == 0
        assert (await sender.send_messages(message("next"))).landed == ("weu",)

    def test_sync_bad_input(self, portal: Portal, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        with geobus.ReplicatedSender(portal, ReplicatedSender([weu, neu])) as sender:
            for _ in range(4):
                with pytest.raises(TypeError, match=r"^message_id: float"):
                    sender.send_messages(ServiceBusMessage(b"x", message_id=3.5))
            assert weu.calls == [] and sender.stats.breakers == {"weu": "closed", "neu": "closed"}
            assert sender.send_messages(message("next")).landed == ("weu",)
