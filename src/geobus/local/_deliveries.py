"""Messages between the local namespace and its clients: transfers in, deliveries out.

Out: ``Consumers`` knows which links read each message log, offers them ready
messages as their credit allows (``render`` makes the bytes a client receives),
and applies the clients' settlements (complete, abandon, defer, dead-letter).
On a session-enabled log it also answers session receivers' attaches: a link
is opened once it holds a session (named, or the next available one, which it
may wait for), and detached when that session's lock runs out.

In: ``take_transfer`` gathers a client's transfer from its frames, within the
link's size limit; the engine routes the whole payload to its node or entity.

Everything here runs on the server's single loop thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from proton import (
    Condition,
    Delivery,
    Described,
    Disposition,
    Endpoint,
    Link,
    Terminus,
    symbol,
    timestamp,
)

from ._codec import encode_annotations, encode_header
from ._conditions import (
    LOCK_LOST,
    MESSAGE_SIZE_EXCEEDED,
    SESSION_CANNOT_BE_LOCKED,
    SESSION_LOCK_LOST,
    TIMEOUT,
    error_condition,
)
from ._entities import LockLost, MessageLog, MessageState, StoredMessage
from ._sessions import SessionCannotBeLocked, SessionLock, SessionLockLost

SESSION_FILTER = "com.microsoft:session-filter"
LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
OPERATION_TIMEOUT = "com.microsoft:timeout"
# .NET ticks (100 ns since 0001-01-01) of the Unix epoch: how the attach says locked-until.
_EPOCH_TICKS = 621355968000000000


def render(message: StoredMessage) -> bytes:
    """The bytes a client receives for ``message``: broker sections + the stored rest."""
    annotations = dict(message.annotations)
    annotations[symbol("x-opt-sequence-number")] = message.seq
    annotations[symbol("x-opt-enqueued-time")] = timestamp(int(message.enqueued_at * 1000))
    if message.locked_until is not None:
        annotations[symbol("x-opt-locked-until")] = timestamp(int(message.locked_until * 1000))
    if message.state != MessageState.ACTIVE:
        annotations[symbol("x-opt-message-state")] = int(message.state)
    return (
        encode_header(message.header, message.delivery_count)
        + encode_annotations(annotations)
        + message.rest
    )


class Consumers:
    """The links reading each message log, and the messages they are offered."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._links: dict[MessageLog, list[Link]] = {}

    def add(self, link: Link) -> None:
        """Offer ``link.log``'s messages to ``link`` from the next ``pump`` on."""
        self._links.setdefault(link.log, []).append(link)

    def remove(self, link: Link) -> None:
        """Stop offering messages to ``link`` (any link: not a consumer is no matter),
        and end its session lock or its wait for one."""
        log: MessageLog | None = getattr(link, "log", None)
        if log is None:
            return
        if link in self._links.get(log, []):
            self._links[log].remove(link)
        if log.sessions is not None:
            log.sessions.stop_waiting(link)
            session: SessionLock | None = getattr(link, "session_lock", None)
            if session is not None and not session.lost:
                log.end_session(session)  # the session is free for the next receiver now
                self.pump([log])

    def pump(self, logs: Iterable[MessageLog]) -> None:
        """Offer ready messages of ``logs`` to the links reading them; on session-enabled
        logs, first detach the links whose session lock ran out and serve waiting ones."""
        for log in logs:
            if log.sessions is not None:
                self._serve_sessions(log)
            for link in list(self._links.get(log, [])):
                self.pump_link(link)

    # -- sessions -------------------------------------------------------------------

    def attach_session(self, link: Link, session_id: str | None, wait: float) -> None:
        """Answer a session receiver's attach: lock ``session_id`` (None: the next
        available session) and open ``link``; or refuse it, or keep it waiting up to
        ``wait`` seconds (its own ``com.microsoft:timeout`` if it names one)."""
        log: MessageLog = link.log
        assert log.sessions is not None
        now = self._clock()
        try:
            lock = log.accept_session(session_id, link, now)
        except SessionCannotBeLocked:
            refuse_link(
                link,
                SESSION_CANNOT_BE_LOCKED,
                f"The requested session '{session_id}' cannot be accepted. It may be locked "
                "by another receiver.",
            )
            return
        if lock is None:
            log.sessions.wait(link, now + _operation_timeout(link, wait))
        else:
            self._open_session_link(link, lock)

    def _open_session_link(self, link: Link, lock: SessionLock) -> None:
        link.session_lock = lock
        link.source.filter.clear()
        link.source.filter.put_dict({symbol(SESSION_FILTER): lock.session_id})
        ticks = _EPOCH_TICKS + int(lock.locked_until * 1000) * 10_000
        link.properties = {LOCKED_UNTIL_UTC: ticks}
        link.open()
        self.add(link)
        self.pump_link(link)

    def _serve_sessions(self, log: MessageLog) -> None:
        sessions = log.sessions
        assert sessions is not None
        lost, sessions.lost = sessions.lost, []
        for lock in lost:
            owner: Link = lock.owner
            if owner.state & Endpoint.LOCAL_ACTIVE:
                owner.condition = error_condition(
                    SESSION_LOCK_LOST,
                    f"The session lock has expired on the MessageSession '{lock.session_id}'. "
                    "Accept a new MessageSession.",
                )
                owner.close()
        now = self._clock()
        for waiter in list(sessions.waiters):
            link: Link = waiter.owner
            accepted = log.accept_session(None, link, now)
            if accepted is not None:
                sessions.stop_waiting(link)
                self._open_session_link(link, accepted)
            elif waiter.deadline <= now:
                sessions.stop_waiting(link)
                refuse_link(
                    link,
                    TIMEOUT,
                    "The operation did not complete within the allotted timeout: no session "
                    "was available.",
                )

    def pump_link(self, link: Link) -> None:
        """Send ``link`` ready messages while it has credit; answer a drain."""
        if not link.state & Endpoint.LOCAL_ACTIVE:
            return
        log: MessageLog = link.log
        now = self._clock()
        session: SessionLock | None = getattr(link, "session_lock", None)
        while link.credit > 0:
            message = log.take(now, peek_lock=link.peek_lock, session=session)
            if message is None:
                break
            token = message.lock_token or uuid.uuid4()
            # The SDK reads the tag as the lock token's 16 raw bytes; proton takes bytes
            # here though its stubs say str.
            delivery = link.delivery(token.bytes_le)  # type: ignore[arg-type]
            link.send(render(message))
            link.advance()
            if link.peek_lock:
                delivery.token = token
            else:
                delivery.settle()
        if link.drain_mode and link.credit > 0:
            link.drained()

    def settled(self, delivery: Delivery) -> None:
        """Apply the client's settlement of ``delivery`` to its message, and answer it."""
        token = getattr(delivery, "token", None)
        if token is None or (delivery.settled and delivery.local_state):
            delivery.settle()
            return
        log: MessageLog = delivery.link.log
        state = delivery.remote_state
        remote = delivery.remote
        now = self._clock()
        local = delivery.local
        try:
            if state == Disposition.ACCEPTED:
                log.complete(token, now)
            elif state == Disposition.RELEASED:
                log.abandon(token, now, count=False)
            elif state == Disposition.MODIFIED:
                if remote.undeliverable:
                    log.defer(token, now)
                else:
                    log.abandon(token, now)
                local.failed = remote.failed
                local.undeliverable = remote.undeliverable
            elif state == Disposition.REJECTED:
                reason, description = _dead_letter_info(remote.condition)
                log.dead_letter_locked(token, now, reason, description)
            else:
                return
            delivery.update(state)
        except (LockLost, SessionLockLost) as exc:
            session = getattr(delivery.link, "session_lock", None)
            local.condition = lock_lost_condition(exc, session)
            delivery.update(Disposition.REJECTED)
        delivery.settle()
        self.pump([log])


