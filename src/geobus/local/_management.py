"""The ``<entity>/$management`` node: request-response operations of Service Bus.

Requests carry ``operation`` in their application properties and a map body;
replies carry ``statusCode``/``statusDescription`` (and ``errorCondition`` on
failure) with a map body, correlated by the request's message-id. These are the
spellings azure-servicebus reads (unlike ``$cbs``, which uses ``status-code``).

On a session-enabled entity, a request that names a ``session-id`` acts within
that session and needs its lock, held by the link the request names in
``associated-link-name`` (when it names one); without it, it fails with
``com.microsoft:session-lock-lost`` as Service Bus fails it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proton import UNDESCRIBED, Array, Data, Link, Message, symbol, timestamp

from ._broker import BadAddress, EntityNotFound, Topic
from ._codec import CodecError, parse_message
from ._conditions import (
    ARGUMENT_ERROR,
    LOCK_LOST,
    MESSAGE_NOT_FOUND,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    SESSION_LOCK_LOST,
)
from ._deliveries import render
from ._entities import LockLost, MessageLog
from ._sessions import SessionLock, SessionLockLost, SessionRequired, listing

# proton types Array's descriptor as data, though UNDESCRIBED is its documented marker.
_PLAIN: Any = UNDESCRIBED

if TYPE_CHECKING:
    from ._amqp import Engine


# receiver-settle-mode in receive-by-sequence-number: 0 is receive-and-delete.
_RECEIVE_AND_DELETE = 0


class ManagementError(Exception):
    """An operation failed; becomes a non-2xx reply with an error condition."""

    def __init__(self, status: int, condition: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.condition = condition
        self.description = description


@dataclass
class Request:
    """One decoded request: its entity's path, body map and application properties."""

    entity: str
    body: dict[str, Any]
    properties: dict[str, Any]
    link: Link


Reply = tuple[int, Any]
Handler = Callable[["Engine", Request], Reply]


def handle_request(engine: Engine, link: Link, data: bytes) -> None:
    """Run the request in ``data`` and send the reply on the connection's reply link."""
    request = Message()
    try:
        request.decode(data)
    except Exception as exc:
        raise CodecError(f"cannot decode management request: {type(exc).__name__}") from exc
    raw_props: dict[Any, Any] = request.properties if isinstance(request.properties, dict) else {}
    props = {str(k): v for k, v in raw_props.items()}
    operation = str(props.get("operation", ""))
    handler = _HANDLERS.get(operation)
    node = link.remote_target.address or ""
    try:
        if handler is None:
            raise ManagementError(501, NOT_IMPLEMENTED, f"operation {operation!r} is not supported")
        body = request.body if isinstance(request.body, dict) else {}
        asked = Request(link.entity, {str(k): v for k, v in body.items()}, props, link)
        try:
            status, reply_body = handler(engine, asked)
        except (TypeError, ValueError) as exc:
            # A field of the wrong type or value (int("x"), say): the request's fault.
            raise ManagementError(
                400, ARGUMENT_ERROR, f"a request field is not valid: {type(exc).__name__}"
            ) from exc
        properties: dict[str, Any] = {"statusCode": status, "statusDescription": "OK"}
    except ManagementError as exc:
        properties = {
            "statusCode": exc.status,
            "statusDescription": exc.description,
            "errorCondition": symbol(exc.condition),
        }
        reply_body = None
    engine.reply(link.connection, node, request, properties, reply_body)


def _log(engine: Engine, entity: str) -> MessageLog:
    try:
        return engine.broker.receive_source(entity)
    except (EntityNotFound, BadAddress) as exc:
        raise ManagementError(404, NOT_FOUND, f"entity {entity!r} not found") from exc


def _send_target(engine: Engine, entity: str) -> MessageLog | Topic:
    try:
        return engine.broker.send_target(entity)
    except (EntityNotFound, BadAddress) as exc:
        raise ManagementError(404, NOT_FOUND, f"entity {entity!r} not found") from exc


def _elements(value: Any) -> list[Any]:
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, (list, tuple)):
        return list(value)
    if value is None:
        return []
    return [value]


