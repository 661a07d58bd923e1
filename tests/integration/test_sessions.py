"""Session receivers across two local namespaces, with the real azure-servicebus client.

Each scenario is written once as a coroutine over ``geobus.aio`` and run again
through the sync API (``api="sync"``: the sync client, its calls made from a
worker thread). Named and next-available receivers, both modes: each session in
its producer's order, each message once; session state in both namespaces; a
primary failing mid-session; a fleet of three workers with a shared SQLite store; peek,
deferral and the dead-letter queue within a session.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient as SdkClient
from azure.servicebus.exceptions import OperationTimeoutError, SessionCannotBeLockedError

import geobus
import geobus.aio
from geobus._decisions.session_stamps import stamp_of
from geobus._decisions.session_state import decode
from geobus.local import LocalNamespace
from geobus.testing import NamespacePair, eventually, eventually_async

from .helpers import FAST, depth, empty

QUEUE = "orders"
IDLE = 1.0


def session_pair(factory: Callable[..., LocalNamespace], lock: float = 30.0, **queue: Any) -> NamespacePair:
    entities = {"queues": {QUEUE: {"requires_session": True, "lock_duration": lock, **queue}}}
    return NamespacePair(factory(entities=entities), factory(entities=entities))


def config(pair: NamespacePair, mode: str, **options: Any) -> geobus.ReplicationConfig:
    return pair.config(mode=mode, **FAST, **options)


async def send(client: Any, sessions: list[str], count: int, start: int = 0) -> None:
    """``count`` messages per session, interleaved, one send each (the producer's order)."""
    async with client.get_queue_sender(QUEUE) as sender:
        for n in range(start, start + count):
            for sid in sessions:
                await sender.send_messages(ServiceBusMessage(f"{sid}:{n}", session_id=sid, message_id=f"{sid}:{n}"))


class Worker:
    """Drives one session receiver through ``geobus.aio`` or the sync API (in a thread)."""

    def __init__(self, pair_config: geobus.ReplicationConfig, api: str) -> None:
        self.api = api
        self.client: Any = (geobus.aio.GeoServiceBusClient if api == "aio" else geobus.GeoServiceBusClient)(pair_config)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.api == "aio":
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def drain(self, session_id: Any, *, on_message: Callable[[Any, Any], Any] | None = None) -> tuple[Any, list[str]]:
        """Receive a session until it is idle for ``IDLE`` s, completing each message; the receiver
        (closed) and the bodies of the messages completed, in order. ``on_message`` runs before
        each completion (a fault injected there fails it: the message comes back)."""
        receiver = self.client.get_queue_receiver(QUEUE, session_id=session_id, max_wait_time=IDLE)
        bodies: list[str] = []
        try:
            for _ in range(1000):  # bounded: a session here holds far fewer
                batch = await self.call(receiver.receive_messages, 10, IDLE)
                if not batch:
                    break
                for message in batch:
                    if on_message is not None:
                        await on_message(receiver, message)
                    try:
                        await self.call(receiver.complete_message, message)
                    except Exception:  # its namespace failed under it: its twin or redelivery comes
                        continue
                    bodies.append(str(message))
        finally:
            await self.call(receiver.close)
        return receiver, bodies

    async def close(self) -> None:
        await self.call(self.client.close)


def numbers(bodies: list[str], sid: str) -> list[int]:
    return [int(b.split(":")[1]) for b in bodies if b.startswith(f"{sid}:")]


@pytest.fixture(params=["aio", "sync"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["active", "passive"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestOrder:
    """Sessions interleaved on the wire come out one session at a time, each in order, each once."""

    def test_named_and_next_available(self, namespace_factory: Callable[..., LocalNamespace], api: str, mode: str) -> None:
        pair = session_pair(namespace_factory)

        async def run() -> None:
            async with geobus.aio.GeoServiceBusClient(config(pair, mode)) as producer:
                await send(producer, ["a", "b", "c"], 8)
            worker = Worker(config(pair, mode), api)
            try:
                receiver, bodies = await worker.drain("b")
                assert numbers(bodies, "b") == list(range(8)) and len(bodies) == 8
                assert receiver.session.session_id == "b"
                taken = []
                for _ in range(2):
                    receiver, bodies = await worker.drain(NEXT_AVAILABLE_SESSION)
                    sid = receiver.session.session_id
                    taken.append(sid)
                    assert numbers(bodies, sid) == list(range(8)) and len(bodies) == 8
                    assert receiver.session_stats.gaps == 0
                assert sorted(taken) == ["a", "c"]
            finally:
                await worker.close()

        asyncio.run(run())

    def test_next_available_with_no_session_times_out_as_the_sdk(self, namespace_factory: Callable[..., LocalNamespace]) -> None:
        pair = session_pair(namespace_factory)

        async def run() -> None:
            async with geobus.aio.GeoServiceBusClient(config(pair, "active")) as client:
                receiver = client.get_queue_receiver(QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=0.5)
                with pytest.raises(OperationTimeoutError):
                    await receiver.receive_messages(1, 0.5)
                await receiver.close()

        asyncio.run(run())

    def test_a_failed_with_closes_the_receiver_it_never_handed_over(
        self, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        pair = session_pair(namespace_factory)

        async def run() -> None:
            async with geobus.aio.GeoServiceBusClient(config(pair, "active")) as client:
                receiver = client.get_queue_receiver(QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=0.5)
                with pytest.raises(OperationTimeoutError):
                    async with receiver:
                        raise AssertionError("no session was available: the body never runs")
                with pytest.raises(RuntimeError, match="closed"):
                    await receiver.receive_messages(1, 0.5)

        asyncio.run(run())
        with geobus.GeoServiceBusClient(config(pair, "active")) as client:
            receiver = client.get_queue_receiver(QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=0.5)
            with pytest.raises(OperationTimeoutError):
                with receiver:
                    raise AssertionError("no session was available: the body never runs")
            with pytest.raises(RuntimeError, match="closed"):
                receiver.receive_messages(1, 0.5)


async def take(worker: Worker, receiver: Any, count: int) -> list[Any]:
    """Receive ``count`` messages; fail after a bounded number of idle waits."""
    got: list[Any] = []
    for _ in range(20):  # bounded
        got += await worker.call(receiver.receive_messages, count - len(got), IDLE)
        if len(got) >= count:
            return got
    raise AssertionError(f"received {[str(m) for m in got]} of {count}")


class TestDeferralAndPeek:
    """Within a session: peek both namespaces, defer, receive back by number and by handle."""

    def test_defer_then_receive_back_by_sequence_number_and_by_handle(
        self, namespace_factory: Callable[..., LocalNamespace], api: str, mode: str
    ) -> None:
        pair = session_pair(namespace_factory)

        async def run() -> None:
            async with geobus.aio.GeoServiceBusClient(config(pair, mode)) as producer:
                await send(producer, ["a", "b"], 3)
            worker = Worker(config(pair, mode), api)
            try:
                receiver = worker.client.get_queue_receiver(QUEUE, session_id="a", max_wait_time=IDLE)
                got = await take(worker, receiver, 3)
                assert [str(m) for m in got] == ["a:0", "a:1", "a:2"]
                await worker.call(receiver.defer_message, got[0])
                await worker.call(receiver.defer_message, got[1])
                await worker.call(receiver.complete_message, got[2])
                assert await worker.call(receiver.receive_messages, 5, IDLE) == []  # twins deferred, not delivered
                if mode == "active":  # the twins were deferred as they came: the handle names both copies
                    await eventually_async(
                        lambda: "secondary=" in receiver.deferral_handle(got[1]), within=10,
                        what=lambda: receiver.deferral_handle(got[1]),
                    )  # fmt: skip
                handle = await worker.call(receiver.deferral_handle, got[1])
                assert handle.startswith("geobus:") and "primary=" in handle

                (back,) = await worker.call(receiver.receive_deferred_messages, [got[0].sequence_number])
                assert (str(back), back.session_id) == ("a:0", "a")
                await worker.call(receiver.complete_message, back)  # and its twin, fetched with it
                await worker.call(receiver.close)

                later = worker.client.get_queue_receiver(QUEUE, session_id="a", max_wait_time=IDLE)
                (by_handle,) = await worker.call(later.receive_deferred_messages, handle)
                assert str(by_handle) == "a:1"
                await worker.call(later.complete_message, by_handle)
                await worker.call(later.close)
                _, bodies = await worker.drain("b")
                assert numbers(bodies, "b") == [0, 1, 2]
            finally:
                await worker.close()
            await eventually_async(lambda: empty(pair), within=10, what=lambda: depth(pair))

        asyncio.run(run())

    def test_peek_browses_the_session_in_both_namespaces_once_each(
        self, namespace_factory: Callable[..., LocalNamespace], api: str
    ) -> None:
        pair = session_pair(namespace_factory)

        async def run() -> None:
            async with geobus.aio.GeoServiceBusClient(config(pair, "active")) as producer:
                await send(producer, ["a", "b"], 3)
            worker = Worker(config(pair, "active"), api)
            try:
                receiver = worker.client.get_queue_receiver(QUEUE, session_id="a", max_wait_time=IDLE)
                peeked = await worker.call(receiver.peek_messages, 10)
                assert sorted(str(m) for m in peeked) == ["a:0", "a:1", "a:2"]  # this session's, twins once
                seen = await worker.call(receiver.sequence_numbers_of, peeked[0])
                assert set(seen) == {"primary", "secondary"}
                assert await worker.call(receiver.peek_messages, 10) == []  # on from where it left off
                with pytest.raises(ValueError):
                    await worker.call(receiver.complete_message, peeked[0])  # a peeked message is not settled
                got = await take(worker, receiver, 3)  # peek took no lock: all still delivered, in order
                assert [str(m) for m in got] == ["a:0", "a:1", "a:2"]
                for message in got:
                    await worker.call(receiver.complete_message, message)
                await worker.call(receiver.close)
            finally:
                await worker.close()

        asyncio.run(run())


class TestAbandonAndPoison:
    """An abandoned message comes back first; a poison message crashing workers dead-letters alone."""

    def test_an_abandoned_message_comes_back_before_the_next_one(
        self, namespace_factory: Callable[..., LocalNamespace], api: str, mode: str
    ) -> None:
        pair = session_pair(namespace_factory)

        async def run() -> None:
            async with geobus.aio.GeoServiceBusClient(config(pair, mode)) as producer:
                await send(producer, ["a"], 4)
            worker = Worker(config(pair, mode), api)
            try:
                receiver = worker.client.get_queue_receiver(QUEUE, session_id="a", max_wait_time=IDLE)
                seen = []
                for settle in ("abandon", "complete", "complete"):  # the SDK against the service: 0, 0, 1
                    (message,) = await take(worker, receiver, 1)
                    seen.append(str(message))
                    await worker.call(getattr(receiver, f"{settle}_message"), message)
                assert seen == ["a:0", "a:0", "a:1"]
                assert receiver.session_stats.out_of_order == 0
                await worker.call(receiver.close)
            finally:
                await worker.close()

        asyncio.run(run())

    def test_a_poison_message_crashing_workers_dead_letters_alone(
        self, namespace_factory: Callable[..., LocalNamespace], api: str
    ) -> None:
        pair = session_pair(namespace_factory, max_delivery_count=2)

        async def run() -> None:
            async with geobus.aio.GeoServiceBusClient(config(pair, "active")) as producer:
                await send(producer, ["a"], 5)
            for _ in range(5):  # bounded: a:0 is dead-lettered after its second delivery
                worker = Worker(config(pair, "active"), api)
                try:
                    receiver = worker.client.get_queue_receiver(QUEUE, session_id="a", max_wait_time=IDLE)
                    batch = await worker.call(receiver.receive_messages, 1, IDLE)
                    # The worker dies processing it: nothing settled, the session's locks go.
                    await worker.call(receiver.close)
                finally:
                    await worker.close()
                if [str(m) for m in batch] != ["a:0"]:
                    break
            worker = Worker(config(pair, "active"), api)
            try:
                _, bodies = await worker.drain("a")
            finally:
                await worker.close()
            assert numbers(bodies, "a") == [1, 2, 3, 4]  # its neighbours were never locked with it
            dlq = f"{QUEUE}/$deadletterqueue"
            assert all(c.get(dlq) == 1 for c in pair.counts().values()), pair.counts()

        asyncio.run(run())


class TestDeadLetterQueue:
    """A session entity's dead-letter queue has no sessions: a ``DedupReceiver`` reads it."""

    def test_dead_lettered_in_a_session_read_once_by_a_plain_receiver(
        self, namespace_factory: Callable[..., LocalNamespace], api: str
    ) -> None:
        pair = session_pair(namespace_factory)

        async def run() -> None:
            async with geobus.aio.GeoServiceBusClient(config(pair, "active")) as producer:
                await send(producer, ["a"], 2)
            worker = Worker(config(pair, "active"), api)
            try:
                receiver = worker.client.get_queue_receiver(QUEUE, session_id="a", max_wait_time=IDLE)
                first, second = await take(worker, receiver, 2)
                await worker.call(receiver.dead_letter_message, first, "poison", "it failed")
                await worker.call(receiver.complete_message, second)
                await worker.call(receiver.close)
                dlq = f"{QUEUE}/$deadletterqueue"
                await eventually_async(lambda: all(c.get(dlq) == 1 for c in pair.counts().values()), within=10,
                                       what=pair.counts)  # fmt: skip
                dead = worker.client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=IDLE)
                (letter,) = await take(worker, dead, 1)
                assert (str(letter), letter.dead_letter_reason, letter.session_id) == ("a:0", "poison", "a")
                await worker.call(dead.complete_message, letter)  # and its twin in the other namespace
                assert await worker.call(dead.receive_messages, 5, IDLE) == []
                await worker.call(dead.close)
            finally:
                await worker.close()
            await eventually_async(lambda: empty(pair), within=10, what=lambda: depth(pair))

        asyncio.run(run())

    def test_session_id_with_sub_queue_is_refused_as_the_sdk_refuses_it(
        self, namespace_factory: Callable[..., LocalNamespace], api: str
    ) -> None:
        pair = session_pair(namespace_factory)
        client = (geobus.aio.GeoServiceBusClient if api == "aio" else geobus.GeoServiceBusClient)(config(pair, "active"))
        sdk = SdkClient.from_connection_string(pair.primary.connection_string)
        caught = []
        for receivers in (client, sdk):
            with pytest.raises(ValueError) as error:
                receivers.get_queue_receiver(QUEUE, session_id="a", sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            caught.append(str(error.value))
            with pytest.raises(ValueError) as error:
                receivers.get_subscription_receiver("t", "s", session_id="a", sub_queue="deadletter")
            caught.append(str(error.value))
        if api == "aio":
            asyncio.run(client.close())
        else:
            client.close()
        asyncio.run(sdk.close())
        assert all(text.startswith("session_id and sub_queue can not be specified simultaneously") for text in caught)


class TestOwnership:
    """One receiver owns a session in both namespaces: a second is refused while it does."""

    def test_a_second_receiver_of_a_held_session_is_refused(self, namespace_factory: Callable[..., LocalNamespace]) -> None:
        pair = session_pair(namespace_factory)
        sessions = geobus.SessionPolicy(lock_attempts=2)

        async def run() -> None:
            async with geobus.aio.GeoServiceBusClient(config(pair, "active", sessions=sessions)) as one, \
                    geobus.aio.GeoServiceBusClient(config(pair, "active", sessions=sessions)) as two:  # fmt: skip
                await send(one, ["a"], 2)
                first = one.get_queue_receiver(QUEUE, session_id="a", max_wait_time=IDLE)
                assert len(await first.receive_messages(1, IDLE)) == 1
                assert first.session_stats.attached == ("primary", "secondary")
                second = two.get_queue_receiver(QUEUE, session_id="a", max_wait_time=IDLE)
                with pytest.raises(SessionCannotBeLockedError):
                    await second.receive_messages(1, IDLE)
                await second.close()
                await first.close()

        asyncio.run(run())


class TestState:
    """Session state lives in both namespaces, in a versioned envelope; the newest wins."""

    def test_round_trip_both_namespaces_and_newest_wins(self, namespace_factory: Callable[..., LocalNamespace], api: str) -> None:
        pair = session_pair(namespace_factory)

        async def raw_states() -> list[bytes | None]:
            states = []
            for connection_string in pair.connection_strings:
                async with SdkClient.from_connection_string(connection_string) as sdk:
                    async with sdk.get_queue_receiver(QUEUE, session_id="s") as plain:
                        state = await plain.session.get_state()
                        states.append(None if state is None else bytes(state))
            return states

        async def run() -> None:
            worker = Worker(config(pair, "passive"), api)
            try:
                receiver = worker.client.get_queue_receiver(QUEUE, session_id="s", max_wait_time=IDLE)
                await worker.call(receiver.session.set_state, "one")
                await worker.call(receiver.session.set_state, b"two")
                assert await worker.call(receiver.session.get_state) == b"two"
                await worker.call(receiver.close)
                states = [decode(raw) for raw in await raw_states()]
                assert [(s.version, s.user) for s in states] == [(2, b"two"), (2, b"two")]
                # The plain SDK writes the primary's state without an envelope: version 0, so the
                # secondary's version 2 is the newest.
                async with SdkClient.from_connection_string(pair.primary.connection_string) as sdk:
                    async with sdk.get_queue_receiver(QUEUE, session_id="s") as plain:
                        await plain.session.set_state(b"plain")
                receiver = worker.client.get_queue_receiver(QUEUE, session_id="s", max_wait_time=IDLE)
                assert await worker.call(receiver.session.get_state) == b"two"
                await worker.call(receiver.close)
            finally:
                await worker.close()

        asyncio.run(run())


class TestRegionFailure:
    """The primary fails in the middle of a session."""

    def test_active_order_holds_with_no_wait(self, namespace_factory: Callable[..., LocalNamespace], api: str) -> None:
        pair = session_pair(namespace_factory)

        async def run() -> None:
            worker = Worker(config(pair, "active", sessions=geobus.SessionPolicy(order_gap_wait=30)), api)
            async with geobus.aio.GeoServiceBusClient(config(pair, "active")) as producer:
                await send(producer, ["a"], 10)

            async def fail_primary_after_three(receiver: Any, message: Any) -> None:
                if str(message) == "a:3":
                    pair.refuse("primary")

            try:
                receiver, bodies = await worker.drain("a", on_message=fail_primary_after_three)
                assert numbers(bodies, "a") == list(range(10))
                stats = receiver.session_stats
                assert (stats.gaps, stats.gap_wait_seconds, stats.out_of_order) == (0, 0.0, 0)
            finally:
                pair.heal("primary")
                await worker.close()

        asyncio.run(run())

    def test_passive_gap_is_waited_for_within_the_bound_then_reported_and_nothing_is_lost(
        self, namespace_factory: Callable[..., LocalNamespace], api: str
    ) -> None:
        pair = session_pair(namespace_factory, lock=2.0)
        wait = 2.0

        async def run() -> None:
            sessions = geobus.SessionPolicy(order_gap_wait=wait)
            worker = Worker(config(pair, "passive", sessions=sessions), api)
            producer = geobus.aio.GeoServiceBusClient(config(pair, "passive"))
            await send(producer, ["a"], 6)  # 0..5 on the primary
            receiver = worker.client.get_queue_receiver(QUEUE, session_id="a", max_wait_time=IDLE, prefetch_count=1)
            bodies: list[str] = []
            try:
                first = await worker.call(receiver.receive_messages, 1, 5)
                bodies += [str(m) for m in first]
                await worker.call(receiver.complete_message, first[0])
                pair.refuse("primary")  # 1..5 (at least the unfetched ones) are stranded there
                await send(producer, ["a"], 3, start=6)  # 6..8 fail over to the secondary
                for _ in range(100):  # bounded
                    batch = await worker.call(receiver.receive_messages, 5, wait + 3)
                    for message in batch:
                        try:
                            await worker.call(receiver.complete_message, message)
                            bodies.append(str(message))
                        except Exception:  # a copy fetched from the primary before it failed
                            pass
                    if any(b == "a:8" for b in bodies):
                        break
                stats = receiver.session_stats
                assert stats.gaps >= 1 and stats.gap_wait_seconds <= stats.gaps * (wait + 1.5)
                pair.heal("primary")
                for _ in range(100):  # the stranded ones come late, reported out of order
                    batch = await worker.call(receiver.receive_messages, 5, 2)
                    for message in batch:
                        await worker.call(receiver.complete_message, message)
                        bodies.append(str(message))
                    if sorted(set(numbers(bodies, "a"))) == list(range(9)):
                        break
                got = numbers(bodies, "a")
                assert sorted(set(got)) == list(range(9))  # nothing lost
                assert receiver.session_stats.out_of_order >= 1
                assert [n for n in got if n >= 6] == [6, 7, 8]
            finally:
                pair.heal("primary")
                await worker.call(receiver.close)
                await worker.close()
                await producer.close()

        asyncio.run(run())


class TestFleet:
    """Three workers, each its own client, a shared SQLite store, the primary failing mid-way."""

    def test_each_message_once_each_session_in_order_never_two_owners(
        self, namespace_factory: Callable[..., LocalNamespace], mode: str, tmp_path: Path
    ) -> None:
        pair = session_pair(namespace_factory, lock=3.0)
        store = f"sqlite:{tmp_path / 'seen.db'}"
        cfg = config(
            pair, mode, dedup=geobus.DedupPolicy(store=store, lease=3.0), sessions=geobus.SessionPolicy(order_gap_wait=2.0)
        )
        sessions = [f"s{n}" for n in range(4)]
        handled: list[tuple[str, int]] = []
        intervals: list[tuple[str, int, float, float]] = []
        gaps: list[int] = []
        lock = threading.Lock()
        stop = threading.Event()

        def work(index: int) -> None:
            with geobus.GeoServiceBusClient(cfg) as client:
                for _ in range(200):  # bounded
                    if stop.is_set():
                        return
                    receiver = client.get_queue_receiver(QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=IDLE)
                    began = None
                    try:
                        with receiver:
                            began = time.monotonic()
                            sid = receiver.session.session_id
                            for message in receiver:
                                try:
                                    receiver.complete_message(message)
                                except Exception:  # its namespace failed under it: it comes back
                                    continue
                                with lock:
                                    handled.append((sid, int(str(message).split(":")[1])))
                    except Exception:  # no session came, or the primary failed under the worker
                        pass
                    if began is not None:
                        ended = time.monotonic()  # closed: the session is free for others from here
                        stats = receiver.session_stats
                        with lock:
                            intervals.append((stats.session_id, index, began, ended))
                            gaps.append(stats.gaps + stats.out_of_order)

        async def produce() -> None:
            async with geobus.aio.GeoServiceBusClient(cfg) as producer:
                await send(producer, sessions, 5)
                await eventually_async(lambda: len(handled) >= 4, within=60)
                pair.refuse("primary")  # mid-session: passive mode strands what the workers have not read
                await send(producer, sessions, 5, start=5)
                await eventually_async(lambda: len(set(handled)) >= 20, within=60, what=lambda: sorted(set(handled)))
                pair.heal("primary")  # the stranded messages come back, late

        workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(3)]
        for thread in workers:
            thread.start()
        try:
            asyncio.run(produce())
            eventually(lambda: len(set(handled)) >= 40, within=90, what=lambda: sorted(set(handled)))
        finally:
            stop.set()
            for thread in workers:
                thread.join(timeout=30)
            pair.heal("primary")
        counts: dict[tuple[str, int], int] = {}
        for item in handled:
            counts[item] = counts.get(item, 0) + 1
        assert set(counts) == {(s, n) for s in sessions for n in range(10)}
        assert all(c == 1 for c in counts.values()), {k: c for k, c in counts.items() if c > 1}
        for sid in sessions:
            got = [n for s, n in handled if s == sid]
            assert got == sorted(got) or (mode == "passive" and sum(gaps) > 0)
            spans = sorted((b, e) for s, _, b, e in intervals if s == sid)
            assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_stamps_arrive_on_both_copies(namespace_factory: Callable[..., LocalNamespace]) -> None:
    """Active mode: both namespaces hold the message with its session and the same stamp."""
    pair = session_pair(namespace_factory)

    async def run() -> list[Any]:
        async with geobus.aio.GeoServiceBusClient(config(pair, "active")) as client:
            await send(client, ["a"], 1)
        found = []
        for connection_string in pair.connection_strings:
            async with SdkClient.from_connection_string(connection_string) as sdk:
                async with sdk.get_queue_receiver(QUEUE, session_id="a", max_wait_time=2) as plain:
                    (message,) = await plain.peek_messages(1)
                    found.append((message.session_id, stamp_of(message.application_properties)))
        return found

    one, two = asyncio.run(run())
    assert one == two and one[0] == "a" and one[1] is not None and one[1].seq == 1
