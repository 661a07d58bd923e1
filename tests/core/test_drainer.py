"""The async sender with a real outbox file: buffering, queueing behind, draining, backoff, breakers.

Channels are fakes; the namespaces' health runs on a fake clock and the
drainer's backoff on a recording fake ``sleep``, so no test waits for time to
pass. Outbox I/O runs on its worker thread, so tests poll for what the drainer
did, with a bound, instead of sleeping.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from geobus import (
    BreakerPolicy,
    Deadlines,
    NamespaceError,
    NamespaceUnavailableError,
    OutboxFullError,
    OutboxPolicy,
    ReplicationError,
    ReplicationMode,
    WriteQuorum,
)
from geobus._decisions.health import BreakerState, Health
from geobus._engine.drainer import AsyncOutbox, Drainer
from geobus._storage.outbox import ANY_LANE, Outbox
from geobus.aio import ReplicatedSender
from geobus.testing import eventually_async

from .fakes import (
    FakeClock,
    FakeSendChannel,
    SendCall,
    fail,
    hang,
    message_id_of,
    ok,
    sdk_handler_failed,
)

Q = "queue:orders"
PASSIVE = ReplicationMode.PASSIVE
ACTIVE = ReplicationMode.ACTIVE


class FakeSleep:
    """The drainer's ``sleep``: records every wait, returns at once for ``free`` waits, then
    parks each caller until ``release``."""

    def __init__(self, free: int = 0) -> None:
        self.delays: list[float] = []
        self._free = free
        self._released = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        while self._free <= 0:
            self._released.clear()
            await self._released.wait()
        self._free -= 1
        await asyncio.sleep(0)

    def release(self, count: int = 1_000_000) -> None:
        self._free += count
        self._released.set()


class PickyChannel(FakeSendChannel):
    """A fake namespace that refuses, as too large, any send holding one of ``refused`` ids."""

    def __init__(self, name: str, *acts: Any) -> None:
        super().__init__(name, *acts)
        self.refused: set[str] = set()

    async def send(self, payload: Any, *, timeout: float) -> None:
        messages = payload if isinstance(payload, Sequence) else [payload]
        found = self.refused.intersection(message_id_of(m) for m in messages)
        if found:
            error = MessageSizeExceededError(message=f"{sorted(found)} too large")
            now = asyncio.get_running_loop().time()
            ids = tuple(message_id_of(m) for m in messages)
            self.calls.append(SendCall("send", timeout, now, now, ids, error))
            raise error
        await super().send(payload, timeout=timeout)


class Rig:
    """One test's outbox files, health, fake sleep and senders; all closed after the test."""

    def __init__(self, path: Path, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        self.path = path
        self.weu = weu
        self.neu = neu
        self.clock = FakeClock(0.0)  # the namespaces' health (monotonic)
        self.wall = FakeClock()  # the outbox's (time to live)
        self.health = self.make_health()
        self.sleep = FakeSleep()
        self.policy = OutboxPolicy(path=str(path))
        self.outbox: AsyncOutbox | None = None
        self._senders: list[ReplicatedSender] = []
        self._outboxes: list[AsyncOutbox] = []

    def make_health(self, threshold: int = 1000, cooldown: float = 30.0) -> Health:
        return Health(["weu", "neu"], breaker=BreakerPolicy(failure_threshold=threshold, cooldown=cooldown), clock=self.clock)

    def open(self, **options: Any) -> AsyncOutbox:
        """Open the outbox file (backoff 1 s doubling to 8 s unless told otherwise)."""
        options = {"backoff_initial": 1.0, "backoff_max": 8.0, **options}
        self.policy = OutboxPolicy(path=str(self.path), **options)
        self.outbox = AsyncOutbox(Outbox(self.policy, clock=self.wall))
        self._outboxes.append(self.outbox)
        return self.outbox

    def close_outbox(self) -> None:
        assert self.outbox is not None
        self._outboxes.remove(self.outbox)
        self.outbox.close()
        self.outbox = None

    def sender(
        self,
        *,
        mode: ReplicationMode = PASSIVE,
        channels: Sequence[FakeSendChannel] | None = None,
        health: Health | None = None,
        outbox: AsyncOutbox | None = None,
        **options: Any,
    ) -> ReplicatedSender:
        outbox = outbox or self.outbox or self.open()
        sender = ReplicatedSender(
            list(channels or (self.weu, self.neu)),
            mode=mode,
            health=health or self.health,
            deadlines=Deadlines(attempt=5.0, send=10.0),
            outbox=outbox,
            outbox_policy=self.policy,
            entity=Q,
            **options,
        )
        # The drainer's backoff goes through the fake sleep (the sender builds one with asyncio.sleep).
        sender._drainer = Drainer(sender._replicator, outbox, self.policy, lambda: sender.mode, sleep=self.sleep)
        self._senders.append(sender)
        return sender

    async def lane(self, lane: str = ANY_LANE) -> list[str]:
        """MessageIds waiting in a lane of the file, in order."""
        outbox = self.outbox
        assert outbox is not None
        return [entry.message_id for entry in await outbox.run(outbox.sync.head, Q, lane, 1000)]

    async def dead_letters(self) -> list[Any]:
        outbox = self.outbox
        assert outbox is not None
        return await outbox.run(outbox.sync.dead_letters)

    async def close(self) -> None:
        for sender in self._senders:
            await sender.close()
        for outbox in self._outboxes:
            outbox.close()


@pytest.fixture
def weu() -> FakeSendChannel:
    return FakeSendChannel("weu")


@pytest.fixture
def neu() -> FakeSendChannel:
    return FakeSendChannel("neu")


@pytest.fixture
async def rig(tmp_path: Path, weu: FakeSendChannel, neu: FakeSendChannel) -> AsyncIterator[Rig]:
    rig = Rig(tmp_path / "outbox.db", weu, neu)
    yield rig
    await rig.close()


WEU_DOWN = ServiceBusConnectionError(message="weu unreachable")
NEU_DOWN = ServiceBusConnectionError(message="neu unreachable")


def message(message_id: str | None = None, body: bytes = b"order") -> ServiceBusMessage:
    return ServiceBusMessage(body, message_id=message_id or str(uuid.uuid4()))


def both_down(weu: FakeSendChannel, neu: FakeSendChannel) -> None:
    weu.behave(fail(WEU_DOWN))
    neu.behave(fail(NEU_DOWN))


async def parked(rig: Rig, waits: int = 1) -> None:
    """Until the drainer has backed off ``waits`` times in all (it is now waiting in the fake sleep)."""
    await eventually_async(lambda: len(rig.sleep.delays) >= waits, what=f"{waits} drainer backoff(s)")


class TestPassive:
    """Passive mode: nothing took it → the 'any' lane; later sends queue behind; drained in order."""

    async def test_both_down_is_buffered_not_raised(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        result = await sender.send_messages(message("m1"))
        assert result.buffered == (ANY_LANE,)
        assert result.landed == ()
        assert result.missed == {"weu": WEU_DOWN, "neu": NEU_DOWN}
        assert await rig.lane() == ["m1"]
        stats = sender.stats
        assert (stats.buffered, stats.outbox_depth, stats.drained) == (1, 1, 0)
        assert sender.active_namespace == "weu"  # no namespace took it: roles unchanged

    async def test_later_sends_queue_behind_without_being_tried(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig)  # the drainer tried once and now backs off
        tried = (len(weu.calls), len(neu.calls))
        assert tried == (2, 2)  # the send, then the drainer
        for message_id in ("m2", "m3"):
            result = await sender.send_messages(message(message_id))
            assert (result.landed, result.missed, result.buffered) == ((), {}, (ANY_LANE,))
        assert (len(weu.calls), len(neu.calls)) == tried
        assert await rig.lane() == ["m1", "m2", "m3"]
        assert sender.stats.buffered == 3

    async def test_queues_behind_even_when_a_namespace_is_back(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig)
        weu.behave(ok())  # back, but the drainer has not noticed yet: order first
        result = await sender.send_messages(message("m2"))
        assert result.buffered == (ANY_LANE,)
        assert weu.stored == []

    async def test_drained_in_order_with_the_original_ids(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        rig.open(batch_size=2)
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig)
        await sender.send_messages([message("m2"), message("m3")])
        await sender.send_messages(message("m4"))
        await sender.send_messages(message("m5"))
        weu.behave(ok())
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.drained == 5, what="the lane drained")
        assert weu.stored == ["m1", "m2", "m3", "m4", "m5"]
        assert [call.message_ids for call in weu.sends if call.error is None] == [
            ("m1", "m2"),
            ("m3", "m4"),
            ("m5",),
        ]
        assert neu.stored == []
        assert await rig.lane() == []
        assert sender.stats.outbox_depth == 0
        # The lane is empty again: the next send goes straight to the namespace.
        result = await sender.send_messages(message("m6"))
        assert (result.landed, result.buffered) == (("weu",), ())
        assert weu.stored[-1] == "m6"

    async def test_drained_to_whichever_namespace_is_back(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig)
        await sender.send_messages(message("m2"))
        neu.behave(ok())
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.drained == 2, what="the lane drained")
        assert neu.stored == ["m1", "m2"]
        assert weu.stored == []
        assert sender.active_namespace == "neu"  # the drain was a failover like any other send
        assert sender.stats.failovers == 1

    async def test_backoff_grows_to_the_maximum(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        rig.open(backoff_initial=1.0, backoff_max=8.0)
        rig.sleep = FakeSleep(free=6)
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig, waits=7)
        delays = rig.sleep.delays[:7]
        # backoff_initial, doubled each time up to backoff_max, plus up to backoff_initial of jitter.
        for delay, low in zip(delays, [1, 2, 4, 8, 8, 8, 8], strict=True):
            assert low <= delay <= low + 1, delays
        assert delays[0] < delays[2] < delays[3]
        outbox = rig.outbox
        assert outbox is not None
        (entry,) = await outbox.run(outbox.sync.head, Q, ANY_LANE, 10)
        assert entry.attempts == 7  # each failed drain is recorded on the message

    async def test_backoff_starts_over_after_an_outage(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        rig.sleep = FakeSleep(free=3)
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig, waits=4)
        weu.behave(ok())
        rig.sleep.release(1)
        await eventually_async(lambda: sender.stats.drained == 1, what="the first outage drained")
        waits = len(rig.sleep.delays)
        weu.behave(fail(WEU_DOWN))
        await sender.send_messages(message("m2"))
        await parked(rig, waits=waits + 1)
        assert 1.0 <= rig.sleep.delays[waits] <= 2.0


