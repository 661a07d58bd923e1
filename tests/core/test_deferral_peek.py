"""The async DedupReceiver's deferral, peek, dead-letter scope and lock renewer, over fake channels."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.exceptions import MessageNotFoundError, ServiceBusConnectionError

from geobus import Deadlines
from geobus._decisions.dedup import key_of
from geobus._decisions.deferrals import DeferralHandle, Deferrals, parse_handle
from geobus._engine.pumps import ReceiverTimings
from geobus._storage.seenset.memory import MemorySeenSet
from geobus._sync.portal import Portal
from geobus._sync.receiver import DedupReceiver as SyncDedupReceiver
from geobus.aio import DedupReceiver
from geobus.testing import FakeClock, eventually_async

from .fakes import FakeReceiveChannel, fail

Received = ServiceBusReceivedMessage
MakeReceiver = Callable[..., DedupReceiver]
BOUND = 1.0
QUICK = ReceiverTimings(poll_wait=0.05, keeper_interval=0.02)


@pytest.fixture
def receiver_defaults() -> dict[str, Any]:
    return {"deadlines": Deadlines(attempt=0.5, receive_stall=0.1), "timings": QUICK}


async def receive_one(receiver: DedupReceiver) -> Received:
    (message,) = await receiver.receive_messages(1, max_wait_time=BOUND)
    return message


async def until_held(receiver: DedupReceiver, count: int = 1) -> None:
    """Let the receiver look at the twins already fetched, until ``count`` are held."""
    for _ in range(50):
        if receiver.stats.held >= count:
            return
        assert await receiver.receive_messages(1, max_wait_time=0.02) == []
    raise AssertionError(f"held {receiver.stats.held}, not {count}")


async def until(receiver: DedupReceiver, condition: Callable[[], bool]) -> None:
    """Receive (nothing) until ``condition``: the receiver looks at what its pumps fetched as it receives."""
    for _ in range(50):
        assert await receiver.receive_messages(1, max_wait_time=0.02) == []
        if condition():
            return
    raise AssertionError("not within 50 receive calls")


class TestHandles:
    """A deferral handle's string form names each namespace's sequence number."""

    def test_round_trip(self) -> None:
        handle = DeferralHandle({"primary": 12, "secondary": 9})
        assert str(handle) == "geobus:primary=12;secondary=9"
        assert parse_handle(str(handle), ["primary", "secondary"]) == handle
        assert parse_handle("geobus:secondary=9", ["primary", "secondary"]).sequence_numbers == {"secondary": 9}

    @pytest.mark.parametrize(
        "text",
        ["12", "geobus:", "geobus:primary=x", "geobus:elsewhere=3", "geobus:primary=1;primary=2", "primary=1"],
    )
    def test_malformed_is_refused(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_handle(text, ["primary", "secondary"])


class TestDeferral:
    """Deferring defers the twin; receiving back returns one copy and holds the other."""

    async def test_defer_then_receive_back_by_sequence_number(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish(weu.message("m1", sequence_number=12))
        neu.publish(neu.message("m1", sequence_number=9))
        receiver = make_receiver()
        message = await receive_one(receiver)
        await until_held(receiver)
        await receiver.defer_message(message)
        await eventually_async(lambda: len(weu.deferred) + len(neu.deferred) == 2, within=BOUND)
        assert receiver.deferral_handle(message) in (
            "geobus:weu=12;neu=9",
            "geobus:neu=9;weu=12",
        )
        assert receiver.sequence_numbers_of(message) == {"weu": 12, "neu": 9}
        assert await receiver.receive_messages(1, max_wait_time=0.1) == []

        (back,) = await receiver.receive_deferred_messages(sequence_numbers=[message.sequence_number])
        assert back.message_id == "m1" and receiver.namespace_of(back) == receiver.namespace_of(message)
        assert receiver.stats.held == 1  # the twin, fetched back alongside
        await receiver.complete_message(back)
        await eventually_async(lambda: len(weu.settled("complete")) + len(neu.settled("complete")) == 2, within=BOUND)

    async def test_a_twin_arriving_after_the_deferral_is_deferred(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish(weu.message("m1", sequence_number=12))
        receiver = make_receiver()
        message = await receive_one(receiver)
        await receiver.defer_message(message)
        assert receiver.deferral_handle(message) == "geobus:weu=12"
        neu.publish(neu.message("m1", sequence_number=9))
        await until(receiver, lambda: 9 in neu.deferred)
        assert receiver.deferral_handle(message) == "geobus:weu=12;neu=9"

    async def test_a_handle_receives_back_in_a_new_receiver_from_whichever_namespace_answers(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish(weu.message("m1", sequence_number=12))
        neu.publish(neu.message("m1", sequence_number=9))
        first = make_receiver()
        message = await receive_one(first)
        await until_held(first)
        await first.defer_message(message)
        handle = first.deferral_handle(message)
        await first.close()
        assert handle == "geobus:weu=12;neu=9"

        weu.deferred_receives.__init__(fail(ServiceBusConnectionError(message="refused")))  # type: ignore[misc]
        second = make_receiver()
        (back,) = await second.receive_deferred_messages([handle])
        assert (back.message_id, second.namespace_of(back)) == ("m1", "neu")
        await second.complete_message(back)
        assert len(neu.settled("complete")) == 1

    async def test_ints_and_handles_mix_and_each_message_comes_back_once(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        for n, name in ((1, "a"), (2, "b")):
            weu.publish(weu.message(name, sequence_number=n))
            neu.publish(neu.message(name, sequence_number=n + 10))
        receiver = make_receiver()
        first, second = [await receive_one(receiver) for _ in range(2)]
        await until_held(receiver, 2)
        for message in (first, second):
            await receiver.defer_message(message)
        back = await receiver.receive_deferred_messages(
            [first.sequence_number or 0, receiver.deferral_handle(second)]
        )
        assert sorted(str(m.message_id) for m in back) == ["a", "b"]
        assert receiver.stats.held == 2

    async def test_nothing_found_anywhere_raises_the_sdk_error(self, make_receiver: MakeReceiver) -> None:
        receiver = make_receiver()
        with pytest.raises(MessageNotFoundError):
            await receiver.receive_deferred_messages(99)
        assert await receiver.receive_deferred_messages([]) == []
        with pytest.raises(TypeError):
            await receiver.receive_deferred_messages([1.5])  # type: ignore[list-item]

    async def test_abandoning_a_message_received_back_defers_it_again_with_its_twin(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        """As Service Bus does with a deferred message: abandoned, it is deferred again."""
        weu.publish(weu.message("m1", sequence_number=3))
        neu.publish(neu.message("m1", sequence_number=4))
        receiver = make_receiver()
        message = await receive_one(receiver)
        await until_held(receiver)
        await receiver.defer_message(message)
        (back,) = await receiver.receive_deferred_messages(message.sequence_number or 0)
        assert receiver.stats.held == 1
        await receiver.abandon_message(back)
        await eventually_async(lambda: len(neu.settled("defer")) == 2, within=BOUND)  # the twin, deferred again
        assert await receiver.receive_messages(1, max_wait_time=0.1) == []
        (again,) = await receiver.receive_deferred_messages(message.sequence_number or 0)
        assert again.message_id == "m1"

    async def test_a_message_received_back_after_its_key_was_completed_is_not_handed_out(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish(weu.message("m1", sequence_number=3))
        receiver = make_receiver()
        message = await receive_one(receiver)
        await receiver.defer_message(message)
        (back,) = await receiver.receive_deferred_messages(3)
        await receiver.complete_message(back)
        assert await receiver.receive_deferred_messages(3) == []  # fetched again (a handle reused...)
        await eventually_async(lambda: len(weu.settled("complete")) == 2, within=BOUND)  # settled as its key was

    async def test_an_int_naming_two_messages_deferred_here_is_refused(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish(weu.message("a", sequence_number=12))
        neu.publish(neu.message("b", sequence_number=12))
        receiver = make_receiver()
        for message in [await receive_one(receiver), await receive_one(receiver)]:
            await receiver.defer_message(message)
        with pytest.raises(ValueError, match="deferral_handle"):
            await receiver.receive_deferred_messages(12)
        assert weu.deferred_asks == neu.deferred_asks == []


class TestPeek:
    """Peek browses both namespaces, each message once, and takes no lock."""

    async def test_twins_are_returned_once_and_marked(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish(weu.message("a", sequence_number=1), weu.message("b", sequence_number=2))
        neu.publish(neu.message("a", sequence_number=7), neu.message("c", sequence_number=8))
        receiver = make_receiver()
        peeked = await receiver.peek_messages(10)
        assert [m.message_id for m in peeked] == ["a", "b", "c"]
        assert receiver.sequence_numbers_of(peeked[0]) == {"weu": 1, "neu": 7}
        assert [receiver.namespace_of(m) for m in peeked] == ["weu", "weu", "neu"]
        assert weu.receive_calls == neu.receive_calls == 0  # no receive, so no lock
        with pytest.raises(ValueError):
            await receiver.complete_message(peeked[0])

    async def test_the_next_peek_goes_on_in_each_namespace(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish(*(weu.message(f"m{n}", sequence_number=n) for n in (1, 2, 3)))
        neu.publish(*(neu.message(f"m{n}", sequence_number=n + 100) for n in (1, 2, 3)))
        receiver = make_receiver()
        first = await receiver.peek_messages(2)
        assert [m.message_id for m in first] == ["m1", "m2"]
        second = await receiver.peek_messages(2)
        assert [m.message_id for m in second] == ["m3"]
        assert (weu.peek_asks[-1], neu.peek_asks[-1]) == ((2, 3), (2, 103))
        again = await receiver.peek_messages(5, sequence_number="geobus:weu=2;neu=103")
        assert [m.message_id for m in again] == ["m2", "m3"]
        assert [m.message_id for m in await receiver.peek_messages(5, sequence_number=1)] == ["m1", "m2", "m3"]

    async def test_a_namespace_that_fails_is_left_out(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel
    ) -> None:
        weu.publish(weu.message("a", sequence_number=1))
        neu.publish(neu.message("a", sequence_number=1))
        weu.peeks.__init__(fail(ServiceBusConnectionError(message="refused")))  # type: ignore[misc]
        receiver = make_receiver()
        (only,) = await receiver.peek_messages(5)
        assert receiver.namespace_of(only) == "neu"
        neu.peeks.__init__(fail(ServiceBusConnectionError(message="refused")))  # type: ignore[misc]
        with pytest.raises(ServiceBusConnectionError):
            await receiver.peek_messages(5)


class TestSubQueue:
    """A dead-letter receiver's keys in a shared seen-set are apart from the main queue's."""

    async def test_dead_letter_and_main_queue_keys_do_not_collide(
        self, make_receiver: MakeReceiver, clock: FakeClock
    ) -> None:
        store = MemorySeenSet(max_entries=100, clock=clock)
        main = [FakeReceiveChannel(n, clock=clock) for n in ("weu", "neu")]
        dead = [FakeReceiveChannel(n, clock=clock) for n in ("weu", "neu")]
        for channel in (*main, *dead):
            channel.publish("m1")
        main_receiver = make_receiver(main, seen_set=store)
        dlq_receiver = make_receiver(dead, seen_set=store, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
        await main_receiver.complete_message(await receive_one(main_receiver))
        from_dlq = await receive_one(dlq_receiver)  # the same id, not swallowed as a duplicate
        assert from_dlq.message_id == "m1"
        await dlq_receiver.complete_message(from_dlq)
        await until(dlq_receiver, lambda: sum(len(c.settled("complete")) for c in dead) == 2)

    def test_an_unknown_sub_queue_is_refused(self, make_receiver: MakeReceiver) -> None:
        with pytest.raises(ValueError):
            make_receiver(sub_queue="elsewhere")


class _Renewer:
    """Records registrations, as an AutoLockRenewer's ``register`` is called."""

    def __init__(self) -> None:
        self.registered: list[tuple[Any, Received]] = []

    def register(self, receiver: Any, message: Received) -> None:
        self.registered.append((receiver, message))