def lock_lost_condition(exc: Exception, session: SessionLock | None) -> Condition:
    """The refusal of a settlement whose lock is gone: the session's, on a session link."""
    if isinstance(exc, SessionLockLost) or session is not None:
        return error_condition(
            SESSION_LOCK_LOST,
            "The session lock has expired, or the session was released. Accept the session "
            "again.",
        )
    return error_condition(
        LOCK_LOST,
        "The lock supplied is invalid. Either the lock expired, or the message has "
        "already been removed from the queue.",
    )


def session_filter(link: Link) -> tuple[bool, str | None]:
    """Whether the peer's source has a session filter, and the session it names (None:
    the next available one)."""
    data = link.remote_source.filter
    data.rewind()
    if data.next() is None:
        return False, None
    found = data.get_object()
    if not isinstance(found, dict):
        return False, None
    for key, value in found.items():
        if str(key) == SESSION_FILTER:
            if isinstance(value, Described):
                value = value.value
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            return True, None if value is None else str(value)
    return False, None


def _operation_timeout(link: Link, default: float) -> float:
    """The wait a link asks for in ``com.microsoft:timeout`` (ms), else ``default`` (s)."""
    properties: Any = link.remote_properties
    if isinstance(properties, dict):
        for key, value in properties.items():
            if str(key) == OPERATION_TIMEOUT and isinstance(value, int) and value > 0:
                return value / 1000.0
    return default


