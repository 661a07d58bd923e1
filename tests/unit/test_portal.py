"""``Portal``: sync code runs coroutines on a private loop thread and waits for them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator

import pytest

from geobus._sync.portal import Portal


@pytest.fixture
def portal() -> Iterator[Portal]:
    portal = Portal("test-portal")
    yield portal
    portal.close()


async def echo(value: object) -> object:
    await asyncio.sleep(0)
    return value


async def fail() -> None:
    raise KeyError("boom")


def test_a_result_and_an_error_come_back_to_the_caller(portal: Portal) -> None:
    assert portal.run(echo(42)) == 42
    with pytest.raises(KeyError, match="boom"):
        portal.run(fail())


def test_a_call_past_its_timeout_is_cancelled_on_the_loop(portal: Portal) -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        portal.run(forever(), timeout=0.05)
    assert started.is_set() and cancelled.wait(5.0), "the timed-out call was left running"
    assert portal.run(echo("next")) == "next"


def test_calls_from_many_threads_each_get_their_own_result(portal: Portal) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: portal.run(echo(n)), range(200)))
    assert results == list(range(200))


def test_a_call_from_the_loop_itself_or_after_close_is_refused() -> None:
    portal = Portal("test-portal")

    async def inner() -> None:
        with pytest.raises(RuntimeError, match="inside its own event loop"):
            portal.run(echo(1))

    portal.run(inner())
    portal.close()
    with pytest.raises(RuntimeError, match="closed"):
        portal.run(echo(1))


def test_a_call_in_flight_when_the_portal_closes_is_cancelled() -> None:
    portal = Portal("test-portal")
    started = threading.Event()
    outcome: list[BaseException] = []

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    def call() -> None:
        try:
            portal.run(forever())
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert started.wait(5.0)
    portal.close()
    caller.join(5.0)
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], concurrent.futures.CancelledError)