class _AsyncRenewer(_Renewer):
    async def close(self) -> None: ...


class _SyncRenewer(_Renewer):
    def close(self) -> None: ...


class TestAutoLockRenewer:
    """Each message handed out is registered with the renewer, under the receiver that renews it."""

    async def test_an_aio_renewer_renews_through_the_async_receiver(
        self, make_receiver: MakeReceiver, weu: FakeReceiveChannel
    ) -> None:
        weu.publish("m1")
        renewer = _AsyncRenewer()
        receiver = make_receiver(auto_lock_renewer=renewer)
        message = await receive_one(receiver)
        assert renewer.registered == [(receiver, message)]
        await receiver.renew_message_lock(message)  # what the renewer calls back: its own namespace
        assert weu.renewals == [message]

    def test_a_renewer_needs_peek_lock(self, make_receiver: MakeReceiver) -> None:
        with pytest.raises(ValueError):
            make_receiver(auto_lock_renewer=_AsyncRenewer(), receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)

    def test_a_sync_renewer_renews_through_the_sync_shell(self, clock: FakeClock) -> None:
        portal = Portal("test-renewer")
        try:
            weu, neu = (FakeReceiveChannel(n, clock=clock) for n in ("weu", "neu"))

            async def build() -> DedupReceiver:
                weu.publish("m1")
                return DedupReceiver([weu, neu], clock=clock, timings=QUICK, auto_lock_renewer=renewer)

            renewer = _SyncRenewer()
            with SyncDedupReceiver(portal, portal.run(build())) as receiver:
                (message,) = receiver.receive_messages(1, max_wait_time=BOUND)
                assert renewer.registered == [(receiver, message)]
                assert receiver.session is None and receiver.entity_path == "orders"
                assert receiver.fully_qualified_namespace == "weu.servicebus.windows.net"
        finally:
            portal.close()


