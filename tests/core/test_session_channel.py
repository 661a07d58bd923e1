"""``SdkSessionChannel`` over a fake azure-servicebus receiver: a session operation never runs
beside a receive call in flight (on the SDK's connection the two read each other's frames and
fail: "Handler failed: list index out of range"), and the pump held off for it is woken after."""

from __future__ import annotations

import asyncio
from typing import Any

from geobus._engine.sessions.channel import SdkSessionChannel

from .fakes import until_turns


class FakeSdkReceiver:
    """Records the order of its calls; a receive call lasts until ``answer`` is set."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.receiving = False
        self.answer = asyncio.Event()
        self.session = FakeSdkSession(self)

    async def __aenter__(self) -> FakeSdkReceiver:
        return self

    async def receive_messages(self, max_message_count: int, max_wait_time: float) -> list[Any]:
        self.receiving = True
        self.log.append("receive")
        await self.answer.wait()
        self.receiving = False
        self.log.append("received")
        return []

    async def close(self) -> None:
        self.log.append("closed")


class FakeSdkSession:
    session_id = "s"

    def __init__(self, receiver: FakeSdkReceiver) -> None:
        self._receiver = receiver

    async def get_state(self) -> bytes:
        self._receiver.log.append("get_state beside a receive" if self._receiver.receiving else "get_state")
        return b"state"


class FakeSdkClient:
    fully_qualified_namespace = "weu.example"

    def __init__(self) -> None:
        self.log: list[str] = []
        self.receivers: list[FakeSdkReceiver] = []

    def get_queue_receiver(self, queue: str, **options: Any) -> FakeSdkReceiver:
        self.receivers.append(FakeSdkReceiver(self.log))
        return self.receivers[-1]


async def test_a_state_call_waits_for_the_receive_in_flight_and_wakes_the_pump() -> None:
    client = FakeSdkClient()
    channel = SdkSessionChannel("weu", client, queue="orders")  # type: ignore[arg-type]
    woken: list[bool] = []
    channel.when_idle(lambda: woken.append(channel.managing))
    assert await channel.lock("s", timeout=5.0) == "s"
    (receiver,) = client.receivers
    receiving = asyncio.ensure_future(channel.receive(1, 1.0, timeout=5.0))
    await until_turns(lambda: receiver.receiving)
    reading = asyncio.ensure_future(channel.get_state(timeout=5.0))
    await until_turns(lambda: channel.managing)
    for _ in range(20):  # it is queued, not run beside the receive
        await asyncio.sleep(0)
    assert not reading.done() and client.log == ["receive"]

    receiver.answer.set()
    assert await asyncio.wait_for(receiving, 5.0) == []
    assert await asyncio.wait_for(reading, 5.0) == b"state"
    assert client.log == ["receive", "received", "get_state"]
    assert woken == [False], "the pump is woken once, when no operation is under way"
    await channel.close()
