"""One namespace's SDK session receiver, with geobus's deadline on every call.

A ``SdkSessionChannel`` is a ``SdkReceiveChannel`` (settlements, deferral, peek, each
bounded) whose SDK receiver is a session receiver: ``lock`` opens it on a named
session or the next available one and answers the session it holds. Once a
session is held, every receiver the channel opens again (after a fault dropped
one) asks for that session by name, never for another.

Errors come from the SDK unchanged: ``SessionCannotBeLockedError`` (another
receiver holds the session), ``OperationTimeoutError`` (no session came within
``max_wait_time``), ``SessionLockLostError``; ``NamespaceTimeoutError`` when a call
passes its deadline.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceiveMode, ServiceBusSessionFilter
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from ..bounded import Bounded
from ..channels import ReceiveChannel, SdkReceiveChannel

_T = TypeVar("_T")

SessionTarget = str | ServiceBusSessionFilter


class SessionChannel(ReceiveChannel, Protocol):
    """What a session receiver needs of one namespace, beyond a ``ReceiveChannel``."""

    @property
    def session_id(self) -> str | None: ...
    @property
    def locked_until(self) -> datetime.datetime | None: ...
    @property
    def managing(self) -> bool: ...
    def when_idle(self, wake: Callable[[], None]) -> None: ...
    async def lock(self, target: SessionTarget, *, timeout: float) -> str: ...
    async def renew_session(self, *, timeout: float) -> datetime.datetime: ...
    async def get_state(self, *, timeout: float) -> bytes | None: ...
    async def set_state(self, state: bytes | None, *, timeout: float) -> None: ...


class SdkSessionChannel(SdkReceiveChannel):
    """A namespace's session receiver (azure.servicebus.aio); see the module."""

    def __init__(
        self,
        name: str,
        client: ServiceBusClient,
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
        receive_mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
        max_wait_time: float | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            name, client, queue=queue, topic=topic, subscription=subscription, receive_mode=receive_mode, options=options
        )
        self._target: SessionTarget | None = None
        self._managing = 0
        self._wake: Callable[[], None] | None = None
        self._held: str | None = None
        kwargs: dict[str, Any] = {**(options or {}), "receive_mode": receive_mode, "prefetch_count": 0}

        def open_handler() -> ServiceBusReceiver:
            if self._target is None:
                raise RuntimeError("a session channel is used before lock()")
            # Next-available waits up to max_wait_time for a session on attach, as the SDK does.
            wait = max_wait_time if self._target == NEXT_AVAILABLE_SESSION else None
            options = {**kwargs, "session_id": self._target, "max_wait_time": wait}
            if queue is not None:
                return client.get_queue_receiver(queue, **options)
            assert topic is not None and subscription is not None
            return client.get_subscription_receiver(topic, subscription, **options)

        self._bounded = Bounded(name, open_handler)

    @property
    def session_id(self) -> str | None:
        """The session this channel holds (or last held); None before ``lock``."""
        return self._held

    @property
    def locked_until(self) -> datetime.datetime | None:
        """When the session lock runs out, as the SDK last heard; None without an open receiver."""
        handler = self._bounded.handler
        session = getattr(handler, "session", None) if handler is not None else None
        return getattr(session, "locked_until_utc", None)

    async def lock(self, target: SessionTarget, *, timeout: float) -> str:
        """Open a session receiver on ``target`` (a session id or ``NEXT_AVAILABLE_SESSION``)
        and return the id of the session it holds. A receiver open on another session is closed first."""
        if self._target != target or (self._held is not None and self._held != target):
            await self._bounded.reset()
        self._target = target

        async def attach(receiver: ServiceBusReceiver) -> str:
            await receiver.__aenter__()
            return str(receiver.session.session_id)

        held = await self._bounded.call(attach, timeout)
        self._held = self._target = held  # a receiver opened again asks for this one by name
        return held

    @property
    def managing(self) -> bool:
        """A session operation (state, lock renewal) waits for, or makes, its call: the
        receiver's pump holds off its next receive call until it is done."""
        return self._managing > 0

    def when_idle(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` each time the last session operation under way ends (the pump held off for it)."""
        self._wake = wake

    async def _manage(self, fn: Callable[[ServiceBusReceiver], Awaitable[_T]], timeout: float) -> _T:
        """``fn`` on the SDK receiver, after the receive call in flight, never beside it: two
        calls at once on one SDK receiver read its connection's frames twice and fail in the
        SDK ("Handler failed: list index out of range"), losing the operation. ``timeout``
        counts that wait (at most the pump's poll)."""
        self._managing += 1
        try:
            return await self._bounded.call(fn, timeout)
        finally:
            self._managing -= 1
            if not self._managing and self._wake is not None:
                self._wake()

    async def renew_session(self, *, timeout: float) -> datetime.datetime:
        result: datetime.datetime = await self._manage(lambda r: r.session.renew_lock(), timeout)
        return result

    async def get_state(self, *, timeout: float) -> bytes | None:
        state = await self._manage(lambda r: r.session.get_state(), timeout)
        return None if state is None else bytes(state)

    async def set_state(self, state: bytes | None, *, timeout: float) -> None:
        await self._manage(lambda r: r.session.set_state(state), timeout)