async def test_properties(make_receiver: MakeReceiver, weu: FakeReceiveChannel, neu: FakeReceiveChannel) -> None:
    receiver = make_receiver()
    assert receiver.client_identifier.startswith("DedupReceiver-")
    assert receiver.fully_qualified_namespaces == {
        "weu": "weu.servicebus.windows.net",
        "neu": "neu.servicebus.windows.net",
    }
    assert receiver.session is None
    weu.client_identifier = neu.client_identifier = "worker-7"
    assert make_receiver().client_identifier == "worker-7"
    await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("sub_queue", "path"),
    [
        (None, "orders"),
        (ServiceBusSubQueue.DEAD_LETTER, "orders/$DeadLetterQueue"),
        (ServiceBusSubQueue.TRANSFER_DEAD_LETTER, "orders/$Transfer/$DeadLetterQueue"),
        ("deadletter", "orders/$DeadLetterQueue"),
    ],
)
def test_entity_path_names_the_sub_queue_as_the_sdk_does(make_receiver: MakeReceiver, sub_queue: Any, path: str) -> None:
    assert make_receiver(sub_queue=sub_queue).entity_path == path


def test_a_bad_handle_is_echoed_short() -> None:
    secret_shaped = "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=" + "A" * 40
    with pytest.raises(ValueError) as caught:
        parse_handle(secret_shaped, ["weu", "neu"])
    assert "Endpoint=sb:" in str(caught.value) and "servicebus" not in str(caught.value)


def test_deferrals_are_bounded_oldest_first() -> None:
    book = Deferrals(max_deferrals=2)
    for n in (1, 2, 3):
        book.deferred(key_of(f"m{n}"), "weu", n)
    book.deferred(None, "neu", 4)
    assert len(book) == 2
    assert book.named(1) is None and book.named(2) is None  # the oldest went first
    assert book.of_key(key_of("m3")) is not None and book.keyless(4) is not None
    book.deferred(None, "neu", 4)  # the same keyless copy again: one deferral
    assert len(book) == 2
