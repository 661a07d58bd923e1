"""The async DedupSessionReceiver over fake session channels: order after an abandon, how much it
fetches, receive-and-delete, and the session state under the marks it writes."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
)
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusConnectionError

from geobus import Deadlines, ReplicationMode, SessionPolicy
from geobus._decisions.session_state import SessionState, decode
from geobus._engine.pumps import ReceiverTimings
from geobus.aio import DedupSessionReceiver
from geobus.testing import FakeClock

from .fakes import FakeReceiveChannel

QUICK = ReceiverTimings(poll_wait=0.05, keeper_interval=0.02)
PRODUCER = b"p.1"


class FakeSessionChannel(FakeReceiveChannel):
    """A ``SessionChannel``: a ``FakeReceiveChannel`` whose messages all belong to the session it
    locks, with a session state; ``asks`` keeps each receive call's ``max_count``."""

    def __init__(self, name: str, *, clock: FakeClock, reachable: bool = True, **options: Any) -> None:
        super().__init__(name, clock=clock, **options)
        self.session_id: str | None = None
        self.locked_until: datetime.datetime | None = None
        self.managing = False
        self.reachable = reachable
        self.state: bytes | None = None
        self.state_reads_fail = 0
        self.asks: list[int] = []

    def when_idle(self, wake: Any) -> None:
        pass  # never managing: the pump is never held off

    def stamped(self, *seqs: int) -> list[ServiceBusReceivedMessage]:
        """Publish messages ``m<seq>`` of producer ``p.1``, numbered ``seqs``."""
        built = [
            self.message(f"m{seq}", application_properties={b"geobus-producer": PRODUCER, b"geobus-session-seq": seq})
            for seq in seqs
        ]
        return self.publish(*built)

    @property
    def fetched(self) -> int:
        """Messages handed to the receiver so far: each one locked (or deleted) in the namespace."""
        return len(self.published) - len(self._pending)

    async def lock(self, target: Any, *, timeout: float) -> str:
        if not self.reachable:
            raise ServiceBusConnectionError(message="unreachable")
        self.session_id = "s" if target == NEXT_AVAILABLE_SESSION else str(target)
        return self.session_id

    async def renew_session(self, *, timeout: float) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)

    async def get_state(self, *, timeout: float) -> bytes | None:
        if self.state_reads_fail:
            self.state_reads_fail -= 1
            raise OperationTimeoutError(message="get_state timed out")
        return self.state

    async def set_state(self, state: bytes | None, *, timeout: float) -> None:
        self.state = state

    async def receive(self, max_count: int, max_wait: float, *, timeout: float) -> list[ServiceBusReceivedMessage]:
        self.asks.append(max_count)
        return await super().receive(max_count, max_wait, timeout=timeout)


MakeReceiver = Callable[..., DedupSessionReceiver]


@pytest.fixture
def weu(clock: FakeClock) -> FakeSessionChannel:
    return FakeSessionChannel("weu", clock=clock)


@pytest.fixture
def neu(clock: FakeClock) -> FakeSessionChannel:
    return FakeSessionChannel("neu", clock=clock)


@pytest.fixture
async def make_receiver(clock: FakeClock) -> AsyncIterator[MakeReceiver]:
    """Session receivers of session ``s`` with quick loops; each is closed after the test."""
    receivers: list[DedupSessionReceiver] = []

    def make(channels: list[FakeSessionChannel], **options: Any) -> DedupSessionReceiver:
        options.setdefault("timings", QUICK)
        options.setdefault("deadlines", Deadlines(receive_stall=0.5))
        receiver = DedupSessionReceiver(channels, session_id="s", clock=clock, **options)  # type: ignore[arg-type]
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        await receiver.close()


def ids(messages: list[ServiceBusReceivedMessage]) -> list[str]:
    return [str(message.message_id) for message in messages]


async def one(receiver: DedupSessionReceiver) -> str:
    """``receive_messages(1)``, which must give one message within a generous bound."""
    (message,) = await asyncio.wait_for(receiver.receive_messages(1, max_wait_time=2.0), 5.0)
    return str(message.message_id)


class TestAbandon:
    """An abandoned message comes back before its producer's later ones, as the SDK gives 1, 1, 2."""

    @pytest.mark.parametrize("prefetch", [0, 5])
    async def test_its_twin_comes_back_before_the_messages_fetched_after_it(
        self, make_receiver: MakeReceiver, weu: FakeSessionChannel, neu: FakeSessionChannel, prefetch: int
    ) -> None:
        for channel in (weu, neu):
            channel.stamped(1, 2, 3, 4, 5)
        receiver = make_receiver([weu, neu], mode=ReplicationMode.ACTIVE, prefetch=prefetch)
        first = await receiver.receive_messages(1, max_wait_time=2.0)
        assert ids(first) == ["m1"]
        await receiver.abandon_message(first[0])
        again = await receiver.receive_messages(1, max_wait_time=2.0)
        assert ids(again) == ["m1"]
        await receiver.complete_message(again[0])
        assert await one(receiver) == "m2"
        assert receiver.session_stats.out_of_order == 0 and receiver.session_stats.gaps == 0


