"""The ``$cbs`` node: claims-based security, where a connection earns its audiences.

A put-token request carries a SAS token as its amqp-value body, and ``operation``
and ``name`` (the audience it wants) as application properties. The reply goes
back on the connection's ``$cbs`` receiver link with ``status-code`` and
``status-description`` (the spellings azure-servicebus reads). A request that is
malformed gets an error status, never a closed connection; a token's signature
never reaches a log line or a reply.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from proton import Connection, Link, Message

from .._sas import SasTokenError
from ._broker import BadAddress, entity_path

if TYPE_CHECKING:
    from ._amqp import Engine

CBS_NODE = "$cbs"
_SAS_PREFIX = "SharedAccessSignature "
_LOG = logging.getLogger("geobus.local")


def handle_put_token(engine: Engine, link: Link, data: bytes) -> None:
    """Answer the request in ``data``; on success the connection may use its audience."""
    request = Message()
    try:
        request.decode(data)
    except Exception as exc:  # proton's decode errors have no common type
        # The type only: proton's message may quote the client's bytes, a token among
        # them. With nothing to correlate, an uncorrelated 400 still answers the client.
        description = f"cannot decode the request: {type(exc).__name__}"
        engine.reply(link.connection, CBS_NODE, None, _status(400, description))
        return
    status, description = _put_token(engine, link.connection, request)
    engine.reply(link.connection, CBS_NODE, request, _status(status, description))


def authorized(connection: Connection, path: str, now: float) -> bool:
    """Whether a token put on ``connection`` and still valid at ``now`` covers ``path``."""
    for audience, expiry in connection.audiences.items():
        if expiry < now:
            continue
        if not audience or path == audience or path.startswith(audience + "/"):
            return True
    return False


def _put_token(engine: Engine, connection: Connection, request: Message) -> tuple[int, str]:
    props = request.properties
    if not isinstance(props, dict):
        return 400, "the put-token request has no application properties"
    if props.get("operation") != "put-token":
        return 400, "unknown $cbs operation"
    body, name = request.body, props.get("name")
    if not isinstance(body, str) or not (name is None or isinstance(name, str)):
        return 400, "the put-token request's token or name is not a string"
    if not body.startswith(_SAS_PREFIX):
        # The SDK labels SAS tokens "jwt" too, so the body decides, not the type.
        return 401, "the local namespace accepts SAS tokens only"
    try:
        token = engine.validate_token(body)
        audience = _audience_path(token.audience)
        wanted = _audience_path(name or token.audience)
        if audience and wanted != audience and not wanted.startswith(audience + "/"):
            raise SasTokenError("token audience does not cover the requested name")
    except SasTokenError as exc:  # its messages never quote the token
        _LOG.warning("put-token refused: %s", exc)
        return 401, f"InvalidSignature: {exc}"
    connection.audiences[wanted] = token.expiry
    return 200, "OK"


def _audience_path(audience: str) -> str:
    try:
        return entity_path(audience)
    except BadAddress:
        return ""  # the namespace itself: covers every entity


def _status(status: int, description: str) -> dict[str, Any]:
    return {"status-code": status, "status-description": description}