def refuse_link(link: Link, condition: str, description: str) -> None:
    """Refuse ``link``'s attach: answer it, then detach it at once with ``condition``."""
    link.kind = "refused"
    # A refusing attach has a null terminus on the side the peer asked for: with its
    # own target echoed, the SDK takes a refused sender link for an attached one,
    # sends, and reports the refusal as a retryable connection error.
    (link.target if link.is_receiver else link.source).type = Terminus.UNSPECIFIED
    link.open()
    link.condition = error_condition(condition, description)
    link.close()


def take_transfer(delivery: Delivery, limit: int) -> bytes | None:
    """The whole payload of a client's transfer, once its last frame is in; else None.

    A transfer over ``limit`` bytes is rejected (and its link detached if more
    frames would follow); one that comes after this end detached its link is
    dropped. Either way, and while frames are still to come, the answer is None.
    """
    link = delivery.link
    if not delivery.readable or delivery.aborted:
        if delivery.aborted:
            delivery.settle()
        return None
    chunk = link.recv(delivery.pending) or b""
    if not link.state & Endpoint.LOCAL_ACTIVE:
        # This end detached the link (a fault, a refusal) before the transfer came.
        # The client never hears its outcome and sends it again on a new link, so
        # storing it would make a duplicate: drop it.
        delivery.buffer = None
        if not delivery.partial:
            link.advance()
            delivery.settle()
        return None
    buffer = getattr(delivery, "buffer", None)
    if buffer is None:
        buffer = bytearray()
    buffer += chunk  # in place: a large message comes in many frames
    if len(buffer) > limit:
        delivery.buffer = None
        if not delivery.partial:
            link.advance()
        too_large = f"The message exceeds the maximum size ({limit} bytes)."
        reject(delivery, MESSAGE_SIZE_EXCEEDED, too_large)
        if delivery.partial:
            link.condition = error_condition(MESSAGE_SIZE_EXCEEDED, too_large)
            link.close()
        return None
    if delivery.partial:
        delivery.buffer = buffer
        return None
    delivery.buffer = None
    link.advance()
    return bytes(buffer)


def reject(delivery: Delivery, condition: str, description: str) -> None:
    """Settle ``delivery`` as rejected, with ``condition``."""
    delivery.local.condition = error_condition(condition, description)
    delivery.update(Delivery.REJECTED)
    delivery.settle()


def _dead_letter_info(condition: Condition | None) -> tuple[str | None, str | None]:
    if condition is None or not isinstance(condition.info, dict):
        return None, None
    info = {str(k): v for k, v in condition.info.items()}
    reason = info.get("DeadLetterReason")
    description = info.get("DeadLetterErrorDescription")
    return (
        None if reason is None else str(reason),
        None if description is None else str(description),
    )
