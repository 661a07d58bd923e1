"""The async DedupReceiver over fake channels: one stream, each message once, no copy lost."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusConnectionError

import geobus
from geobus import Deadlines, DedupPolicy
from geobus._engine.pumps import ReceiverTimings
from geobus._sync.portal import Portal
from geobus.aio import DedupReceiver
from geobus.testing import FakeClock, eventually_async

from .fakes import FakeReceiveChannel, Script, fail, hang, ok, received_message

Received = ServiceBusReceivedMessage
MakeReceiver = Callable[..., DedupReceiver]
BOUND = 1.0  # generous upper bound, in seconds, for anything that should be prompt
# Each pump asks its namespace for messages with a 1 s wait; fakes answer at once when
# they have messages, but a stall is only noticed after that wait, so shorten it.
SHORT_POLLS = ReceiverTimings(poll_wait=0.05)
# ... and the keeper (lock renewals, shared seen-set rechecks) ticks in tens of milliseconds.
QUICK = ReceiverTimings(poll_wait=0.05, keeper_interval=0.02)


async def receive(receiver: DedupReceiver, count: int, within: float = BOUND, per_call: int | None = None) -> list[Received]:
    """Receive until ``count`` messages arrived (asking ``per_call`` at a time, if given);
    fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    out: list[Received] = []
    while len(out) < count:
        remaining = deadline - loop.time()
        assert remaining > 0, f"got {len(out)} of {count} messages in time"
        ask = count - len(out) if per_call is None else min(per_call, count - len(out))
        out += await receiver.receive_messages(ask, max_wait_time=min(remaining, 0.1))
    return out


async def hold_twin(receiver: DedupReceiver) -> Received:
    """Receive the first copy of a message published on both namespaces, and its twin into hold."""
    (owner,) = await receive(receiver, 1)
    for _ in range(20):
        if receiver.stats.held:
            break
        assert await receiver.receive_messages(1, max_wait_time=0.02) == []
    assert receiver.stats.held == 1
    return owner


def ids(messages: list[Received]) -> list[str]:
    return sorted(str(m.message_id) for m in messages)


def other(channel_name: str, weu: FakeReceiveChannel, neu: FakeReceiveChannel) -> FakeReceiveChannel:
    return neu if channel_name == "weu" else weu