class TestFetching:
    """What a session receiver locks ahead of the application (each one's delivery count is at stake)."""

    async def test_prefetch_zero_fetches_only_what_receive_messages_asks(
        self, make_receiver: MakeReceiver, weu: FakeSessionChannel, neu: FakeSessionChannel
    ) -> None:
        for channel in (weu, neu):
            channel.stamped(*range(1, 11))
        receiver = make_receiver([weu, neu], mode=ReplicationMode.ACTIVE, prefetch=0)
        (first,) = await receiver.receive_messages(1, max_wait_time=2.0)
        # The poison message and its twin are fetched; its neighbours are not locked with it.
        assert weu.fetched <= 1 and neu.fetched <= 1
        assert set(weu.asks + neu.asks) == {1}
        await receiver.complete_message(first)
        batch = await receiver.receive_messages(3, max_wait_time=2.0)
        assert ids(batch)[0] == "m2" and weu.fetched <= 4 and neu.fetched <= 4

    async def test_prefetch_zero_still_gives_the_next_one_while_the_first_is_unsettled(
        self, make_receiver: MakeReceiver, weu: FakeSessionChannel, neu: FakeSessionChannel
    ) -> None:
        weu.stamped(1, 2, 3)
        receiver = make_receiver([weu, neu], mode=ReplicationMode.PASSIVE, prefetch=0)
        assert [await one(receiver), await one(receiver)] == ["m1", "m2"]  # m1 is not settled yet
        assert weu.fetched == 2

    async def test_prefetch_n_keeps_at_most_n_ahead(
        self, make_receiver: MakeReceiver, weu: FakeSessionChannel, neu: FakeSessionChannel
    ) -> None:
        weu.stamped(*range(1, 21))
        receiver = make_receiver([weu, neu], mode=ReplicationMode.PASSIVE, prefetch=3)
        assert await one(receiver) == "m1"
        assert weu.fetched <= 3 and set(weu.asks) == {3}


class TestReceiveAndDelete:
    """Receive-and-delete: what is fetched is deleted already, so it is neither fetched ahead nor held."""

    async def test_only_what_is_asked_is_fetched_whatever_the_prefetch(
        self, make_receiver: MakeReceiver, clock: FakeClock
    ) -> None:
        rad = ServiceBusReceiveMode.RECEIVE_AND_DELETE
        weu = FakeSessionChannel("weu", clock=clock, receive_mode=rad)
        neu = FakeSessionChannel("neu", clock=clock, receive_mode=rad)
        weu.stamped(*range(1, 11))
        receiver = make_receiver([weu, neu], mode=ReplicationMode.PASSIVE, prefetch=5, receive_mode=rad)
        assert await one(receiver) == "m1"
        assert weu.fetched == 1 and set(weu.asks) == {1}

    async def test_a_gap_is_not_held_for_it_is_delivered_and_reported(self, make_receiver: MakeReceiver, clock: FakeClock) -> None:
        rad = ServiceBusReceiveMode.RECEIVE_AND_DELETE
        weu = FakeSessionChannel("weu", clock=clock, receive_mode=rad)
        neu = FakeSessionChannel("neu", clock=clock, receive_mode=rad, reachable=False)  # 1 is stranded there
        weu.state = SessionState(1, None, {PRODUCER.decode(): 0}).encode()
        weu.stamped(2)
        receiver = make_receiver(
            [weu, neu], mode=ReplicationMode.PASSIVE, receive_mode=rad, sessions=SessionPolicy(order_gap_wait=600)
        )
        assert await one(receiver) == "m2"  # not held 600 s in memory, deleted in the namespace
        assert receiver.session_stats.gaps == 1


class TestMarks:
    """The background marks write never puts an unread (or older) state over the application's."""

    async def test_a_gap_given_up_is_in_the_marks_at_once(self, make_receiver: MakeReceiver, clock: FakeClock) -> None:
        """A next owner must know where the stream stands after a gap, should this one die before
        the marks' next turn (an hour here): 1..6, if they come, are late then, not a start."""
        rad = ServiceBusReceiveMode.RECEIVE_AND_DELETE
        weu = FakeSessionChannel("weu", clock=clock, receive_mode=rad)
        neu = FakeSessionChannel("neu", clock=clock, receive_mode=rad, reachable=False)  # 1..6 may be there
        weu.stamped(7)
        receiver = make_receiver(
            [weu, neu], mode=ReplicationMode.PASSIVE, receive_mode=rad, timings=replace(QUICK, marks_interval=3600)
        )
        assert await one(receiver) == "m7"
        assert receiver.session_stats.gaps == 1
        for _ in range(500):  # the write runs in the background: at most 5 s
            if weu.state is not None:
                break
            await asyncio.sleep(0.01)
        assert weu.state is not None, "the marks were not written after the gap"
        assert dict(decode(weu.state).marks) == {PRODUCER.decode(): 7}

    async def test_a_state_read_failing_at_attach_is_not_overwritten_when_the_marks_move(
        self, make_receiver: MakeReceiver, weu: FakeSessionChannel, neu: FakeSessionChannel
    ) -> None:
        app_state = SessionState(5, b"the application's", {}).encode()
        for channel in (weu, neu):
            channel.state = app_state
            channel.state_reads_fail = 1  # get_state times out when the session is taken
            channel.stamped(1)
        receiver = make_receiver([weu, neu], mode=ReplicationMode.ACTIVE)
        (message,) = await receiver.receive_messages(1, max_wait_time=2.0)
        await receiver.complete_message(message)  # the marks moved
        await receiver.state.write_marks()
        for channel in (weu, neu):
            written = decode(channel.state)
            assert (written.version, written.user) == (6, b"the application's")
            assert dict(written.marks) == {PRODUCER.decode(): 1}
