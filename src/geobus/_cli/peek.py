"""``geobus receive --peek``: browse every namespace at once, locking and settling nothing.

A plain SDK receiver per namespace from geobus's own client factory, every
request under geobus's deadlines (``peeked``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from .._config import NamespaceConfig, ReplicationConfig
from .._engine.bounded import Bounded, close_quietly
from .._engine.channels import build_client
from .._errors import NamespaceTimeoutError


@dataclass
class Peeked:
    """What one namespace showed: its messages in sequence-number order, and the error that
    stopped the browse (``None`` if it finished; the messages before it are kept)."""

    namespace: str
    messages: list[ServiceBusReceivedMessage] = field(default_factory=list)
    error: BaseException | None = None


def _peek_page(
    count: int, start: int
) -> Callable[[ServiceBusReceiver], Awaitable[list[ServiceBusReceivedMessage]]]:
    async def page(receiver: ServiceBusReceiver) -> list[ServiceBusReceivedMessage]:
        return await receiver.peek_messages(count, sequence_number=start)

    return page


class _Browser:
    """One namespace's plain SDK receiver, used for ``peek_messages`` only.

    Its client comes from geobus's own factory (``build_client``: the namespace's connection
    string or credential, its ``client_options``, geobus's retry settings). Every peek request
    is cut off after ``deadlines.attempt`` (the SDK cannot bound a black-holed connection) and
    the whole browse after ``deadlines.send``. The receive link is opened with no prefetch, so
    it is never given credit: no message is delivered, locked or settled through it.
    """

    def __init__(self, namespace: NamespaceConfig, config: ReplicationConfig, entity: Mapping[str, str]) -> None:
        self.name = namespace.name or ""
        self._config = config
        self._client: ServiceBusClient | None = None

        def open_receiver() -> ServiceBusReceiver:
            if self._client is None:  # built here, so a failure is this namespace's alone
                self._client = build_client(namespace, config.retry, try_timeout=config.deadlines.attempt)
            if "queue" in entity:
                return self._client.get_queue_receiver(entity["queue"], prefetch_count=0)
            return self._client.get_subscription_receiver(entity["topic"], entity["subscription"], prefetch_count=0)

        self._bounded = Bounded(self.name, open_receiver)

    async def peek(self, max_count: int) -> Peeked:
        """Up to ``max_count`` messages from the head of the entity; an error ends the browse
        and is returned with what came before it, never raised."""
        deadlines = self._config.deadlines
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadlines.send
        peeked = Peeked(self.name)
        next_sequence = 1
        try:
            # The service may hand back fewer than asked for: page on from the last one seen.
            while len(peeked.messages) < max_count:
                left = give_up - loop.time()
                if left <= 0:
                    raise NamespaceTimeoutError(self.name, deadlines.send)
                page = await self._bounded.call(
                    _peek_page(max_count - len(peeked.messages), next_sequence), min(deadlines.attempt, left)
                )
                if not page:
                    break
                peeked.messages += page
                next_sequence = max(m.sequence_number or 0 for m in page) + 1
        except Exception as exc:  # whatever stops one namespace, the other is still shown
            peeked.error = exc
        peeked.messages.sort(key=lambda m: m.sequence_number or 0)
        return peeked

    async def close(self) -> None:
        await self._bounded.close()
        if self._client is not None:
            await close_quietly(self._client, self.name)


@contextlib.asynccontextmanager
async def peeked(config: ReplicationConfig, entity: Mapping[str, str], max_count: int) -> AsyncIterator[list[Peeked]]:
    """Peek up to ``max_count`` messages of ``entity`` (``{"queue": Q}`` or ``{"topic": T,
    "subscription": S}``) on every namespace at once, one ``Peeked`` each in configuration order.

    The results are yielded before the receivers close: a black-holed namespace's connection
    can take a few more seconds to give up, and the operator need not wait for that to read.
    """
    browsers = [_Browser(namespace, config, entity) for namespace in config.namespaces]
    try:
        yield list(await asyncio.gather(*(browser.peek(max_count) for browser in browsers)))
    finally:
        await asyncio.gather(*(browser.close() for browser in browsers))
