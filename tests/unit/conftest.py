"""Fixtures for the sans-I/O unit tests: a hand-moved clock, logs and brokers on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from geobus.local._broker import Broker
from geobus.local._entities import EntitySettings, MessageLog
from geobus.testing import FakeClock

from .helpers import START, ChangeRecorder


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when the test says so."""
    return FakeClock(START)


@pytest.fixture
def changes() -> ChangeRecorder:
    """Collects what a ``MessageLog`` reports for the store."""
    return ChangeRecorder()


@pytest.fixture
def make_log(changes: ChangeRecorder) -> Callable[..., MessageLog]:
    """Build a queue log with any ``EntitySettings`` fields; its changes go to ``changes``."""

    def make(**settings: Any) -> MessageLog:
        return MessageLog("q", EntitySettings(**settings), changes)

    return make


@pytest.fixture
def make_broker(clock: FakeClock) -> Callable[..., Broker]:
    """Build a ``Broker`` on the fake clock with any ``EntitySettings`` fields."""

    def make(*, auto_create: bool = True, **settings: Any) -> Broker:
        return Broker(EntitySettings(**settings), auto_create=auto_create, clock=clock)

    return make
