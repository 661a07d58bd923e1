"""The options of one geobus sender or receiver, as the SDK's ``get_queue_*`` calls take them.

One geobus handle opens an SDK sender or receiver on each namespace; these decide what
both of them are given, and what the SDK's ``prefetch_count`` means for geobus's pumps.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusReceiveMode, ServiceBusSessionFilter, ServiceBusSubQueue


def fetch_size(prefetch_count: int, prefetch: int | None) -> int:
    """How many messages each namespace's pump fetches ahead, from the SDK's
    ``prefetch_count`` or geobus's ``prefetch``; 0 (the SDK's default): only what a
    receive call asks for. The SDK's receive call, asked for more messages than its
    namespace holds, waits 0.2 s after the first one for the rest; a pump asking for
    more than the application did would add that wait to every message of a quiet
    queue, which the SDK's own receiver with no prefetch never does.

    Raises:
        ValueError: a negative ``prefetch_count``, a ``prefetch`` below 1, or both given.
    """
    if isinstance(prefetch_count, bool) or not isinstance(prefetch_count, int) or prefetch_count < 0:
        raise ValueError(f"prefetch_count must be a whole number >= 0, got {prefetch_count!r}")
    if prefetch is None:
        return prefetch_count
    if prefetch_count:
        raise ValueError("give prefetch_count (the SDK's name) or prefetch, not both")
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise ValueError(f"prefetch must be a whole number >= 1, got {prefetch!r}")
    return prefetch


def handler_options(kind: str, client_identifier: str | None, socket_timeout: float | None) -> tuple[str, dict[str, Any]]:
    """``(identifier, options)`` for both namespaces' SDK senders or receivers of one
    geobus handle: the caller's identifier, or one generated as the SDK does, so that
    both regions' links carry the same one.

    Raises:
        ValueError: ``socket_timeout`` is not a positive number; TypeError: the
            identifier is not a string.
    """
    if client_identifier is not None and not isinstance(client_identifier, str):
        raise TypeError(f"client_identifier must be a str, got {type(client_identifier).__name__}")
    identifier = client_identifier or f"{kind}-{uuid.uuid4()}"
    options: dict[str, Any] = {"client_identifier": identifier}
    if socket_timeout is not None:
        if isinstance(socket_timeout, bool) or not isinstance(socket_timeout, (int, float)) or not socket_timeout > 0:
            raise ValueError(f"socket_timeout must be a positive number of seconds, got {socket_timeout!r}")
        options["socket_timeout"] = float(socket_timeout)
    return identifier, options


@dataclass(frozen=True)
class ReceiverOptions:
    """What ``get_queue_receiver`` or ``get_subscription_receiver`` was given, under the
    SDK's names, as both clients (sync and async) pass it on; checked where the receiver
    is built (``fetch_size``, ``handler_options``, the SDK's enums)."""

    client_identifier: str | None = None
    socket_timeout: float | None = None
    session_id: str | ServiceBusSessionFilter | None = None
    sub_queue: ServiceBusSubQueue | str | None = None
    receive_mode: ServiceBusReceiveMode | str = ServiceBusReceiveMode.PEEK_LOCK
    max_wait_time: float | None = None
    auto_lock_renewer: Any = None
    prefetch_count: int = 0
    prefetch: int | None = None