def _tokens(body: dict[str, Any]) -> list[uuid.UUID]:
    tokens = []
    for token in _elements(body.get("lock-tokens")):
        if not isinstance(token, uuid.UUID):
            raise ManagementError(400, ARGUMENT_ERROR, "lock-tokens must be uuids")
        tokens.append(token)
    return tokens


def _renew_lock(engine: Engine, request: Request) -> Reply:
    entity, body = request.entity, request.body
    log = _log(engine, entity)
    now = engine.clock()
    expirations = []
    for token in _tokens(body):
        try:
            until = log.renew(token, now)
        except LockLost as exc:
            raise ManagementError(410, LOCK_LOST, "The lock supplied is invalid.") from exc
        expirations.append(timestamp(int(until * 1000)))
    return 200, {"expirations": Array(_PLAIN, Data.TIMESTAMP, *expirations)}


def _update_disposition(engine: Engine, request: Request) -> Reply:
    entity, body = request.entity, request.body
    log = _log(engine, entity)
    status = str(body.get("disposition-status", ""))
    session = _session_lock(engine, request, log) if body.get("session-id") else None
    now = engine.clock()
    for token in _tokens(body):
        try:
            if status == "completed":
                log.complete(token, now)
            elif status == "abandoned":
                log.abandon(token, now)
            elif status == "defered":  # sic: the service's spelling
                log.defer(token, now)
            elif status == "suspended":
                log.dead_letter_locked(
                    token,
                    now,
                    _text(body.get("deadletter-reason")),
                    _text(body.get("deadletter-description")),
                )
            else:
                raise ManagementError(400, ARGUMENT_ERROR, f"unknown disposition {status!r}")
        except (LockLost, SessionLockLost) as exc:
            if session is not None or isinstance(exc, SessionLockLost):
                raise _session_lost() from exc
            raise ManagementError(410, LOCK_LOST, "The lock supplied is invalid.") from exc
    engine.consumers.pump([log])
    return 200, {}


def _peek(engine: Engine, request: Request) -> Reply:
    entity, body = request.entity, request.body
    log = _log(engine, entity)
    start = int(body.get("from-sequence-number") or 0)
    count = max(1, int(body.get("message-count") or 1))
    found = log.peek(start, count, engine.clock(), _text(body.get("session-id")))
    if not found:
        return 204, None
    return 200, {"messages": [{"message": render(m)} for m in found]}


def _receive_by_sequence_number(engine: Engine, request: Request) -> Reply:
    entity, body = request.entity, request.body
    log = _log(engine, entity)
    peek_lock = int(body.get("receiver-settle-mode") or 0) != _RECEIVE_AND_DELETE
    session = _session_lock(engine, request, log) if log.requires_session else None
    now = engine.clock()
    messages = []
    for seq in _elements(body.get("sequence-numbers")):
        try:
            message = log.take_deferred(int(seq), now, peek_lock=peek_lock, session=session)
        except KeyError as exc:
            raise ManagementError(
                404, MESSAGE_NOT_FOUND, f"no deferred message with sequence number {seq}"
            ) from exc
        entry: dict[str, Any] = {"message": render(message)}
        if message.lock_token is not None:
            entry["lock-token"] = message.lock_token
        messages.append(entry)
    return 200, {"messages": messages}


def _schedule(engine: Engine, request: Request) -> Reply:
    entity, body = request.entity, request.body
    target = _send_target(engine, entity)
    parsed = []
    for item in _elements(body.get("messages")):
        raw = item.get("message") if isinstance(item, dict) else None
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise ManagementError(400, ARGUMENT_ERROR, "each scheduled message needs 'message'")
        try:
            parsed.append(parse_message(bytes(raw)))
            engine.broker.check_session(target, parsed[-1])
        except CodecError as exc:
            raise ManagementError(400, ARGUMENT_ERROR, str(exc)) from exc
        except SessionRequired as exc:
            raise ManagementError(400, NOT_ALLOWED, str(exc)) from exc
    numbers = []
    for message in parsed:
        seq = engine.broker.enqueue(target, message)
        numbers.append(seq if seq is not None else 0)
    engine.consumers.pump(target.subscriptions.values() if isinstance(target, Topic) else [target])
    return 200, {"sequence-numbers": Array(_PLAIN, Data.LONG, *numbers)}


