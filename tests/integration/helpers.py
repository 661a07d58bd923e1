"""What the integration tests share: two local namespaces, a producer's record, a worker.

A test that takes the ``driver`` fixture (``conftest.py``) runs once through the
sync API and once through the async one (``drivers.py``); ``Sends`` and ``work``
speak to either. Everything is the real azure-servicebus client talking to two
``geobus.local`` namespaces.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.exceptions import ServiceBusError

import geobus
from geobus.local import LocalNamespace
from geobus.testing import NamespacePair, eventually_async

QUEUE = "orders"
TOPIC, SUBSCRIPTION = "events", "audit"
ATTEMPT, SEND = 1.0, 3.0
# Scheduling noise on two shared cores, a worker thread (sync) and the SDK's own polling.
MARGIN = 1.5
FAST = {
    "deadlines": geobus.Deadlines(attempt=ATTEMPT, send=SEND, receive_stall=2.0),
    "retry": geobus.SdkRetryPolicy(total=0),
}
IDLE = 0.5  # the worker's max_wait_time: how long an idle iteration lasts
# Messages locked under a connection a fault cut come back after their lock, as in Azure.
SHORT_LOCK = 2.0


# -- namespaces -----------------------------------------------------------------------------


def depth(pair: NamespacePair) -> dict[str, int]:
    """Messages each namespace still holds, in every entity and dead-letter queue."""
    return {role: sum(counts.values()) for role, counts in pair.counts().items()}


def empty(pair: NamespacePair) -> bool:
    return not any(depth(pair).values())


def start_pair(factory: Callable[..., LocalNamespace], **options: Any) -> NamespacePair:
    """Two namespaces with the same ``options``, from the ``namespace_factory`` fixture."""
    return NamespacePair(factory(**options), factory(**options))


def wrong_key(namespace: LocalNamespace) -> str:
    """``namespace``'s connection string with a key it does not accept (never printed)."""
    key = base64.b64encode(b"not the key this namespace was started with").decode()
    good = namespace.connection_string
    start = good.index("SharedAccessKey=") + len("SharedAccessKey=")
    end = good.index(";", start)
    if good[start:end] == key:  # not an assert: its message would show the key
        raise RuntimeError("the namespace was started with the test's wrong key")
    return good[:start] + key + good[end:]


@asynccontextmanager
async def healed(namespace: LocalNamespace) -> AsyncIterator[None]:
    """Heal ``namespace`` on the way out, before the senders and clients around it close."""
    try:
        yield
    finally:
        namespace.heal()


# -- producer -------------------------------------------------------------------------------


def message(index: int, prefix: str = "m") -> ServiceBusMessage:
    return ServiceBusMessage(f"body {index}", message_id=f"{prefix}-{index:04d}")


@dataclass
class Sends:
    """What a producer was told: each send's result and how long it took."""

    results: dict[str, geobus.SendResult] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)

    async def send(self, sender: Any, msg: ServiceBusMessage) -> geobus.SendResult:
        began = time.monotonic()
        result: geobus.SendResult = await sender.send_messages(msg)
        self.durations[str(msg.message_id)] = time.monotonic() - began
        self.results[str(msg.message_id)] = result
        return result

    @property
    def acknowledged(self) -> set[str]:
        return set(self.results)

    def assert_within(self, seconds: float) -> None:
        slow = {mid: round(took, 2) for mid, took in self.durations.items() if took > seconds}
        assert not slow, f"sends over {seconds:g} s: {slow}"


# -- worker ---------------------------------------------------------------------------------

Decision = Literal["complete", "abandon"]


@dataclass
class Ledger:
    """What the worker's handler saw, per MessageId."""

    deliveries: Counter[str] = field(default_factory=Counter)
    completed: Counter[str] = field(default_factory=Counter)
    abandoned: Counter[str] = field(default_factory=Counter)
    settle_failures: Counter[str] = field(default_factory=Counter)
    namespaces: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return (
            f"delivered {sum(self.deliveries.values())} ({len(self.deliveries)} ids), "
            f"completed {sum(self.completed.values())}, abandoned {sum(self.abandoned.values())}, "
            f"settle failures {sum(self.settle_failures.values())}, by namespace {dict(self.namespaces)}"
        )

    def assert_each_once(self, expected: set[str]) -> None:
        """Every expected message was handled and completed once; the only extra
        deliveries are those the handler asked for by abandoning."""
        unexpected = set(self.deliveries) - expected
        assert not unexpected, f"unexpected ids: {sorted(unexpected)[:5]}"
        lost = expected - set(self.deliveries)
        assert not lost, f"{len(lost)} acknowledged messages never reached the handler: {sorted(lost)[:5]}"
        assert not self.settle_failures, f"settlements failed: {dict(self.settle_failures)}"
        duplicated = {mid: n for mid, n in self.deliveries.items() if n != 1 + self.abandoned[mid]}
        assert not duplicated, f"handled more than once: {duplicated}"
        not_once = {mid: self.completed[mid] for mid in expected if self.completed[mid] != 1}
        assert not not_once, f"not completed exactly once: {not_once}"


async def handle(
    receiver: Any,
    msg: ServiceBusReceivedMessage,
    ledger: Ledger,
    decide: Callable[[ServiceBusReceivedMessage, Ledger], Decision] | None = None,
) -> None:
    """The worker's handler: record the message, then settle it as ``decide`` says."""
    key = str(msg.message_id)
    ledger.deliveries[key] += 1
    ledger.namespaces[receiver.namespace_of(msg)] += 1
    action = decide(msg, ledger) if decide is not None else "complete"
    try:
        if action == "abandon":
            await receiver.abandon_message(msg)
            ledger.abandoned[key] += 1
        else:
            await receiver.complete_message(msg)
            ledger.completed[key] += 1
    except ServiceBusError:
        # Its namespace failed under it: the copy comes back (or its twin does).
        ledger.settle_failures[key] += 1


async def work(
    receiver: Any,
    ledger: Ledger,
    *,
    done: Callable[[], bool],
    within: float,
    decide: Callable[[ServiceBusReceivedMessage, Ledger], Decision] | None = None,
) -> None:
    """``for message in receiver`` until ``done()``; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done():
        async for msg in receiver:  # ends after IDLE seconds without a message
            await handle(receiver, msg, ledger, decide)
            if done() or loop.time() > deadline:
                break
        if loop.time() > deadline and not done():
            raise AssertionError(
                f"worker not done within {within:g} s: {ledger.summary()}; {receiver.stats}"
            )


async def work_until_empty(
    receiver: Any,
    ledger: Ledger,
    pair: NamespacePair,
    *,
    completed: int,
    absorbed: int | None = None,
    within: float,
    decide: Callable[[ServiceBusReceivedMessage, Ledger], Decision] | None = None,
) -> None:
    """``work`` until ``completed`` messages are completed and both namespaces are empty.

    With ``absorbed``: until that many twins were absorbed too, then (polled) until their
    settlements, made in the background, have emptied both namespaces.
    """

    def done() -> bool:
        if absorbed is None:
            return len(ledger.completed) == completed and empty(pair)
        return len(ledger.completed) == completed and receiver.stats.duplicates_absorbed == absorbed

    await work(receiver, ledger, done=done, within=within, decide=decide)
    await eventually_async(lambda: empty(pair), within=10, what=lambda: f"both namespaces empty: {depth(pair)}")
