"""Messages between the local namespace and its clients: transfers in, deliveries out.

Out: ``Consumers`` knows which links read each message log, offers them ready
messages as their credit allows (``render`` makes the bytes a client receives),
and applies the clients' settlements (complete, abandon, defer, dead-letter).

In: ``take_transfer`` gathers a client's transfer from its frames, within the
link's size limit; the engine routes the whole payload to its node or entity.

Everything here runs on the server's single loop thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from proton import Condition, Delivery, Disposition, Endpoint, Link, symbol, timestamp

from ._codec import encode_annotations, encode_header
from ._conditions import LOCK_LOST, MESSAGE_SIZE_EXCEEDED, error_condition
from ._entities import LockLost, MessageLog, MessageState, StoredMessage


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
        """Stop offering messages to ``link`` (any link: not a consumer is no matter)."""
        log = getattr(link, "log", None)
        if log is not None and link in self._links.get(log, []):
            self._links[log].remove(link)

    def pump(self, logs: Iterable[MessageLog]) -> None:
        """Offer ready messages of ``logs`` to the links reading them."""
        for log in logs:
            for link in list(self._links.get(log, [])):
                self.pump_link(link)

    def pump_link(self, link: Link) -> None:
        """Send ``link`` ready messages while it has credit; answer a drain."""
        if not link.state & Endpoint.LOCAL_ACTIVE:
            return
        log: MessageLog = link.log
        now = self._clock()
        while link.credit > 0:
            message = log.take(now, peek_lock=link.peek_lock)
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
        except LockLost:
            local.condition = error_condition(
                LOCK_LOST,
                "The lock supplied is invalid. Either the lock expired, or the message has "
                "already been removed from the queue.",
            )
            delivery.update(Disposition.REJECTED)
        delivery.settle()
        self.pump([log])


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