class TestOneStream:
    """Each message reaches the application once, whichever namespace's copy came first."""

    async def test_each_message_delivered_once(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        names = [f"m{i}" for i in range(5)]
        weu.publish(*names)
        neu.publish(*names)
        receiver = make_receiver()
        delivered: list[Received] = []
        while len(delivered) < 5:
            batch = await receive(receiver, 1)
            for message in batch:
                await receiver.complete_message(message)
            delivered += batch
        assert ids(delivered) == names
        assert await receiver.receive_messages(10, max_wait_time=0.1) == []
        # Every copy is completed once, by the namespace that handed it out.
        await eventually_async(lambda: len(weu.settlements) + len(neu.settlements) == 10, within=BOUND)
        for channel in (weu, neu):
            assert {id(m) for m in channel.settled("complete")} == {id(m) for m in channel.published}
        stats = receiver.stats
        assert stats.received == {"weu": 5, "neu": 5}
        assert (stats.delivered, stats.duplicates_absorbed, stats.held, stats.in_flight) == (5, 5, 0, 0)

    async def test_messages_from_both_namespaces_interleave(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish("only-weu")
        neu.publish("only-neu")
        receiver = make_receiver()
        both = await receive(receiver, 2)
        assert ids(both) == ["only-neu", "only-weu"]
        assert {receiver.namespace_of(m) for m in both} == {"weu", "neu"}

    async def test_messages_without_an_id_are_never_deduplicated(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish(weu.message(None))
        neu.publish(neu.message(None))
        receiver = make_receiver()
        assert len(await receive(receiver, 2)) == 2

    @pytest.mark.parametrize(
        ("policy", "field"),
        [
            (DedupPolicy(key="subject"), {"subject": "order-7"}),
            (
                DedupPolicy(key="application_property", property_name="order_id"),
                {"application_properties": {b"order_id": b"order-7"}},
            ),
        ],
        ids=["subject", "application_property"],
    )
    async def test_other_dedup_keys(
        self,
        make_receiver: MakeReceiver,
        weu: FakeReceiveChannel,
        neu: FakeReceiveChannel,
        policy: DedupPolicy,
        field: dict[str, Any],
    ) -> None:
        # Different MessageIds, one business key: one message.
        weu.publish(weu.message("id-a", **field))
        neu.publish(neu.message("id-b", **field))
        receiver = make_receiver(dedup=policy)
        (first,) = await receive(receiver, 1)
        await eventually_async(lambda: receiver.stats.received == {"weu": 1, "neu": 1}, within=BOUND)
        assert await receiver.receive_messages(1, max_wait_time=0.05) == []
        await receiver.complete_message(first)
        await eventually_async(lambda: len(weu.settlements) + len(neu.settlements) == 2, within=BOUND)

    async def test_async_iteration_ends_when_idle_for_max_wait_time(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish("m1", "m2")
        neu.publish("m1", "m2")
        receiver = make_receiver(max_wait_time=0.2)
        seen = []
        async for message in receiver:
            seen.append(message)
            await receiver.complete_message(message)
        assert ids(seen) == ["m1", "m2"]


class TestTwins:
    """A twin waits, locked, for its owner's outcome, then follows it."""

    async def test_owner_completed_twin_completed(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish("m1")
        neu.publish("m1")
        receiver = make_receiver()
        owner = await hold_twin(receiver)
        home = receiver.namespace_of(owner)
        twin_channel = other(home, weu, neu)
        assert twin_channel.settlements == []
        await receiver.complete_message(owner)
        await eventually_async(lambda: twin_channel.settled("complete") == twin_channel.published, within=BOUND)
        assert receiver.stats.duplicates_absorbed == 1
        assert receiver.stats.held == 0

    async def test_owner_dead_lettered_twin_dead_lettered(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish("m1")
        neu.publish("m1")
        receiver = make_receiver()
        owner = await hold_twin(receiver)
        twin_channel = other(receiver.namespace_of(owner), weu, neu)
        await receiver.dead_letter_message(owner, reason="poison", error_description="bad json")
        await eventually_async(lambda: bool(twin_channel.settlements), within=BOUND)
        (settlement,) = twin_channel.settlements
        assert (settlement.action, settlement.reason, settlement.description) == ("dead_letter", "poison", "bad json")

    async def test_owner_abandoned_twin_delivered(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish("m1")
        neu.publish("m1")
        receiver = make_receiver()
        owner = await hold_twin(receiver)
        home = receiver.namespace_of(owner)
        await receiver.abandon_message(owner)
        (twin,) = await receive(receiver, 1)
        assert twin.message_id == "m1"
        assert receiver.namespace_of(twin) != home
        assert [s.action for s in (weu if home == "weu" else neu).settlements] == ["abandon"]
        await receiver.complete_message(twin)
        # The abandoned owner comes back from its namespace: already processed, settled silently.
        home_channel = weu if home == "weu" else neu
        home_channel.publish(owner)
        assert await receiver.receive_messages(1, max_wait_time=0.1) == []
        await eventually_async(lambda: home_channel.settled("complete") == [owner], within=BOUND)
        assert receiver.stats.delivered == 2

    async def test_abandoned_without_twin_is_delivered_again(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel
    ) -> None:
        (redelivery,) = weu.publish("m1")
        receiver = make_receiver()
        (first,) = await receive(receiver, 1)
        await receiver.abandon_message(first)
        weu.publish(redelivery)
        (second,) = await receive(receiver, 1)
        assert second.message_id == "m1"

    async def test_lock_lost_on_complete_delivers_the_twin_and_raises(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish("m1")
        neu.publish("m1")
        receiver = make_receiver()
        owner = await hold_twin(receiver)
        home = receiver.namespace_of(owner)
        lost = MessageLockLostError(message="lock expired")
        (weu if home == "weu" else neu).fail_next("complete", lost)
        with pytest.raises(MessageLockLostError) as caught:
            await receiver.complete_message(owner)
        assert caught.value is lost
        (twin,) = await receive(receiver, 1)
        assert receiver.namespace_of(twin) != home
        with pytest.raises(ValueError):
            receiver.namespace_of(owner)  # released: no longer this receiver's to settle

    async def test_owner_lock_expiry_promotes_the_twin(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel, clock: FakeClock
    ) -> None:
        weu.publish("m1")
        neu.publish("m1")
        receiver = make_receiver()
        owner = await hold_twin(receiver)
        clock.advance(weu.lock_duration + 1)
        (twin,) = await receive(receiver, 1)
        assert twin.message_id == "m1"
        assert receiver.namespace_of(twin) != receiver.namespace_of(owner)

    async def test_renewed_owner_keeps_its_twin_held(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel, clock: FakeClock
    ) -> None:
        weu.publish("m1")
        neu.publish("m1")
        receiver = make_receiver()
        owner = await hold_twin(receiver)
        clock.advance(weu.lock_duration - 10)
        until = await receiver.renew_message_lock(owner)
        assert until.timestamp() == pytest.approx(clock() + weu.lock_duration)
        clock.advance(20)  # past the first lock, inside the renewed one
        assert await receiver.receive_messages(1, max_wait_time=0.05) == []
        assert receiver.stats.held == 1


class TestFetching:
    """Each namespace is asked for what the application asks for; a pump waits while its namespace's
    messages are held here, unless the application waits for more."""

    async def test_each_namespace_is_asked_for_what_a_receive_call_asks_for(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        # Asked for more than it holds, the SDK waits 0.2 s after the first message: a quiet
        # queue would pay that on every message if geobus asked for more than the application.
        weu.publish(*(f"m{i}" for i in range(10)))
        receiver = make_receiver()
        assert len(await receive(receiver, 7)) == 7
        assert weu.asks[0] == 7 and set(neu.asks) == {7}

    async def test_a_prefetch_count_fetches_that_many_ahead_of_a_smaller_ask(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel
    ) -> None:
        weu.publish(*(f"m{i}" for i in range(10)))
        receiver = make_receiver(prefetch=5)
        await receive(receiver, 1)
        await eventually_async(lambda: receiver.stats.received["weu"] == 5, within=BOUND)
        assert weu.asks == [5]

    async def test_a_held_twin_keeps_its_namespace_waiting_until_it_is_settled(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        # Settled behind a receive call in flight, a twin would wait up to 0.2 s in the SDK.
        weu.publish("m1")
        neu.publish("m1")
        receiver = make_receiver()
        owner = await hold_twin(receiver)
        twin_home = other(receiver.namespace_of(owner), weu, neu).name
        assert receiver._busy(twin_home)
        await receiver.complete_message(owner)
        await eventually_async(lambda: not receiver._busy(twin_home), within=BOUND, what="the twin settled")

    async def test_the_application_may_take_more_before_it_settles(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel
    ) -> None:
        weu.publish("a", "b")
        receiver = make_receiver()
        [first] = await receive(receiver, 1)
        [second] = await receive(receiver, 1)  # the first still unsettled: its namespace is asked again
        assert {first.message_id, second.message_id} == {"a", "b"} and weu.asks == [1, 1]


class TestLiveness:
    """One namespace failing or stalling does not stall the other's messages."""

    async def test_failing_namespace_does_not_block_the_other(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.receives = Script(fail(ServiceBusConnectionError(message="down")), ok())
        weu.publish("late")
        neu.publish("m1", "m2")
        receiver = make_receiver()
        loop = asyncio.get_running_loop()
        start = loop.time()
        first_two = await receive(receiver, 2)
        assert ids(first_two) == ["m1", "m2"]
        assert loop.time() - start < 0.15  # before weu's reconnect backoff (0.2 s) is over
        (late,) = await receive(receiver, 1)  # weu reconnected
        assert late.message_id == "late"
        stats = receiver.stats
        assert stats.receive_errors == {"weu": 1, "neu": 0}
        assert weu.resets == 1 and neu.resets == 0

    async def test_stalled_namespace_does_not_block_the_other_and_is_reset(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.receives = Script(hang(), ok())
        weu.publish("late")
        neu.publish("m1")
        receiver = make_receiver(deadlines=Deadlines(receive_stall=0.1))
        loop = asyncio.get_running_loop()
        start = loop.time()
        (first,) = await receive(receiver, 1)
        assert first.message_id == "m1"
        assert loop.time() - start < 0.1  # well before weu's stall deadline
        (late,) = await receive(receiver, 1)
        assert late.message_id == "late"
        assert receiver.stats.receive_errors["weu"] == 1
        assert weu.resets == 1

    async def test_settling_a_twin_on_a_failing_namespace_is_not_an_error(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish("m1")
        neu.publish("m1")
        receiver = make_receiver()
        owner = await hold_twin(receiver)
        twin_channel = other(receiver.namespace_of(owner), weu, neu)
        twin_channel.fail_next("complete", ServiceBusConnectionError(message="down"))
        await receiver.complete_message(owner)  # the twin's failure stays in the background
        await eventually_async(lambda: receiver.stats.held == 0, within=BOUND)
        assert twin_channel.settlements == []


class TestReceiveAndDelete:
    """In receive-and-delete mode duplicates are dropped, and nothing is settled."""

    async def test_duplicates_dropped(self, clock: FakeClock) -> None:
        mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE
        weu = FakeReceiveChannel("weu", clock=clock, receive_mode=mode)
        neu = FakeReceiveChannel("neu", clock=clock, receive_mode=mode)
        weu.publish("m1", "m2")
        neu.publish("m1", "m2")
        async with DedupReceiver([weu, neu], receive_mode=mode, clock=clock, timings=SHORT_POLLS) as receiver:
            delivered = await receive(receiver, 2)
            await eventually_async(lambda: receiver.stats.received == {"weu": 2, "neu": 2}, within=BOUND)
            assert await receiver.receive_messages(5, max_wait_time=0.05) == []
            assert ids(delivered) == ["m1", "m2"]
            assert receiver.stats.duplicates_absorbed == 2
        assert weu.settlements == [] and neu.settlements == []

    async def test_delivered_messages_are_not_retained(self, clock: FakeClock) -> None:
        # Nothing settles a receive-and-delete message, so the receiver must not keep it.
        mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE
        weu = FakeReceiveChannel("weu", clock=clock, receive_mode=mode)
        neu = FakeReceiveChannel("neu", clock=clock, receive_mode=mode)
        async with DedupReceiver([weu, neu], receive_mode=mode, clock=clock, prefetch=5, timings=SHORT_POLLS) as receiver:
            weu.publish(*(f"m{i}" for i in range(50)))
            weu.published.clear()
            messages = await receive(receiver, 50, per_call=5)  # each namespace is asked for 5 at a time
            assert receiver.namespace_of(messages[0]) == "weu"
            with pytest.raises(ValueError):
                await receiver.complete_message(messages[0])  # already settled, as in the SDK
            refs = [weakref.ref(m) for m in messages]
            del messages
            gc.collect()
            # At most the pump's last batch is still referenced (its local variable).
            assert sum(ref() is not None for ref in refs) <= 5


class TestSettlementApi:
    """Settlement takes only messages this receiver handed out, and says where they came from."""

    async def test_namespace_of(self, make_receiver: MakeReceiver, weu: FakeReceiveChannel) -> None:
        weu.publish("m1")
        receiver = make_receiver()
        (message,) = await receive(receiver, 1)
        assert receiver.namespace_of(message) == "weu"
        await receiver.complete_message(message)
        with pytest.raises(ValueError):
            receiver.namespace_of(message)

    @pytest.mark.parametrize(
        "settle",
        [
            lambda r, m: r.complete_message(m),
            lambda r, m: r.abandon_message(m),
            lambda r, m: r.dead_letter_message(m),
            lambda r, m: r.renew_message_lock(m),
        ],
        ids=["complete", "abandon", "dead_letter", "renew"],
    )
    async def test_foreign_message_is_refused(
        self,
        make_receiver: MakeReceiver,
        weu: FakeReceiveChannel,
        settle: Callable[[DedupReceiver, Received], Awaitable[Any]],
    ) -> None:
        receiver = make_receiver()
        stranger = received_message("m1", sequence_number=1, locked_until=None)
        with pytest.raises(ValueError):
            receiver.namespace_of(stranger)
        with pytest.raises(ValueError):
            await settle(receiver, stranger)
        assert weu.settlements == []

    async def test_close_right_after_a_receive_returns_promptly(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        # Draining the inbox wakes the pumps as close() cancels them; the cancel must not be lost.
        weu.publish("only-weu")
        neu.publish("only-neu")
        receiver = make_receiver()
        await receive(receiver, 2)
        await asyncio.wait_for(receiver.close(), BOUND)

    async def test_close_closes_both_channels(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        receiver = make_receiver()
        await receiver.receive_messages(1, max_wait_time=0.01)
        await receiver.close()
        await receiver.close()
        assert weu.closed and neu.closed
        with pytest.raises(RuntimeError):
            await receiver.receive_messages(1, max_wait_time=0.01)

    async def test_close_abandons_what_was_fetched_but_never_handed_out(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        # Left alone, fetched copies would stay locked until their locks expire.
        for index in range(3):
            weu.publish(f"m{index}")
        receiver = make_receiver(prefetch=10)
        [handed_out] = await receive(receiver, 1)
        await eventually_async(lambda: receiver.stats.received["weu"] == 3, within=BOUND)
        await receiver.close()
        abandoned = {message.message_id for message in weu.settled("abandon")}
        assert abandoned == {"m0", "m1", "m2"} - {handed_out.message_id}

    async def test_close_leaves_a_twin_of_a_message_the_application_holds_locked(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        # Given back, the twin could be processed elsewhere while the handler still runs.
        weu.publish("twin")
        receiver = make_receiver()
        await receive(receiver, 1)  # the application holds weu's copy
        neu.publish("twin")
        await eventually_async(lambda: receiver.stats.received["neu"] == 1, within=BOUND)
        await receiver.close()
        assert neu.settlements == [] and weu.settlements == []

    async def test_close_completes_a_fetched_twin_of_a_processed_message(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        # Settled now, it will not reach the next receiver (whose seen-set is empty) as a duplicate.
        weu.publish("done")
        receiver = make_receiver()
        [message] = await receive(receiver, 1)
        await receiver.complete_message(message)
        neu.publish("done")
        await eventually_async(lambda: receiver.stats.received["neu"] == 1, within=BOUND)
        await receiver.close()
        assert [(s.action, s.message.message_id) for s in neu.settlements] == [("complete", "done")]

    async def test_close_does_not_wait_for_a_namespace_that_never_answers(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for index in range(2):
            weu.publish(f"m{index}")
        receiver = make_receiver(prefetch=10, deadlines=Deadlines(attempt=0.1, receive_stall=0.1))
        await receive(receiver, 1)
        await eventually_async(lambda: receiver.stats.received["weu"] == 2, within=BOUND)

        async def never_answers(message: Received, *, timeout: float) -> None:
            await asyncio.Event().wait()

        monkeypatch.setattr(weu, "abandon", never_answers)
        await asyncio.wait_for(receiver.close(), BOUND)

    @pytest.mark.parametrize("options", [{"max_wait_time": 0}, {"prefetch": -1}])
    def test_invalid_options(self, weu: FakeReceiveChannel, neu: FakeReceiveChannel, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            DedupReceiver([weu, neu], **options)

    @pytest.mark.parametrize(
        "timings", [{"poll_wait": 0}, {"store_backoff": -1.0}, {"reconnect_backoff": (0.0, 1.0)}, {"reconnect_backoff": (2.0, 1.0)}]
    )
    def test_invalid_timings(self, timings: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="ReceiverTimings"):
            ReceiverTimings(**timings)


class TestSyncShell:
    """The sync receiver iterates and settles through the same core."""

    def test_sync_loop_sees_each_message_once(
        self, portal: Portal, weu: FakeReceiveChannel, neu: FakeReceiveChannel, clock: FakeClock
    ) -> None:
        weu.publish("m1", "m2")
        neu.publish("m2", "m1")
        core = DedupReceiver([weu, neu], clock=clock, max_wait_time=0.3, timings=SHORT_POLLS)
        seen = []
        with geobus.DedupReceiver(portal, core) as receiver:
            for message in receiver:
                assert receiver.namespace_of(message) in ("weu", "neu")
                receiver.complete_message(message)
                seen.append(message.message_id)
            stats = receiver.stats
        assert sorted(seen) == ["m1", "m2"]
        assert stats.delivered == 2
        assert weu.closed and neu.closed
