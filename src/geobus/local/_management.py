"""The ``<entity>/$management`` node: request-response operations of Service Bus.

Requests carry ``operation`` in their application properties and a map body;
replies carry ``statusCode``/``statusDescription`` (and ``errorCondition`` on
failure) with a map body, correlated by the request's message-id. These are the
spellings azure-servicebus reads (unlike ``$cbs``, which uses ``status-code``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proton import UNDESCRIBED, Array, Data, Link, Message, symbol, timestamp

from ._broker import BadAddress, EntityNotFound, Topic
from ._codec import CodecError, parse_message
from ._conditions import ARGUMENT_ERROR, LOCK_LOST, MESSAGE_NOT_FOUND, NOT_FOUND, NOT_IMPLEMENTED
from ._deliveries import render
from ._entities import LockLost, MessageLog

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


Reply = tuple[int, Any]
Handler = Callable[["Engine", str, dict[str, Any]], Reply]


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
        try:
            status, reply_body = handler(engine, link.entity, {str(k): v for k, v in body.items()})
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


def _renew_lock(engine: Engine, entity: str, body: dict[str, Any]) -> Reply:
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


def _update_disposition(engine: Engine, entity: str, body: dict[str, Any]) -> Reply:
    log = _log(engine, entity)
    status = str(body.get("disposition-status", ""))
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
        except LockLost as exc:
            raise ManagementError(410, LOCK_LOST, "The lock supplied is invalid.") from exc
    engine.consumers.pump([log])
    return 200, {}


def _peek(engine: Engine, entity: str, body: dict[str, Any]) -> Reply:
    log = _log(engine, entity)
    start = int(body.get("from-sequence-number") or 0)
    count = max(1, int(body.get("message-count") or 1))
    found = log.peek(start, count, engine.clock())
    if not found:
        return 204, None
    return 200, {"messages": [{"message": render(m)} for m in found]}


def _receive_by_sequence_number(engine: Engine, entity: str, body: dict[str, Any]) -> Reply:
    log = _log(engine, entity)
    peek_lock = int(body.get("receiver-settle-mode") or 0) != _RECEIVE_AND_DELETE
    now = engine.clock()
    messages = []
    for seq in _elements(body.get("sequence-numbers")):
        try:
            message = log.take_deferred(int(seq), now, peek_lock=peek_lock)
        except KeyError as exc:
            raise ManagementError(
                404, MESSAGE_NOT_FOUND, f"no deferred message with sequence number {seq}"
            ) from exc
        entry: dict[str, Any] = {"message": render(message)}
        if message.lock_token is not None:
            entry["lock-token"] = message.lock_token
        messages.append(entry)
    return 200, {"messages": messages}


def _schedule(engine: Engine, entity: str, body: dict[str, Any]) -> Reply:
    target = _send_target(engine, entity)
    numbers = []
    for item in _elements(body.get("messages")):
        raw = item.get("message") if isinstance(item, dict) else None
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise ManagementError(400, ARGUMENT_ERROR, "each scheduled message needs 'message'")
        try:
            parsed = parse_message(bytes(raw))
        except CodecError as exc:
            raise ManagementError(400, ARGUMENT_ERROR, str(exc)) from exc
        seq = engine.broker.enqueue(target, parsed)
        numbers.append(seq if seq is not None else 0)
    engine.consumers.pump(target.subscriptions.values() if isinstance(target, Topic) else [target])
    return 200, {"sequence-numbers": Array(_PLAIN, Data.LONG, *numbers)}


def _cancel_scheduled(engine: Engine, entity: str, body: dict[str, Any]) -> Reply:
    target = _send_target(engine, entity)
    for seq in _elements(body.get("sequence-numbers")):
        engine.broker.cancel_scheduled(target, int(seq))
    return 200, {}


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
}