def _cancel_scheduled(engine: Engine, request: Request) -> Reply:
    entity, body = request.entity, request.body
    target = _send_target(engine, entity)
    for seq in _elements(body.get("sequence-numbers")):
        engine.broker.cancel_scheduled(target, int(seq))
    return 200, {}


# -- sessions ----------------------------------------------------------------------------

# get-message-sessions' "no filter" value of last-updated-time: .NET's DateTime.MaxValue.
_LIST_ALL_MS = 253402300800000


def _session_lost() -> ManagementError:
    return ManagementError(
        410, SESSION_LOCK_LOST, "The session lock has expired, or the session is not locked by "
        "this receiver. Accept the session again."
    )


def _session_lock(engine: Engine, request: Request, log: MessageLog) -> SessionLock:
    """The live lock on the request's ``session-id``, held by the link it is associated with.

    Raises:
        ManagementError: not a session-enabled entity, no ``session-id``, or no such lock.
    """
    sessions = log.sessions
    if sessions is None:
        raise ManagementError(400, NOT_ALLOWED, "the entity does not require sessions")
    session_id = _text(request.body.get("session-id"))
    if not session_id:
        raise ManagementError(400, ARGUMENT_ERROR, "the request needs a session-id")
    now = engine.clock()
    held = sessions.locks.get(session_id)
    if held is not None and not held.live(now):
        log.expire_session(held)  # ran out before the loop's clock turn noticed: end it now
        engine.consumers.pump([log])
    try:
        lock = sessions.current(session_id, now)
    except SessionLockLost as exc:
        raise _session_lost() from exc
    associated = request.properties.get("associated-link-name")
    owner: Link = lock.owner
    if associated is not None and (
        str(associated) != owner.name or owner.connection != request.link.connection
    ):
        raise _session_lost()
    return lock


def _renew_session_lock(engine: Engine, request: Request) -> Reply:
    log = _log(engine, request.entity)
    lock = _session_lock(engine, request, log)
    assert log.sessions is not None
    until = log.sessions.renew(lock.session_id, engine.clock())
    return 200, {"expiration": timestamp(int(until * 1000))}


def _get_session_state(engine: Engine, request: Request) -> Reply:
    log = _log(engine, request.entity)
    lock = _session_lock(engine, request, log)
    assert log.sessions is not None
    return 200, {"session-state": log.sessions.states.get(lock.session_id)}


def _set_session_state(engine: Engine, request: Request) -> Reply:
    log = _log(engine, request.entity)
    lock = _session_lock(engine, request, log)
    state = request.body.get("session-state")
    if state is not None and not isinstance(state, (bytes, bytearray, memoryview)):
        raise ManagementError(400, ARGUMENT_ERROR, "session-state must be binary or null")
    engine.broker.set_session_state(log, lock.session_id, None if state is None else bytes(state))
    return 200, {}


def _get_message_sessions(engine: Engine, request: Request) -> Reply:
    """Sessions with messages or a state; or, given a time, those whose state changed after."""
    log = _log(engine, request.entity)
    if log.sessions is None:
        raise ManagementError(400, NOT_ALLOWED, "the entity does not require sessions")
    since = int(request.body.get("last-updated-time") or _LIST_ALL_MS)
    skip = max(0, int(request.body.get("skip") or 0))
    top = max(1, int(request.body.get("top") or 100))
    if since >= _LIST_ALL_MS:
        found = listing(log.sessions_with_messages(), log.sessions)
    else:
        found = log.sessions.updated_after(since / 1000.0)
    page = found[skip : skip + top]
    if not page:
        return 204, None
    return 200, {"skip": skip + len(page), "sessions-ids": page}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


_HANDLERS: dict[str, Handler] = {
    "com.microsoft:renew-lock": _renew_lock,
    "com.microsoft:update-disposition": _update_disposition,
    "com.microsoft:peek-message": _peek,
    "com.microsoft:receive-by-sequence-number": _receive_by_sequence_number,
    "com.microsoft:schedule-message": _schedule,
    "com.microsoft:cancel-scheduled-message": _cancel_scheduled,
    "com.microsoft:renew-session-lock": _renew_session_lock,
    "com.microsoft:get-session-state": _get_session_state,
    "com.microsoft:set-session-state": _set_session_state,
    "com.microsoft:get-message-sessions": _get_message_sessions,
}
