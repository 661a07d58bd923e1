"""The sync sender's fast lane over fakes: direct sends from the caller's thread once its own link
is open, the loop for everything else, and a failed direct try finished by the core's own logic."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusConnectionError

import geobus
from geobus import Deadlines, ReplicationMode
from geobus._errors import NamespaceTimeoutError
from geobus._sync.fast_lane import QUICK_FAILURE, FastLane
from geobus._sync.portal import Portal
from geobus.aio import ReplicatedSender

from .fakes import FakeSendChannel


class FakeSyncChannel:
    """A ``SyncChannel``: opens at once (or never), records what it sends, fails when told."""

    def __init__(self, name: str, *, opens: bool = True) -> None:
        self.name = name
        self.ready = False
        self.usable = True
        self.opens = opens
        self.sent: list[str] = []
        self.error: Exception | None = None
        self.slow = 0.0  # seconds a send takes before it fails
        self.closed = threading.Event()
        self.opened = threading.Event()

    def open(self, seconds: float) -> None:
        self.ready = self.usable = self.opens
        self.opened.set()

    def send(self, payload: Any, seconds: float) -> None:
        if self.error is not None:
            threading.Event().wait(self.slow)
            raise self.error
        self.sent.append(str(payload.message_id))

    def close(self) -> None:
        self.closed.set()


class Rig:
    """A sync sender with a fast lane over two fake async channels (the loop's) and fake sync
    channels (the lane's, ``opened`` per namespace, in order)."""

    def __init__(self, portal: Portal, *, opens: bool = True, **options: Any) -> None:
        self.weu, self.neu = FakeSendChannel("weu"), FakeSendChannel("neu")
        self.opened: dict[str, list[FakeSyncChannel]] = {"weu": [], "neu": []}
        self._opens = opens

        async def make() -> ReplicatedSender:
            return ReplicatedSender([self.weu, self.neu], deadlines=Deadlines(attempt=1.0, send=2.0), **options)

        self.core = portal.run(make())
        self.lane = FastLane(self.core, portal, self._open)
        self.sender = geobus.ReplicatedSender(portal, self.core, self.lane)

    def _open(self, name: str) -> FakeSyncChannel:
        channel = FakeSyncChannel(name, opens=self._opens)
        self.opened[name].append(channel)
        return channel

    def ready(self, name: str) -> FakeSyncChannel:
        """The newest channel to ``name``, once its open (run aside) is done."""
        channel = self.opened[name][-1]
        assert channel.opened.wait(5.0)
        return channel

    def send(self, n: int, **fields: Any) -> geobus.SendResult:
        return self.sender.send_messages(ServiceBusMessage(b"x", message_id=f"m-{n}", **fields))

    def warm(self) -> FakeSyncChannel:
        """The first two sends (through the loop: the second opens this thread's direct channel
        to weu, aside), and that channel, open."""
        assert [self.send(n).landed for n in (-2, -1)] == [("weu",), ("weu",)]
        return self.ready("weu")


WARM = ["m--2", "m--1"]  # Rig.warm's sends


@pytest.fixture
def portal() -> Iterator[Portal]:
    portal = Portal("test")
    yield portal
    portal.close()


@pytest.fixture
def rig(portal: Portal) -> Iterator[Rig]:
    rig = Rig(portal)
    yield rig
    rig.sender.close()


def test_the_first_send_goes_through_the_loop_and_the_next_ones_direct(rig: Rig) -> None:
    direct = rig.warm()
    assert [rig.send(n).landed for n in (1, 2)] == [("weu",), ("weu",)]
    assert rig.weu.stored == WARM and direct.sent == ["m-1", "m-2"] and rig.lane.direct == 2
    assert rig.sender.stats.messages_sent == {"weu": 4, "neu": 0}
    rig.sender.close()
    assert direct.closed.wait(5.0)


def test_a_direct_send_that_times_out_fails_over_through_the_loop(rig: Rig) -> None:
    direct = rig.warm()
    direct.error = NamespaceTimeoutError("weu", 1.0)
    result = rig.send(1)
    assert result.landed == ("neu",) and result.failed_over
    assert isinstance(result.missed["weu"], NamespaceTimeoutError)
    assert rig.weu.stored == WARM, "the namespace that did not answer was waited out twice"
    assert rig.neu.stored == ["m-1"]
    stats = rig.sender.stats
    assert stats.send_failures["weu"] == 1 and stats.failovers == 1 and stats.active_namespace == "neu"
    assert direct.closed.wait(5.0), "a channel that was cut off is closed"


def test_a_direct_link_that_broke_is_retried_on_the_loops_own_link_without_failover(rig: Rig) -> None:
    rig.warm().error = ServiceBusConnectionError(message="connection reset by peer")
    result = rig.send(1)
    assert result.landed == ("weu",) and not result.failed_over
    assert rig.weu.stored == [*WARM, "m-1"] and rig.sender.stats.failovers == 0
    rig.send(2)  # this thread's second send since: a new channel is opened aside
    assert len(rig.opened["weu"]) == 2


def test_a_slow_error_is_the_namespaces_failure_and_fails_over(rig: Rig) -> None:
    direct = rig.warm()
    direct.error, direct.slow = ServiceBusConnectionError(message="reset"), QUICK_FAILURE * 2
    result = rig.send(1)
    assert result.landed == ("neu",) and result.failed_over
    assert rig.weu.stored == WARM, "a namespace that failed slowly was tried again, eating the standby's time"


def test_a_sender_used_once_per_thread_opens_no_link_of_its_own(rig: Rig) -> None:
    rig.send(0)
    sent = threading.Thread(target=rig.send, args=(1,))
    sent.start()
    sent.join(5.0)
    assert rig.opened["weu"] == [] and rig.weu.stored == ["m-0", "m-1"]


def test_the_links_of_threads_that_ended_are_closed(rig: Rig) -> None:
    def two_sends() -> None:
        rig.send(0)
        rig.send(1)

    worker = threading.Thread(target=two_sends)
    worker.start()
    worker.join(5.0)
    [theirs] = rig.opened["weu"]
    assert theirs.opened.wait(5.0) and not theirs.closed.is_set()
    rig.warm()  # this thread opens its own: the ended thread's is closed
    assert theirs.closed.wait(5.0)


def test_after_a_failover_the_new_active_namespace_is_sent_to_directly(rig: Rig) -> None:
    rig.warm().error = NamespaceTimeoutError("weu", 1.0)
    assert rig.send(1).landed == ("neu",)
    for n in (2, 3):  # through the loop: this thread's second send to neu opens its link there, aside
        rig.send(n)
    direct = rig.ready("neu")
    assert rig.send(4).landed == ("neu",)
    assert direct.sent == ["m-4"] and rig.neu.stored == ["m-1", "m-2", "m-3"] and rig.lane.direct == 1


def test_a_namespace_behind_an_open_breaker_is_not_sent_to_directly(portal: Portal, rig: Rig) -> None:
    direct = rig.warm()

    async def open_breaker() -> None:
        for _ in range(3):  # the default threshold
            rig.core._replicator.health.record("weu", ServiceBusConnectionError(message="down"))

    portal.run(open_breaker())
    assert rig.send(1).landed == ("neu",) and direct.sent == [] and rig.lane.direct == 0


@pytest.mark.parametrize("case", ["session message", "active mode", "namespace never opens"])
def test_what_the_loop_sends(portal: Portal, case: str) -> None:
    mode = ReplicationMode.ACTIVE if case == "active mode" else ReplicationMode.PASSIVE
    rig = Rig(portal, opens=case != "namespace never opens", mode=mode)
    fields = {"session_id": "s1"} if case == "session message" else {}
    for n in range(3):
        rig.send(n, **fields)
        if rig.opened["weu"]:
            rig.ready("weu")
    assert rig.lane.direct == 0 and rig.weu.stored == ["m-0", "m-1", "m-2"]
    rig.sender.close()


def test_bad_input_is_refused_before_anything_is_sent(rig: Rig) -> None:
    direct = rig.warm()
    bad = ServiceBusMessage(b"x", message_id="m-1")
    bad.application_properties = {"n": 2**40}
    with pytest.raises(ValueError, match="application_properties"):
        rig.sender.send_messages(bad)
    assert direct.sent == [] and rig.weu.stored == WARM
