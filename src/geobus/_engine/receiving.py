"""How the async ``GeoServiceBusClient`` builds a receiver, and lists sessions, over its two
namespaces.

Both faces' ``get_queue_receiver``, ``get_subscription_receiver`` and ``list_*_sessions``
(``_factories``) come here with the arguments as given; the sync client wraps what
these return.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING

from azure.servicebus import ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from .. import _metrics
from .._config import NamespaceConfig
from .._errors import NamespaceTimeoutError, ReplicationError
from .channels import SdkReceiveChannel
from .handler_options import ReceiverOptions, fetch_size, handler_options
from .receiver import DedupReceiver

if TYPE_CHECKING:
    from .client import GeoServiceBusClient
    from .sessions.receiver import DedupSessionReceiver

_LOG = logging.getLogger("geobus")


def build_receiver(
    client: GeoServiceBusClient, entity: dict[str, str], given: ReceiverOptions
) -> DedupReceiver | DedupSessionReceiver:
    """A receiver of ``entity`` (``{"queue": name}`` or ``{"topic": ..., "subscription": ...}``)
    on ``client``'s namespaces, closed with the client: a ``DedupSessionReceiver`` if
    ``given`` has a ``session_id``, else a ``DedupReceiver``.

    Raises:
        RuntimeError: the client is closed.
        ValueError: a bad option (``get_queue_receiver`` lists them).
    """
    prefetch = fetch_size(given.prefetch_count, given.prefetch)
    mode = ServiceBusReceiveMode(given.receive_mode)
    queue = None if given.sub_queue is None else ServiceBusSubQueue(given.sub_queue)
    _, options = handler_options("SBReceiver", given.client_identifier, given.socket_timeout)
    if given.session_id is not None:
        from .sessions.build import session_receiver

        return session_receiver(
            client,
            entity,
            session_id=given.session_id,
            sub_queue=queue,
            receive_mode=mode,
            max_wait_time=given.max_wait_time,
            auto_lock_renewer=given.auto_lock_renewer,
            prefetch=prefetch,
            options=options,
        )
    channels = [
        SdkReceiveChannel(
            ns.name or "", client._client(ns), receive_mode=mode, sub_queue=queue, options=options, **entity  # type: ignore[arg-type]
        )
        for ns in client.config.namespaces
    ]

    async def forget() -> None:
        _metrics.forget(receiver)

    receiver = DedupReceiver(
        channels,
        dedup=client.config.dedup,
        deadlines=client.config.deadlines,
        receive_mode=mode,
        max_wait_time=given.max_wait_time,
        prefetch=prefetch,
        on_close=forget,
        sub_queue=queue,
        auto_lock_renewer=given.auto_lock_renewer,
    )
    client._receivers.add(receiver)
    destination = entity.get("queue") or entity["topic"]
    _metrics.watch_receiver(receiver, destination=destination, subscription=entity.get("subscription"))
    return receiver


async def list_sessions(
    client: GeoServiceBusClient,
    entity: dict[str, str],
    state_updated_after: datetime.datetime | None,
    timeout: float | None,
) -> AsyncIterator[str]:
    """The session ids of ``entity`` on either of ``client``'s namespaces, each once (see
    ``list_queue_sessions``).

    Raises (on iteration):
        ReplicationError: neither namespace answered. ValueError: ``timeout`` not positive.
    """
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive")
    seconds = client.config.deadlines.send if timeout is None else timeout
    listing = _listing(entity, state_updated_after, timeout)

    async def one(namespace: NamespaceConfig) -> list[str]:
        async def collect() -> list[str]:
            return [session async for session in listing(client._client(namespace))]

        try:
            return await asyncio.wait_for(collect(), seconds)
        except asyncio.TimeoutError as exc:
            raise NamespaceTimeoutError(namespace.name or "", seconds) from exc

    namespaces = client.config.namespaces
    answers = await asyncio.gather(*(one(ns) for ns in namespaces), return_exceptions=True)
    failed = {ns.name or "": a for ns, a in zip(namespaces, answers, strict=True) if isinstance(a, BaseException)}
    if len(failed) == len(namespaces):
        raise ReplicationError("no namespace listed its sessions", causes=failed)
    for name, error in failed.items():
        _LOG.warning("geobus: namespace %r did not list its sessions: %s", name, type(error).__name__)
    seen: set[str] = set()
    for answer in answers:
        if isinstance(answer, BaseException):
            continue
        for session in answer:
            if session not in seen:
                seen.add(session)
                yield session


def _listing(
    entity: dict[str, str], state_updated_after: datetime.datetime | None, timeout: float | None
) -> Callable[[ServiceBusClient], AsyncIterable[str]]:
    """How one namespace's SDK client lists ``entity``'s sessions."""
    if "queue" in entity:
        return lambda sdk: sdk.list_queue_sessions(
            entity["queue"], state_updated_after=state_updated_after, timeout=timeout
        )
    return lambda sdk: sdk.list_subscription_sessions(
        entity["topic"], entity["subscription"], state_updated_after=state_updated_after, timeout=timeout
    )