class TestActive:
    """Active mode: a missed copy waits in its namespace's lane and is drained to that namespace only."""

    async def test_one_namespace_down_buffers_its_copy_and_counts_a_partial_write(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(fail(WEU_DOWN))
        sender = rig.sender(mode=ACTIVE)
        result = await sender.send_messages(message("m1"))
        assert result.landed == ("neu",)
        assert result.missed == {"weu": WEU_DOWN}
        assert result.buffered == ("weu",)
        assert result.partial
        assert neu.stored == ["m1"]
        assert (await rig.lane("weu"), await rig.lane("neu"), await rig.lane(ANY_LANE)) == (["m1"], [], [])
        assert sender.stats.partial_writes == 1
        assert sender.stats.buffered == 1

    async def test_later_copies_queue_behind_in_their_lane(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(fail(WEU_DOWN))
        sender = rig.sender(mode=ACTIVE)
        await sender.send_messages(message("m1"))
        await parked(rig)
        weu_calls = len(weu.calls)
        result = await sender.send_messages(message("m2"))
        assert len(weu.calls) == weu_calls  # not tried: its earlier copy waits
        assert result.landed == ("neu",) and result.buffered == ("weu",)
        cause = result.missed["weu"]
        assert isinstance(cause, NamespaceUnavailableError)
        assert cause.reason == "earlier copies wait in the outbox"
        assert neu.stored == ["m1", "m2"]
        assert await rig.lane("weu") == ["m1", "m2"]
        assert sender.stats.partial_writes == 2

    async def test_drained_to_the_namespace_that_missed_it_only(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(fail(WEU_DOWN))
        sender = rig.sender(mode=ACTIVE)
        await sender.send_messages(message("m1"))
        await parked(rig)
        await sender.send_messages(message("m2"))
        weu.behave(ok())
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.drained == 2, what="weu's lane drained")
        assert weu.stored == ["m1", "m2"]
        assert neu.stored == ["m1", "m2"]
        assert len(neu.sends) == 2  # the drain did not send neu's copies again
        assert sender.stats.messages_sent["weu"] == 2

    async def test_the_drain_that_catches_a_namespace_up_says_it_stores_again(
        self, rig: Rig, weu: FakeSendChannel, caplog: pytest.LogCaptureFixture
    ) -> None:
        weu.behave(fail(WEU_DOWN))
        sender = rig.sender(mode=ACTIVE)
        with caplog.at_level(logging.INFO, logger="geobus"):
            await sender.send_messages(message("m1"))
            await parked(rig)
            weu.behave(ok())
            rig.sleep.release()
            await eventually_async(lambda: sender.stats.drained == 1, what="weu's lane drained")
            # No send of its own since: the drain is what says weu has every copy again.
            await eventually_async(
                lambda: any("weu stores its copies again" in r.getMessage() for r in caplog.records),
                what="the recovery line",
            )
            await sender.send_messages(message("m2"))
        lines = [r.getMessage() for r in caplog.records if "partial writes" in r.getMessage() or "again" in r.getMessage()]
        assert len(lines) == 2, lines  # missing once, back once (m2 lands on both: no new line)

    async def test_both_down_buffers_a_copy_per_namespace(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender(mode=ACTIVE)
        result = await sender.send_messages(message("m1"))
        assert (result.landed, result.buffered) == ((), ("weu", "neu"))
        assert sender.stats.partial_writes == 0
        await parked(rig, waits=2)  # one backoff per lane
        neu.behave(ok())
        rig.sleep.release(2)  # both lanes try again; weu's fails and backs off once more
        await eventually_async(lambda: neu.stored == ["m1"], what="neu's lane drained")
        assert await rig.lane("weu") == ["m1"]  # weu's lane waits for weu, independently
        weu.behave(ok())
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.drained == 2, what="weu's lane drained")
        assert weu.stored == ["m1"]
        assert neu.stored == ["m1"]

    async def test_quorum_all_is_met_by_a_durably_buffered_copy(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(fail(WEU_DOWN))
        sender = rig.sender(mode=ACTIVE, write_quorum=WriteQuorum.ALL)
        result = await sender.send_messages(message("m1"))
        assert (result.landed, result.buffered) == (("neu",), ("weu",))

    async def test_same_rejection_on_both_is_raised_not_buffered(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        too_large = MessageSizeExceededError(message="too large")
        weu.behave(fail(too_large))
        neu.behave(fail(too_large))
        sender = rig.sender(mode=ACTIVE)
        with pytest.raises(MessageSizeExceededError):
            await sender.send_messages(message("m1"))
        assert sender.stats.outbox_depth == 0
        assert sender.stats.buffered == 0


class TestRefusal:
    """A batch refused for good is retried one message at a time: only the culprit is dead-lettered."""

    async def test_only_the_culprit_is_dead_lettered_with_the_reason(
        self, rig: Rig, neu: FakeSendChannel
    ) -> None:
        weu = PickyChannel("weu", fail(WEU_DOWN))
        neu.behave(fail(NEU_DOWN))
        sender = rig.sender(channels=[weu, neu])
        await sender.send_messages([message("m1"), message("m2"), message("m3")])
        await sender.send_messages(message("m4"))
        await parked(rig)
        neu_calls = len(neu.calls)
        weu.refused = {"m2"}
        weu.behave(ok())
        rig.sleep.release()
        await eventually_async(
            lambda: sender.stats.drained == 3 and sender.stats.outbox_dead_lettered == 1, what="the lane drained"
        )
        assert weu.stored == ["m1", "m3", "m4"]
        (dead,) = await rig.dead_letters()
        assert (dead.message_id, dead.lane) == ("m2", ANY_LANE)
        assert dead.reason.startswith("refused by the namespace: MessageSizeExceededError")
        assert "too large" in dead.reason
        assert await rig.lane() == []
        assert len(neu.calls) == neu_calls  # a refusal is not a reason to fail over
        assert rig.health.breakers["weu"].state == BreakerState.CLOSED
        assert rig.health.breakers["weu"].failures == 0

    async def test_refusal_in_a_namespace_lane(self, rig: Rig, neu: FakeSendChannel) -> None:
        weu = PickyChannel("weu", fail(WEU_DOWN))
        sender = rig.sender(mode=ACTIVE, channels=[weu, neu])
        await sender.send_messages([message("m1"), message("m2")])
        await parked(rig)
        weu.refused = {"m1"}
        weu.behave(ok())
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.outbox_dead_lettered == 1 and sender.stats.drained == 1, what="drained")
        assert weu.stored == ["m2"]
        (dead,) = await rig.dead_letters()
        assert (dead.message_id, dead.lane) == ("m1", "weu")

    async def test_a_lane_emptied_by_refusals_alone_does_not_say_it_stores_again(
        self, rig: Rig, neu: FakeSendChannel, caplog: pytest.LogCaptureFixture
    ) -> None:
        weu = PickyChannel("weu", fail(WEU_DOWN))
        sender = rig.sender(mode=ACTIVE, channels=[weu, neu])
        with caplog.at_level(logging.INFO, logger="geobus"):
            await sender.send_messages(message("m1"))
            await parked(rig)
            weu.refused = {"m1"}
            weu.behave(ok())
            rig.sleep.release()
            await eventually_async(lambda: sender.stats.outbox_dead_lettered == 1, what="dead-lettered")
            await eventually_async(lambda: any("drained" in r.getMessage() for r in caplog.records), what="the lane's end")
        assert weu.stored == [] and not any("stores its copies again" in r.getMessage() for r in caplog.records)

    async def test_refused_by_both_when_an_any_lane_drains_in_active_mode(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        passive = rig.sender()
        await passive.send_messages([message("m1"), message("m2"), message("m3")])
        await passive.close()
        weu2, neu2 = PickyChannel("weu"), PickyChannel("neu")
        weu2.refused = neu2.refused = {"m2"}
        sender = rig.sender(mode=ACTIVE, channels=[weu2, neu2])
        rig.sleep.release()
        async with sender:
            await eventually_async(
                lambda: sender.stats.drained == 2 and sender.stats.outbox_dead_lettered == 1, what="the 'any' lane drained"
            )
        assert weu2.stored == ["m1", "m3"] and neu2.stored == ["m1", "m3"]
        (dead,) = await rig.dead_letters()
        assert dead.message_id == "m2" and "MessageSizeExceededError" in dead.reason

    async def test_refused_by_one_namespace_only_when_an_any_lane_drains_in_active_mode(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        passive = rig.sender()
        await passive.send_messages([message("m1"), message("m2")])
        await passive.close()
        weu2, neu2 = PickyChannel("weu"), PickyChannel("neu")
        neu2.refused = {"m2"}  # e.g. a Standard namespace's smaller message size limit
        rig.sleep = FakeSleep(free=20)
        sender = rig.sender(mode=ACTIVE, channels=[weu2, neu2])
        async with sender:
            await eventually_async(lambda: sender.stats.outbox_depth == 0, what="the lane moved on", within=1.0)
        assert weu2.stored.count("m2") == 1
        assert [dead.message_id for dead in await rig.dead_letters()] == ["m2"]

    async def test_expired_while_buffered_is_not_sent(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        short = message("short")
        short.time_to_live = datetime.timedelta(seconds=30)
        await sender.send_messages([short, message("long")])
        await parked(rig)
        rig.wall.advance(31.0)
        weu.behave(ok())
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.drained == 1, what="the lane drained")
        assert weu.stored == ["long"]
        (dead,) = await rig.dead_letters()
        assert dead.message_id == "short" and "expired" in dead.reason


class TestBreakers:
    """An open breaker skips its namespace without calling it; the cause says so."""

    def open_breakers(self, rig: Rig, *names: str) -> Health:
        health = rig.make_health(threshold=1, cooldown=30.0)
        for name in names:
            health.record(name, WEU_DOWN)
        return health

    async def test_passive_both_open_buffered_without_a_call(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        health = self.open_breakers(rig, "weu", "neu")
        sender = rig.sender(health=health)
        result = await sender.send_messages(message("m1"))
        assert result.buffered == (ANY_LANE,)
        assert set(result.missed) == {"weu", "neu"}
        for name, cause in result.missed.items():
            assert isinstance(cause, NamespaceUnavailableError)
            assert cause.namespace == name and cause.reason.startswith("circuit open")
        await parked(rig)  # the drainer is held back by the breakers too
        assert weu.calls == [] and neu.calls == []
        rig.clock.advance(30.0)  # the cool-down passes: one half-open call may go
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.drained == 1, what="the lane drained")
        assert weu.stored == ["m1"]
        assert len(weu.calls) == 1
        assert neu.calls == []
        assert health.breaker_states() == {"weu": "closed", "neu": "open"}

    async def test_active_open_breaker_copy_buffered_without_a_call(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        health = self.open_breakers(rig, "weu")
        sender = rig.sender(mode=ACTIVE, health=health)
        result = await sender.send_messages(message("m1"))
        assert weu.calls == []
        assert isinstance(result.missed["weu"], NamespaceUnavailableError)
        assert (result.landed, result.buffered) == (("neu",), ("weu",))
        assert sender.stats.breakers == {"weu": "open", "neu": "closed"}

    async def test_without_an_outbox_the_cause_is_namespace_unavailable(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        health = self.open_breakers(rig, "weu", "neu")
        sender = ReplicatedSender([weu, neu], health=health)
        try:
            with pytest.raises(ReplicationError) as caught:
                await sender.send_messages(message("m1"))
        finally:
            await sender.close()
        assert {name: type(cause) for name, cause in caught.value.causes.items()} == {
            "weu": NamespaceUnavailableError,
            "neu": NamespaceUnavailableError,
        }
        assert weu.calls == [] and neu.calls == []


class TestOutboxFull:
    """A full outbox buffers nothing and raises OutboxFullError with the namespaces' causes."""

    async def test_passive(self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        rig.open(max_messages=1)
        both_down(weu, neu)
        sender = rig.sender()
        with pytest.raises(OutboxFullError) as caught:
            await sender.send_messages([message("m1"), message("m2")])
        assert isinstance(caught.value, ReplicationError)
        assert caught.value.causes == {"weu": WEU_DOWN, "neu": NEU_DOWN}
        assert caught.value.landed == ()
        assert await rig.lane() == []
        assert sender.stats.buffered == 0

    async def test_by_bytes(self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        rig.open(max_bytes=1000)
        both_down(weu, neu)
        sender = rig.sender()
        with pytest.raises(OutboxFullError, match="bytes") as caught:
            await sender.send_messages(message("m1", body=b"x" * 2000))
        assert set(caught.value.causes) == {"weu", "neu"}
        assert await rig.lane() == []

    async def test_active_partial_names_what_landed(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        rig.open(max_messages=1)
        weu.behave(fail(WEU_DOWN))
        sender = rig.sender(mode=ACTIVE)
        with pytest.raises(OutboxFullError) as caught:
            await sender.send_messages([message("m1"), message("m2")])
        assert caught.value.causes == {"weu": WEU_DOWN}
        assert caught.value.landed == ("neu",)
        assert await rig.lane("weu") == []

    async def test_queued_behind_a_full_lane(self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        rig.open(max_messages=1)
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig)
        with pytest.raises(OutboxFullError):
            await sender.send_messages(message("m2"))
        assert await rig.lane() == ["m1"]


class TestClose:
    """close() stops the drainer; what is still buffered waits in the file for the next sender."""

    async def test_undrained_messages_wait_for_the_next_sender(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await sender.send_messages([message("m2"), message("m3")])
        await parked(rig)
        assert sender._drainer is not None
        tasks = list(sender._drainer._tasks)
        assert tasks
        await sender.close()
        assert all(task.done() for task in tasks)
        calls = len(weu.calls) + len(neu.calls)
        rig.sleep.release()
        await asyncio.sleep(0)
        assert len(weu.calls) + len(neu.calls) == calls
        rig.close_outbox()

        outbox = rig.open()
        assert outbox.pending(Q, ANY_LANE) == 3
        weu2, neu2 = FakeSendChannel("weu"), FakeSendChannel("neu")
        sender2 = rig.sender(channels=[weu2, neu2])
        async with sender2:  # the drainer starts with the sender, before any send
            await eventually_async(lambda: sender2.stats.drained == 3, what="the next sender drained the file")
        assert weu2.stored == ["m1", "m2", "m3"]
        assert neu2.stored == []

    async def test_close_does_not_wait_for_a_hanging_drain(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig)
        weu.behave(hang())  # the next drain hangs until its 5 s attempt deadline
        rig.sleep.release()
        await eventually_async(lambda: len(weu.calls) == 3, what="the hanging drain")
        await asyncio.wait_for(sender.close(), 2.0)
        assert await rig.lane() == ["m1"]

    async def test_buffered_in_passive_drained_to_both_in_active(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages([message("m1"), message("m2")])
        await sender.close()
        weu2, neu2 = FakeSendChannel("weu"), FakeSendChannel("neu")
        sender2 = rig.sender(mode=ACTIVE, channels=[weu2, neu2])
        async with sender2:
            await eventually_async(lambda: sender2.stats.drained == 2, what="the 'any' lane drained")
        assert weu2.stored == ["m1", "m2"]
        assert neu2.stored == ["m1", "m2"]

    async def test_the_next_drainer_for_the_entity_starts_when_the_running_one_stops(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        first = rig.sender()
        await first.send_messages(message("m1"))
        await parked(rig)
        weu2, neu2 = FakeSendChannel("weu"), FakeSendChannel("neu")
        second = rig.sender(channels=[weu2, neu2])
        async with second:  # its drainer waits its turn: one per entity, or each message goes twice
            assert second._drainer is not None and second._drainer._tasks == []
            await first.close()
            await eventually_async(lambda: second.stats.drained == 1, what="the next drainer drained the lane")
        assert weu2.stored == ["m1"] and neu2.stored == []

    async def test_the_mode_is_read_at_each_drain(self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))  # buffered in passive mode: the 'any' lane
        await parked(rig)
        sender.mode = ACTIVE  # a public attribute: the drainer follows it
        weu.behave(ok())
        neu.behave(ok())
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.drained == 1, what="the 'any' lane drained")
        assert weu.stored == ["m1"] and neu.stored == ["m1"]  # to both, as active mode drains it

    async def test_close_right_after_a_buffered_send(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        """The send wakes the lane's idle wait; close() cancels it before it resumes (a
        cancellation asyncio.wait_for swallows before Python 3.12)."""
        weu.behave(fail(WEU_DOWN))
        sender = rig.sender(mode=ACTIVE)
        result = await sender.send_messages(message("m1"))
        assert result.buffered == ("weu",)
        await asyncio.wait_for(sender.close(), 5.0)
        assert await rig.lane("weu") == ["m1"]


class TestReviewFindings:
    """Found in review: a namespace's refusal is not the message's, cancellation is not health."""

    async def test_a_namespace_refusal_drains_to_the_other_namespace(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages([message("m1"), message("m2")])
        await parked(rig)
        weu.behave(fail(ServiceBusAuthorizationError(message="the key was rotated")))
        neu.behave(ok())
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.drained == 2, what="drained to neu")
        assert neu.stored == ["m1", "m2"]
        assert await rig.dead_letters() == []

    async def test_a_refusal_by_both_namespaces_is_dead_lettered(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig)
        missing = MessagingEntityNotFoundError(message="no such queue")
        weu.behave(fail(missing))
        neu.behave(fail(missing))
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.outbox_dead_lettered == 1, what="dead-lettered")
        (dead,) = await rig.dead_letters()
        assert "MessagingEntityNotFoundError" in dead.reason

    async def test_a_message_fault_is_raised_not_buffered_in_active_mode(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        weu.behave(fail(MessageSizeExceededError(message="too large")))
        neu.behave(fail(NEU_DOWN))
        sender = rig.sender(mode=ACTIVE)
        with pytest.raises(MessageSizeExceededError):
            await sender.send_messages(message("big"))
        assert sender.stats.buffered == 0 and sender.stats.outbox_depth == 0

    async def test_a_cancelled_send_does_not_close_an_open_breaker(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        health = rig.make_health(threshold=1, cooldown=30.0)
        health.breakers["weu"].record_failure()
        rig.clock.advance(31.0)  # due for its half-open probe
        weu.behave(hang())
        sender = rig.sender(mode=ACTIVE, health=health)
        send = asyncio.ensure_future(sender.send_messages(message("m1")))
        await eventually_async(lambda: bool(weu.calls), what="the probe send started")
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        breaker = health.breakers["weu"]
        assert breaker.state == BreakerState.HALF_OPEN and breaker.failures == 1
        assert breaker.allow()  # the slot was given back, not kept by the cancelled send

    async def test_a_send_cancelled_before_it_ran_takes_no_half_open_slot(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        health = rig.make_health(threshold=1, cooldown=30.0)
        health.breakers["weu"].record_failure()
        rig.clock.advance(31.0)
        sender = rig.sender(mode=ACTIVE, health=health)
        send = asyncio.ensure_future(sender.send_messages(message("m1")))
        await asyncio.sleep(0)  # inside send_messages, before the per-namespace tasks run
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        assert health.breakers["weu"].allow()




class TestBadInput:
    """A message no namespace will take is never buffered: the caller is told at once."""

    @pytest.mark.parametrize("mode", [PASSIVE, ACTIVE])
    @pytest.mark.parametrize(
        "fields",
        [{"message_id": 3.5}, {"correlation_id": 2.5}, {"application_properties": {"colours": {"red"}}}],
        ids=["float-id", "float-correlation-id", "set-property"],
    )
    async def test_refused_before_the_outbox_even_when_both_are_down(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel, mode: ReplicationMode, fields: dict[str, Any]
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender(mode=mode)
        with pytest.raises(TypeError):
            await sender.send_messages(ServiceBusMessage(b"x", **{"message_id": "bad", **fields}))
        assert (sender.stats.buffered, sender.stats.outbox_depth) == (0, 0)
        assert weu.calls == [] and neu.calls == []

    @pytest.mark.parametrize("mode", [PASSIVE, ACTIVE])
    async def test_what_the_sdk_refuses_to_encode_is_raised_not_buffered(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel, mode: ReplicationMode
    ) -> None:
        refused = sdk_handler_failed()
        weu.behave(fail(refused))
        neu.behave(fail(NEU_DOWN) if mode == ACTIVE else fail(refused))
        sender = rig.sender(mode=mode, health=rig.make_health(threshold=1))
        with pytest.raises(type(refused)) as caught:
            await sender.send_messages(message("m1"))
        assert caught.value is refused
        assert (sender.stats.buffered, sender.stats.outbox_depth) == (0, 0)
        assert sender.stats.breakers["weu"] == "closed"  # threshold 1: one count would have opened it

    async def test_an_unknown_error_is_raised_not_buffered(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        odd = RuntimeError("an error geobus cannot classify")
        weu.behave(fail(odd))
        sender = rig.sender()
        with pytest.raises(NamespaceError) as caught:
            await sender.send_messages(message("m1"))
        assert caught.value.namespace == "weu" and caught.value.__cause__ is odd
        assert (sender.stats.buffered, sender.stats.outbox_depth) == (0, 0) and neu.calls == []

    @pytest.mark.parametrize(
        ("error", "reason"),
        [(sdk_handler_failed(), "ServiceBusError: Handler failed"), (RuntimeError("odd"), "NamespaceError: namespace 'weu'")],
        ids=["handler-failed", "unknown"],
    )
    async def test_a_buffered_message_that_fails_so_is_dead_lettered_not_retried(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel, error: BaseException, reason: str
    ) -> None:
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages([message("m1"), message("m2")])
        await parked(rig)
        weu.behave(fail(error), fail(error), ok())  # the batch, then m1 alone; m2 goes through
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.outbox_dead_lettered == 1 and sender.stats.drained == 1, what="drained")
        (dead,) = await rig.dead_letters()
        assert dead.message_id == "m1" and reason in dead.reason, dead.reason
        assert weu.stored == ["m2"] and neu.calls[-1].error is NEU_DOWN
        assert sender.stats.breakers["weu"] == "closed"

    async def test_an_unclassified_service_bus_answer_is_waited_out_not_dead_lettered(
        self, rig: Rig, weu: FakeSendChannel, neu: FakeSendChannel
    ) -> None:
        """A message the caller was told is safe is not dead-lettered on a guess: a Service Bus
        error of no known kind (a condition the table does not list) is retried later."""
        both_down(weu, neu)
        sender = rig.sender()
        await sender.send_messages(message("m1"))
        await parked(rig)
        odd = ServiceBusError(message="odd", condition=b"com.microsoft:something-new")
        weu.behave(fail(odd), fail(odd), ok())
        neu.behave(fail(odd))
        rig.sleep.release()
        await eventually_async(lambda: sender.stats.drained == 1, what="drained after the odd answers")
        assert await rig.dead_letters() == []
        assert weu.stored == ["m1"]
