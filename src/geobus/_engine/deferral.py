"""Receiving deferred messages back from two namespaces: what to ask each, and what came back.

``receive_deferred_messages`` takes sequence numbers as the SDK does, and geobus's
deferral handles (``geobus:primary=12;secondary=9``, ``_decisions/deferrals.py``),
in one list. Each is turned into the sequence numbers to ask of each namespace:

- a handle names them;
- an int this receiver deferred (the ``sequence_number`` of the copy it handed
  out) names that copy's and, when seen, its twin's;
- any other int is asked of each namespace under its own numbering.

Both namespaces are asked at once, each within the deadline; whatever answers is
used. The copies that come back are grouped by dedup key: one per group goes to
the application (the copy it deferred, when that one came back), the others are
held as its twins and settled as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from azure.servicebus import ServiceBusReceivedMessage

from .._decisions.dedup import Copy, Key
from .._decisions.deferrals import Deferrals, parse_handle
from .channels import ReceiveChannel
from .copies import copy_of

_LOG = logging.getLogger("geobus")

Request = int | str


@dataclass
class Returned:
    """One deferred message received back: ``owner`` goes to the application, ``twins`` are held."""

    key: Key | None
    owner: Copy
    twins: list[Copy] = field(default_factory=list)


def _asks(
    requests: Iterable[Request], book: Deferrals, namespaces: Sequence[str]
) -> list[tuple[str, int]]:
    """Each namespace's sequence numbers to ask for, the preferred copy of each request first."""
    asks: list[tuple[str, int]] = []
    for request in requests:
        if isinstance(request, str):
            asks += parse_handle(request, namespaces).sequence_numbers.items()
        elif isinstance(request, int) and not isinstance(request, bool):
            deferral = book.named(request)
            if deferral is not None:
                asks.append(deferral.first)
                asks += [(n, s) for n, s in deferral.sequence_numbers.items() if (n, s) != deferral.first]
            else:
                asks += [(name, request) for name in namespaces]
        else:
            raise TypeError(f"a sequence number (int) or a geobus deferral handle (str), not {type(request).__name__}")
    return list(dict.fromkeys(asks))  # in order, once each


async def fetch_deferred(
    channels: Mapping[str, ReceiveChannel],
    requests: Iterable[Request],
    book: Deferrals,
    key: Callable[[ServiceBusReceivedMessage], Key | None],
    *,
    timeout: float,
) -> list[Returned]:
    """Receive ``requests`` back from both namespaces at once, each within ``timeout``.

    Raises:
        ValueError: a handle that is not one, or names another receiver's namespaces; an int
            that names two messages this receiver deferred, one in each namespace.
        TypeError: a request that is neither an int nor a handle.
        The first namespace's error, as the SDK raises it (``MessageNotFoundError``,
        ``NamespaceTimeoutError``...), when no namespace returned any of them.
    """
    asks = _asks(requests, book, list(channels))
    by_namespace: dict[str, list[int]] = {}
    for name, number in asks:
        by_namespace.setdefault(name, []).append(number)
    names = list(by_namespace)
    answers = await asyncio.gather(
        *(channels[name].receive_deferred(by_namespace[name], timeout=timeout) for name in names),
        return_exceptions=True,
    )
    found: dict[tuple[str, int], ServiceBusReceivedMessage] = {}
    errors: list[BaseException] = []
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer  # cancelled: not a namespace's answer
            _LOG.info("geobus: receiving deferred messages from %r failed (%s)", name, type(answer).__name__)
            errors.append(answer)
            continue
        for message in answer:
            found[(name, message.sequence_number or 0)] = message
    if not found and errors:
        raise errors[0]
    return _grouped(asks, found, channels, key)


def _grouped(
    asks: list[tuple[str, int]],
    found: Mapping[tuple[str, int], ServiceBusReceivedMessage],
    channels: Mapping[str, ReceiveChannel],
    key: Callable[[ServiceBusReceivedMessage], Key | None],
) -> list[Returned]:
    returned: list[Returned] = []
    by_key: dict[Key, Returned] = {}
    for ask in asks:
        message = found.get(ask)
        if message is None:
            continue
        copy = copy_of(channels[ask[0]], message)
        message_key = key(message)
        group = by_key.get(message_key) if message_key is not None else None
        if group is not None:
            group.twins.append(copy)
            continue
        group = Returned(message_key, copy)
        returned.append(group)
        if message_key is not None:
            by_key[message_key] = group
    return returned
