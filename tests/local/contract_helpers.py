"""What the sync and async SDK contract suites share: messages, checks, a server clock.

``test_contract.py`` (``azure.servicebus``) and ``test_contract_async.py``
(``azure.servicebus.aio``) make the same calls with the real client. Nothing
here talks to it except the polls at the end, a sync and an async twin
(``receive``/``areceive``) that differ only by ``await``; polling a plain
condition is ``geobus.testing.eventually``/``eventually_async``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusReceiver
from azure.servicebus.aio import ServiceBusReceiver as AsyncServiceBusReceiver

from geobus.local import EntitySettings

QUEUE = "orders"
DEAD_LETTERS = f"{QUEUE}/$deadletterqueue"  # as LocalNamespace.counts() names it
TOPIC, SUBSCRIPTIONS = "events", ("audit", "billing")
ROUND_TRIP, BATCH = 1_000, 100
STORED = 200  # messages through the SQLite store and a kill -9
# Bounds on polls: far above what a healthy run takes, so a failure means "never", not "slow".
WITHIN = 20.0
QUICKLY = 10.0
# A receive call's idle wait; loops poll in steps of this.
IDLE = 0.5
# The server clock is moved past locks, TTLs and schedules instead of waiting for them,
# by less than the lifetime of the client's SAS tokens (an hour), which the server
# checks against the same clock.
LATER = 120.0
# AutoLockRenewer renews once fewer than floor(T) / 2 s are left, T being the lock's time
# left when it is registered, and looks every 0.5 s (sync) or 1 s (async). These locks
# keep floor(T) at 5 s (sync) and 7 s (async) if registering takes under 0.8 s, which
# leaves the renewal two seconds (sync) or two and a half (async) of slack: half a
# second, then one, were too little on a loaded machine.
RENEWED_LOCK, RENEWED_LOCK_ASYNC = 5.8, 7.8
# The namespace's lock in the lock-expiry test; the clock jumps past it.
LOCK = 30.0
# Sender options. The SDK's keep-alive thread (sync) or task (async) sleeps in 1 s
# steps and close() waits for it: half a second per sender on average, and no sender
# here idles long enough to need it. (Receivers with prefetch 0 force their own.)
NO_KEEP_ALIVE: dict[str, Any] = {"keep_alive": 0}
# Sessions (test_sessions*.py): a session-enabled entity with the LOCK above; the
# namespace's (and a receiver's) wait for a next-available session; client options
# that report a refusal or a timeout once, not after the SDK's retries and backoff.
SESSIONS = EntitySettings(requires_session=True, lock_duration=LOCK)
SHORT_WAIT = 1.0
ONCE: dict[str, Any] = {"retry_total": 0}



class ServerClock:
    """A namespace's clock (``LocalNamespace(clock=...)``): real time plus an offset
    the test moves forward. The server's loop reads it; a float swap is atomic."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def utc(self, after: float = 0.0) -> datetime:
        """The server's "now" (plus ``after`` seconds) as the SDK's datetimes."""
        return datetime.fromtimestamp(self() + after, tz=timezone.utc)


# -- messages ---------------------------------------------------------------------------


def numbered(index: int, prefix: str = "m") -> ServiceBusMessage:
    """Message ``index``, with an explicit id and two application properties."""
    return ServiceBusMessage(
        f"body {index}",
        message_id=f"{prefix}-{index:04d}",
        application_properties={"index": index, "kind": "contract"},
    )


def session_message(session: str, index: int) -> ServiceBusMessage:
    """``numbered(index)`` in session ``session``, its id prefixed with the session's."""
    message = numbered(index, prefix=session)
    message.session_id = session
    return message


def batches(
    messages: Sequence[ServiceBusMessage], size: int = BATCH
) -> list[list[ServiceBusMessage]]:
    """Lists of ``size``: each is one batch transfer on the wire."""
    return [list(messages[i : i + size]) for i in range(0, len(messages), size)]


