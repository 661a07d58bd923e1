"""How a ``GeoServiceBusClient`` builds a session receiver over its two namespaces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from azure.servicebus import ServiceBusReceiveMode, ServiceBusSessionFilter, ServiceBusSubQueue

from ... import _metrics
from .channel import SdkSessionChannel
from .receiver import DedupSessionReceiver

if TYPE_CHECKING:
    from ..client import GeoServiceBusClient


def session_receiver(
    client: GeoServiceBusClient,
    entity: dict[str, str],
    *,
    session_id: str | ServiceBusSessionFilter,
    sub_queue: ServiceBusSubQueue | None,
    receive_mode: ServiceBusReceiveMode,
    max_wait_time: float | None,
    auto_lock_renewer: Any,
    prefetch: int,
    options: Mapping[str, Any],
) -> DedupSessionReceiver:
    """A ``DedupSessionReceiver`` of ``entity`` (``{"queue": name}`` or ``{"topic": ...,
    "subscription": ...}``) on ``client``'s namespaces, closed with the client.

    ``auto_lock_renewer`` is accepted and not needed: the receiver renews both
    namespaces' session locks itself.

    Raises:
        ValueError: ``sub_queue`` with a session (as the SDK's client raises it: a dead-letter
            queue has no sessions, and Service Bus refuses a session receiver on it), an empty
            ``session_id``, or ``max_wait_time`` not positive.
    """
    if sub_queue is not None:
        raise ValueError(
            "session_id and sub_queue can not be specified simultaneously: a dead-letter queue has no "
            "sessions. Read a session entity's dead-letter queue with sub_queue only (no session_id)."
        )
    if isinstance(session_id, str) and not session_id:
        raise ValueError("session_id must not be empty")
    config = client.config
    channels = [
        SdkSessionChannel(
            ns.name or "",
            client._client(ns),
            receive_mode=receive_mode,
            max_wait_time=max_wait_time,
            options=options,
            **entity,
        )
        for ns in config.namespaces
    ]
    destination = entity.get("queue") or entity["topic"]
    path = destination if "queue" in entity else f"{destination}/Subscriptions/{entity['subscription']}"

    async def forget() -> None:
        _metrics.forget(receiver)

    receiver = DedupSessionReceiver(
        channels,
        session_id=session_id,
        mode=config.mode,
        sessions=config.sessions,
        dedup=config.dedup,
        deadlines=config.deadlines,
        receive_mode=receive_mode,
        max_wait_time=max_wait_time,
        prefetch=prefetch,
        entity=path,
        active=lambda: client.health.passive_order()[0],
        on_close=forget,
    )
    client._receivers.add(receiver)  # closed with the client
    _metrics.watch_receiver(receiver, destination=destination, subscription=entity.get("subscription"))
    return receiver
