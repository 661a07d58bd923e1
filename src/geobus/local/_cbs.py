"""The ``$cbs`` node: claims-based security, where a connection earns its audiences.

A put-token request carries a SAS token as its amqp-value body, and ``operation``
and ``name`` (the audience it wants) as application properties. The reply goes
back on the connection's ``$cbs`` receiver link with ``status-code`` and
``status-description`` (the spellings azure-servicebus reads). A request that is
malformed gets an error status, never a closed connection; a token's signature
never reaches a log line or a reply.

As in Service Bus, a token must name this namespace: its audience (``sr``) is a
URL whose host is one of the namespace's own names (``own_hosts``), and a link
lives no longer than the tokens that let it attach: when the last token covering
its entity expires, the server detaches it (``expired_links``) with
``amqp:unauthorized-access``. The SDK puts a fresh token before that (at a tenth
of the token's lifetime before expiry), so its links never notice.

The port is not part of the check: a client re-addressed to a ``FaultProxy``
(``geobus.testing.proxied_connection_string``) names the proxy's port. Two
namespaces on one host are told apart by their keys (each has its own by
default).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from proton import Connection, Endpoint, Link, Message

from .._sas import SasTokenError, is_loopback, normal_host
from ._broker import BadAddress, entity_path

if TYPE_CHECKING:
    from ._amqp import Engine

CBS_NODE = "$cbs"
_SAS_PREFIX = "SharedAccessSignature "
_LOG = logging.getLogger("geobus.local")
# The schemes a Service Bus audience is written with: the SDK sends sb://.
_AUDIENCE_SCHEMES = frozenset({"sb", "amqp", "amqps", "http", "https"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


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


def own_hosts(host: str, hostnames: Iterable[str] = ()) -> frozenset[str]:
    """The host names a token's audience may name, for a namespace listening on ``host``.

    ``host`` itself and ``hostnames`` (other names clients use for it, such as a
    container's); for a loopback address, ``localhost`` and the loopback
    addresses too; for a wildcard address (``0.0.0.0``, ``::``), the loopback
    names and this machine's host name.
    """
    names = {normal_host(name) for name in hostnames}
    if host in _WILDCARDS:  # every address of this machine, but no name of its own
        names |= _LOOPBACK_NAMES | {normal_host(socket.gethostname())}
    else:
        names.add(normal_host(host))
    if is_loopback(host):
        names |= _LOOPBACK_NAMES
    return frozenset(names - {""})


def check_audience_host(audience: str, hosts: frozenset[str]) -> None:
    """Refuse an audience that is not a URL naming one of ``hosts``.

    Raises:
        SasTokenError: the audience is not an ``sb://host[:port]/...`` URL, or
            names another host (quoted: a host name is not a secret).
    """
    try:
        parts = urlsplit(audience)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise SasTokenError("the token audience (sr) is not a URL") from None
    host = normal_host(parts.hostname or "")
    if (
        parts.scheme.lower() not in _AUDIENCE_SCHEMES
        or not host
        or parts.username is not None
        or parts.query
        or parts.fragment
    ):
        raise SasTokenError("the token audience (sr) is not an sb://host/entity URL")
    if host not in hosts:
        shown = host if len(host) <= 100 else host[:100] + "..."
        raise SasTokenError(f"the token audience (sr) names host {shown!r}, not this namespace")


def expired_links(connection: Connection, now: float) -> list[Link]:
    """The entity and management links of ``connection`` that no token covers at ``now``.

    Cheap when nothing has expired: the links are only walked once the soonest
    expiry has passed; expired audiences are then forgotten.
    """
    audiences: dict[str, float] = connection.audiences
    if not audiences or min(audiences.values()) >= now:
        return []
    found: list[Link] = []
    link = connection.link_head(Endpoint.LOCAL_ACTIVE)
    while link is not None:
        path = getattr(link, "entity", None)
        if path is not None and not authorized(connection, path, now):
            found.append(link)
        link = link.next(Endpoint.LOCAL_ACTIVE)
    for audience in [a for a, expiry in audiences.items() if expiry < now]:
        del audiences[audience]
    return found


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
        check_audience_host(token.audience, engine.hosts)
        if name is not None and "://" in name:
            check_audience_host(name, engine.hosts)
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
