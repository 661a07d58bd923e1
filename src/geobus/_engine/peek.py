"""Browsing both namespaces without a lock: ``DedupReceiver.peek_messages``.

Each namespace is peeked from its own position (sequence numbers are per
namespace); the copies are merged in the order they were enqueued, and a copy
whose dedup key was already taken is the twin of one returned: it is not
returned again, but noted where it was seen. At most ``max_count`` messages are
returned; each namespace's next position is then its first copy neither returned
nor the twin of one returned, so that the next peek goes on from there in both.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from azure.servicebus import ServiceBusReceivedMessage

from .._decisions.dedup import Key
from .._decisions.deferrals import parse_handle
from .channels import ReceiveChannel

_LOG = logging.getLogger("geobus")
_NEVER = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


@dataclass
class Peeked:
    """What one peek found: ``messages``, each once; where each was seen (namespace → its sequence
    number there, its own first); each namespace's next position."""

    messages: list[ServiceBusReceivedMessage] = field(default_factory=list)
    seen_in: dict[int, dict[str, int]] = field(default_factory=dict)  # by id() of a returned message
    next_from: dict[str, int] = field(default_factory=dict)


def starts(sequence_number: int | str | None, namespaces: Sequence[str], kept: Mapping[str, int]) -> dict[str, int | None]:
    """Where each namespace is peeked from: ``sequence_number`` in each one's own numbering (an
    int), each one's (a handle), or where the last peek left off (None; the SDK's own start
    before any).

    Raises:
        ValueError: a handle that is not one, or an int below 0.
    """
    if sequence_number is None:
        return {name: kept.get(name) for name in namespaces}
    if isinstance(sequence_number, str):
        named = parse_handle(sequence_number, namespaces).sequence_numbers
        return {name: named.get(name, kept.get(name)) for name in namespaces}
    if sequence_number < 0:
        raise ValueError("sequence_number must be 0 or more")
    return {name: sequence_number for name in namespaces}


async def peek_both(
    channels: Sequence[ReceiveChannel],
    max_count: int,
    start: Mapping[str, int | None],
    key: Callable[[ServiceBusReceivedMessage], Key | None],
    *,
    timeout: float,
) -> Peeked:
    """Peek ``max_count`` from each namespace at once (each within ``timeout``) and merge them.

    A namespace that fails is left out (logged) while the other answers.

    Raises:
        The first namespace's error, when neither answered.
    """
    answers = await asyncio.gather(
        *(c.peek(max_count, start[c.name], timeout=timeout) for c in channels), return_exceptions=True
    )
    copies: list[tuple[str, ServiceBusReceivedMessage]] = []
    errors: list[Exception] = []
    for channel, answer in zip(channels, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer
            _LOG.info("geobus: peeking %r failed (%s)", channel.name, type(answer).__name__)
            errors.append(answer)
        else:
            copies += [(channel.name, message) for message in answer]
    if errors and len(errors) == len(channels):
        raise errors[0]
    copies.sort(key=lambda item: item[1].enqueued_time_utc or _NEVER)  # stable: the primary first on ties
    return _merged(copies, max_count, key)


def _merged(
    copies: list[tuple[str, ServiceBusReceivedMessage]],
    max_count: int,
    key: Callable[[ServiceBusReceivedMessage], Key | None],
) -> Peeked:
    peeked = Peeked()
    taken: dict[Key, ServiceBusReceivedMessage] = {}
    left: dict[str, list[int]] = {}  # per namespace: copies neither returned nor a returned one's twin
    last: dict[str, int] = {}
    for name, message in copies:
        number = message.sequence_number or 0  # a peeked message always has one
        last[name] = max(last.get(name, number), number)
        message_key = key(message)
        first = taken.get(message_key) if message_key is not None else None
        if first is not None:
            peeked.seen_in[id(first)].setdefault(name, number)
        elif len(peeked.messages) < max_count:
            peeked.messages.append(message)
            peeked.seen_in[id(message)] = {name: number}
            if message_key is not None:
                taken[message_key] = message
        else:
            left.setdefault(name, []).append(number)
    for name, number in last.items():
        peeked.next_from[name] = min(left[name]) if name in left else number + 1
    return peeked
