"""What one client may take from a local namespace, and when it must let go.

Any local process can reach ``geobus local``; a broken or hostile one must not
stop it serving well-behaved clients, nor grow its memory without bound.
``Limits`` holds the bounds; the functions here decide, without I/O, which
connection has overstayed (the server's loop closes it) and how long to stop
accepting while the process is out of file descriptors.

========================  =======  =====================================================
Limit                     Default  At the limit
========================  =======  =====================================================
handshake_timeout         30 s     a connection that has not authorised (a put-token
                                   accepted on ``$cbs``) is closed: with
                                   ``amqp:unauthorized-access`` if its AMQP connection
                                   is open, else its socket is
idle_timeout              240 s    a connection that sent nothing for that long is
                                   closed with ``amqp:resource-limit-exceeded``; the
                                   open frame advertises half (120 s, as Service Bus
                                   does), so clients send empty frames well in time
max_connections           1000     a new connection takes the place of the oldest one
                                   that has not authorised; if all have, it is closed
max_links_per_connection  256      an attach beyond it is refused with
                                   ``amqp:resource-limit-exceeded`` (a client that holds
                                   twice as many, ignoring refusals, is closed); the
                                   open frame's channel-max allows as many sessions
max_cbs_request           8 KiB    a larger ``$cbs`` request detaches its link with
                                   ``amqp:link:message-size-exceeded`` (the link
                                   advertises it as its max-message-size)
session_wait              60 s     a receiver asking for the next available session
                                   while none is free waits this long (or the
                                   ``com.microsoft:timeout`` its attach names), then is
                                   refused with ``com.microsoft:timeout``
========================  =======  =====================================================

A link's unsettled bytes are bounded by the max-message-size it advertises (the
namespace's ``max_message_size`` for entity and management links): the server
settles every incoming delivery once it is complete, and a link carries one
incomplete delivery at a time. A detached link, and its unfinished delivery, is
freed as soon as both ends have detached.

While a fault stops the namespace reading (``black_hole``, ``freeze``) the
clocks stand still: the silence is the server's, not the client's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from ._conditions import RESOURCE_LIMIT_EXCEEDED, UNAUTHORIZED

if TYPE_CHECKING:
    from ._connection import Conn

# How long a connection closed for a limit may take to read its close frame.
CLOSE_GRACE = 2.0


@dataclass(frozen=True)
class Limits:
    """Bounds on what clients may hold of a local namespace (see the module's table).

    Raises:
        ValueError: a timeout that is not a positive finite number of seconds, or
            a count or size below 1; the message names the field.
    """

    handshake_timeout: float = 30.0
    idle_timeout: float = 240.0
    max_connections: int = 1000
    max_links_per_connection: int = 256
    max_cbs_request: int = 8 * 1024
    session_wait: float = 60.0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.type == "float":
                good = (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                    and value > 0
                )
                if not good:
                    raise ValueError(f"{spec.name} must be a positive number of seconds")
            elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{spec.name} must be a whole number of at least 1")


def overdue(conn: Conn, limits: Limits, now: float) -> tuple[str, str] | None:
    """Why ``conn`` must be closed at ``now`` (an AMQP condition and description), if it must."""
    if conn.authorise_by and now >= conn.authorise_by:
        return UNAUTHORIZED, (
            f"no token was put on $cbs within {limits.handshake_timeout:g} s of connecting"
        )
    if now >= conn.last_input + limits.idle_timeout:
        return RESOURCE_LIMIT_EXCEEDED, (
            f"the connection sent nothing for {limits.idle_timeout:g} s (idle timeout)"
        )
    return None


def next_deadline(conn: Conn, limits: Limits) -> float:
    """When ``conn`` is next due a look: its handshake or idle deadline, or its close grace."""
    deadlines = [conn.last_input + limits.idle_timeout]
    if conn.authorise_by:
        deadlines.append(conn.authorise_by)
    if conn.close_by:
        deadlines.append(conn.close_by)
    return min(deadlines)


def restart_clocks(conns: Iterable[Conn], limits: Limits, now: float) -> None:
    """Start every connection's clocks afresh at ``now``, after a fault that stopped the
    server reading: the silence was the server's, not the clients'."""
    for conn in conns:
        conn.last_input = now
        if conn.authorise_by:
            conn.authorise_by = now + limits.handshake_timeout
        if conn.close_by:
            conn.close_by = now + CLOSE_GRACE


def oldest_unauthorised(conns: Iterable[Conn]) -> Conn | None:
    """The connection to give way to a new one: the longest waiting for its token."""
    waiting = [conn for conn in conns if conn.authorise_by and not conn.close_by]
    return min(waiting, key=lambda conn: conn.authorise_by, default=None)


class AcceptBackoff:
    """How long to stop accepting after ``accept()`` found no free descriptor.

    The listener stays readable while connections wait in its backlog, so
    retrying at once would spin; waits double from ``FIRST`` to ``LONGEST``. A
    closed connection frees a descriptor: ``clear`` makes the next try immediate.
    """

    FIRST = 0.05
    LONGEST = 1.0

    def __init__(self) -> None:
        self.resume_at = 0.0
        self._delay = 0.0

    def failed(self, now: float) -> None:
        self._delay = min(self.LONGEST, self._delay * 2 or self.FIRST)
        self.resume_at = now + self._delay

    def succeeded(self) -> None:
        self._delay = 0.0
        self.resume_at = 0.0

    def clear(self) -> None:
        """Try again now, keeping the current wait for the next failure to double."""
        self.resume_at = 0.0

    def paused(self, now: float) -> bool:
        return now < self.resume_at
