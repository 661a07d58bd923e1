"""Fixtures shared by the core tests: a fake clock, two fake receive channels (``weu``, ``neu``),
``make_receiver`` (async ``DedupReceiver``s over them, each closed after the test) and a ``portal``.

A module sets how its receivers are built by default with a ``receiver_defaults`` fixture of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from geobus import Deadlines
from geobus._engine.pumps import ReceiverTimings
from geobus._sync.portal import Portal
from geobus.aio import DedupReceiver
from geobus.testing import FakeClock

from .fakes import FakeReceiveChannel

MakeReceiver = Callable[..., DedupReceiver]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def weu(clock: FakeClock) -> FakeReceiveChannel:
    return FakeReceiveChannel("weu", clock=clock)


@pytest.fixture
def neu(clock: FakeClock) -> FakeReceiveChannel:
    return FakeReceiveChannel("neu", clock=clock)


@pytest.fixture
def receiver_defaults() -> dict[str, Any]:
    """Short polls (a fake answers at once; a stall shows only after a poll) and a short stall bound."""
    return {"deadlines": Deadlines(receive_stall=0.1), "timings": ReceiverTimings(poll_wait=0.05)}


@pytest.fixture
async def make_receiver(
    weu: FakeReceiveChannel, neu: FakeReceiveChannel, clock: FakeClock, receiver_defaults: dict[str, Any]
) -> AsyncIterator[MakeReceiver]:
    """Build receivers over ``channels`` (default: the two fakes) with the fake clock."""
    receivers: list[DedupReceiver] = []

    def make(channels: list[FakeReceiveChannel] | None = None, **options: Any) -> DedupReceiver:
        receiver = DedupReceiver(channels or [weu, neu], clock=clock, **{**receiver_defaults, **options})
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        await receiver.close()


@pytest.fixture
def portal() -> Iterator[Portal]:
    portal = Portal("test")
    yield portal
    portal.close()