def ids(messages: Sequence[ServiceBusMessage | ServiceBusReceivedMessage]) -> list[str]:
    return [str(m.message_id) for m in messages]


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def properties(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """Application properties with text keys and values (the pure-Python transport
    hands them over as bytes; docs/sdk-behaviour.md)."""
    return {_text(k): _text(v) for k, v in (message.application_properties or {}).items()}


def assert_round_trip(
    sent: Sequence[ServiceBusMessage], received: Sequence[ServiceBusReceivedMessage]
) -> None:
    """Everything sent came back once, in order, intact, with increasing sequence numbers."""
    assert ids(received) == ids(sent)
    assert [str(m) for m in received] == [str(m) for m in sent]
    assert [properties(m) for m in received] == [
        {k: _text(v) for k, v in (m.application_properties or {}).items()} for m in sent
    ]
    sequence = [m.sequence_number for m in received]
    assert all(isinstance(s, int) and s > 0 for s in sequence), sequence[:5]
    assert all(a < b for a, b in itertools.pairwise(sequence)), "not increasing"
    assert all(m.delivery_count == 0 for m in received)
    assert all(m.enqueued_time_utc is not None for m in received)


def wrong_key(connection_string: str) -> str:
    """``connection_string`` with a key its namespace does not accept. Never printed:
    nothing here puts either key in an assertion message."""
    key = base64.b64encode(b"not the key this namespace was started with").decode()
    start = connection_string.index("SharedAccessKey=") + len("SharedAccessKey=")
    end = connection_string.index(";", start)
    if connection_string[start:end] == key:  # not an assert: its message would show the key
        raise RuntimeError("the namespace was started with the test's wrong key")
    return connection_string[:start] + key + connection_string[end:]


def millis(when: datetime) -> datetime:
    """``when`` to the millisecond, as an AMQP timestamp carries it."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def past(when: datetime | None, than: datetime) -> bool:
    """``when`` is at or after ``than``, to the millisecond."""
    return when is not None and when >= millis(than)


def in_seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


# -- receiving (the only I/O here; one of each per API) ---------------------------------------


def receive(
    receiver: ServiceBusReceiver,
    count: int = 1,
    *,
    until_id: str | None = None,
    within: float = WITHIN,
) -> list[ServiceBusReceivedMessage]:
    """Receive (without settling) until ``count`` messages, or the one with ``until_id``,
    have arrived; fail after ``within`` seconds."""
    got: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + within
    while not _done(got, count, until_id):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"received {ids(got)[-5:]}... ({len(got)}), not within {within:g} s"
            )
        got += receiver.receive_messages(
            max_message_count=_wanted(got, count, until_id), max_wait_time=IDLE
        )
    return got


async def areceive(
    receiver: AsyncServiceBusReceiver,
    count: int = 1,
    *,
    until_id: str | None = None,
    within: float = WITHIN,
) -> list[ServiceBusReceivedMessage]:
    """``receive`` for ``azure.servicebus.aio``."""
    got: list[ServiceBusReceivedMessage] = []
    deadline = asyncio.get_running_loop().time() + within
    while not _done(got, count, until_id):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"received {ids(got)[-5:]}... ({len(got)}), not within {within:g} s"
            )
        got += await receiver.receive_messages(
            max_message_count=_wanted(got, count, until_id), max_wait_time=IDLE
        )
    return got


def _done(got: list[ServiceBusReceivedMessage], count: int, until_id: str | None) -> bool:
    if until_id is not None:
        return until_id in ids(got)
    return len(got) >= count


def _wanted(got: list[ServiceBusReceivedMessage], count: int, until_id: str | None) -> int:
    # Never ask for more than is due: a receive call that asked for more waits out its
    # max_wait_time, and a receiver left with credit drains it on close.
    return 1 if until_id is not None else max(1, min(BATCH, count - len(got)))
