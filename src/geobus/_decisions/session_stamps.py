"""Session order stamps, without I/O: what a sender writes on a session's messages, and how it is read.

Service Bus keeps a session's messages in order within one namespace. Across two
namespaces nothing does: a receiver reading both sees each region's order, and in
passive mode the two regions hold different parts of one session. So the sender
writes on each message of a session, once, before replication, two application
properties:

- ``geobus-producer``: who numbered it — one producer stream per sender and session
  (a random id of the sender, a dot, a number: ``3f9c2a1b.1``);
- ``geobus-session-seq``: its place in that stream, from 1.

Both copies, a retry of the same message object and an outbox re-send (the
outbox keeps the message as it was stamped) carry the same stamp. A stamper keeps
an existing stamp only on a message object it stamped itself: a send retried by
the application with the same object keeps its place. Any other message carrying
a stamp is stamped afresh — one built from a received message's
``application_properties`` (a common way to carry headers along), a fan-out of one
message into several, or a relay forwarding a received message: a relay is a
producer of its own, and downstream order is the order the relay sent in. Two
messages with one stamp would otherwise reach a receiver; it would deliver the
second as unstamped (``session_order``). A message without a session
id is never stamped, nor is a scheduled one (it enters its session when its time
comes, not in the order it was handed over); a receiver delivers unstamped
messages as they come.

The senders a ``GeoServiceBusClient`` hands out for one entity share one stamper
(``shared_stamper``): an application that opens a sender per message, as the
SDK's samples do, still numbers its messages in one stream per session. It keeps
one counter per session sent to, at most ``max_sessions`` of them (least recently
used first out). A session whose counter was dropped gets a
fresh producer stream on its next message, numbered from 1 again: to a receiver
that is a new producer, never a step back in an old one.
"""

from __future__ import annotations

import itertools
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

PRODUCER = "geobus-producer"
SEQUENCE = "geobus-session-seq"
_PRODUCER_B = PRODUCER.encode()
_SEQUENCE_B = SEQUENCE.encode()
_KEYS = (PRODUCER, SEQUENCE, _PRODUCER_B, _SEQUENCE_B)
MAX_SESSIONS = 100_000


@dataclass(frozen=True, order=True)
class Stamp:
    """One message's place in its producer's stream: ``seq`` from 1."""

    producer: str
    seq: int


def session_of(message: Any) -> str | None:
    """The session id of a ``ServiceBusMessage`` or ``AmqpAnnotatedMessage`` (its group id); None without one."""
    # Read from the AMQP properties (a ServiceBusMessage's session_id is its group id): the
    # SDK's session_id getter costs as much as the rest of a send's checks together.
    raw = getattr(message, "raw_amqp_message", message)
    properties = getattr(raw, "properties", None)
    session: Any = getattr(properties, "group_id", None) if properties is not None else None
    if isinstance(session, bytes):
        session = session.decode("utf-8", "replace")
    return session if session else None


def stamp_of(properties: Mapping[Any, Any] | None) -> Stamp | None:
    """The stamp in a message's application properties, as sent (``str`` keys) or as the SDK
    hands them back (``bytes`` keys and string values); None when there is none or it is malformed."""
    if not properties:
        return None
    producer = properties.get(_PRODUCER_B, properties.get(PRODUCER))
    seq = properties.get(_SEQUENCE_B, properties.get(SEQUENCE))
    if isinstance(producer, bytes):
        producer = producer.decode("utf-8", "replace")
    if not isinstance(producer, str) or not producer or isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return None
    return Stamp(producer, seq)


class SessionStamper:
    """Numbers one sender's messages per session. No I/O; one event loop owns it (not thread-safe).

    ``producer_id``: this sender's part of every producer stream it starts (random by default).
    """

    def __init__(self, producer_id: str | None = None, *, max_sessions: int = MAX_SESSIONS) -> None:
        self.producer_id = producer_id or uuid.uuid4().hex[:12]
        self._streams = itertools.count(1)
        # session id -> [producer stream, last seq given]
        self._counters: LRUCache[str, list[Any]] = LRUCache(maxsize=max_sessions)
        self._stamped: weakref.WeakSet[Any] = weakref.WeakSet()  # message objects stamped here

    def stamp(self, message: Any) -> Stamp | None:
        """Stamp ``message`` if it belongs to a session, unless this stamper stamped this very
        object before (it keeps its place); returns the stamp given now, None when none was. A
        stamp this stamper did not give (a copied properties dict, a relayed message) is replaced."""
        session = session_of(message)
        if session is None:
            return None
        properties = message.application_properties
        stamped = bool(properties) and (SEQUENCE in properties or _SEQUENCE_B in properties)
        if stamped and message in self._stamped:
            return None  # stamped here before: it keeps its place
        if stamped:
            properties = {k: v for k, v in properties.items() if k not in _KEYS}
        counter = self._counters.get(session)
        if counter is None:
            counter = self._counters[session] = [f"{self.producer_id}.{next(self._streams)}", 0]
        counter[1] += 1
        # A new dict: the application may share one properties dict between its messages.
        message.application_properties = {**(properties or {}), PRODUCER: counter[0], SEQUENCE: counter[1]}
        self._stamped.add(message)
        return Stamp(counter[0], counter[1])

    def unstamp(self, message: Any, stamp: Stamp) -> None:
        """Take back ``stamp`` from ``message`` (it was not accepted, e.g. a batch it did not fit):
        the number is given back when it is still the last one given in its stream."""
        properties = message.application_properties
        if properties:
            message.application_properties = {k: v for k, v in properties.items() if k not in _KEYS} or None
        self._stamped.discard(message)
        session = session_of(message)
        counter = self._counters.get(session) if session is not None else None
        if counter is not None and counter[0] == stamp.producer and counter[1] == stamp.seq:
            counter[1] -= 1

    @property
    def sessions(self) -> int:
        """Sessions whose counter this sender keeps now."""
        return len(self._counters)


_SHARED: weakref.WeakKeyDictionary[Any, dict[str, SessionStamper]] = weakref.WeakKeyDictionary()


def shared_stamper(owner: Any, entity: str) -> SessionStamper:
    """The stamper of ``entity`` for every sender that shares ``owner`` (a client's ``Health``),
    kept as long as ``owner`` lives."""
    stampers = _SHARED.setdefault(owner, {})
    stamper = stampers.get(entity)
    if stamper is None:
        stamper = stampers[entity] = SessionStamper()
    return stamper
