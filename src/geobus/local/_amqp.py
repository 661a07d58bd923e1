"""What the local namespace does with each AMQP event: the protocol, not the sockets.

``Engine.dispatch`` handles one proton event: connections, sessions and links
here, the messages on entity links in ``_deliveries``. The sockets, the faults
and the clock's turns belong to ``_server`` (one connection's bytes to
``_connection``); the messages' state belongs to the broker.
Everything here runs on the server's single loop thread.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from proton import Collector, Connection, Delivery, Event, Link, Message, Session, Transport

from .._sas import SasToken, validate_sas_token
from ._broker import BadAddress, Broker, EntityNotFound, Topic, entity_path
from ._cbs import CBS_NODE, authorized, handle_put_token
from ._codec import CodecError, parse_message, unpack_batch
from ._conditions import (
    DECODE_ERROR,
    INVALID_FIELD,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    RESOURCE_LIMIT_EXCEEDED,
    UNAUTHORIZED,
    error_condition,
)
from ._deliveries import Consumers, refuse_link, reject, session_filter, take_transfer
from ._entities import MessageLog
from ._limits import Limits
from ._sessions import SessionRequired

_LOG = logging.getLogger("geobus.local")

MANAGEMENT_SUFFIX = "/$management"
LINK_CREDIT = 200
_LINK_EVENTS = (Event.LINK_REMOTE_OPEN, Event.LINK_FLOW, Event.LINK_REMOTE_CLOSE)


class Engine:
    """The protocol half of one local namespace.

    ``hosts``: the host names a token's audience may name (``_cbs.own_hosts``).
    """

    def __init__(
        self,
        broker: Broker,
        *,
        key_name: str,
        key: str,
        hosts: frozenset[str],
        max_message_size: int,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.broker = broker
        self.key_name = key_name
        self._key = key
        self.hosts = hosts
        self.max_message_size = max_message_size
        self.limits = limits or Limits()
        self.clock = clock
        self.consumers = Consumers(clock)

    def validate_token(self, token: str) -> SasToken:
        """Check a SAS token against this namespace's key, now.

        Raises:
            SasTokenError: malformed, wrong key name, bad signature or expired.
        """
        return validate_sas_token(token, key_name=self.key_name, key=self._key, now=self.clock())

    # -- connections ---------------------------------------------------------

    def new_connection(self) -> tuple[Transport, Connection, Collector]:
        transport = Transport(Transport.SERVER)
        sasl = transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")
        # Advertised in the open frame: proton sends half of this as idle-time-out.
        transport.idle_timeout = self.limits.idle_timeout
        transport.channel_max = self.limits.max_links_per_connection - 1
        connection = Connection()
        collector = Collector()
        connection.collect(collector)
        transport.bind(connection)
        connection.audiences = {}
        connection.reply_links = {}
        connection.consumer_links = []
        # Links the peer attached and has not detached yet, refused ones included.
        connection.link_count = 0
        connection.to_free = []  # links and sessions closed at both ends (``free_closed``)
        return transport, connection, collector

    def connection_gone(self, connection: Connection) -> None:
        """Forget a connection's consumers. Its messages' locks stay until they expire,
        as in Service Bus."""
        for link in connection.consumer_links:
            self.consumers.remove(link)
        connection.consumer_links = []
        # The links here hold the connection, which holds this dict: a cycle through
        # proton's C objects that Python's collector cannot see.
        connection.reply_links = {}
        connection.to_free = []

    # -- events --------------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        # proton always sets the endpoint an event is about; the None checks tell mypy.
        kind = event.type
        if kind == Event.DELIVERY and (delivery := event.delivery) is not None:
            if delivery.link.is_receiver:
                self._incoming(delivery)
            elif delivery.updated:
                self.consumers.settled(delivery)
        elif kind in _LINK_EVENTS and (link := event.link) is not None:
            self._link_event(kind, link)
        elif kind == Event.SESSION_REMOTE_OPEN and (session := event.session) is not None:
            session.open()
        elif kind == Event.SESSION_REMOTE_CLOSE and (session := event.session) is not None:
            self._session_gone(session)
        elif kind == Event.CONNECTION_REMOTE_OPEN and (connection := event.connection) is not None:
            connection.container = "geobus-local"
            connection.open()
            if (transport := connection.transport) is not None:
                _advertise_idle_timeout_only(transport)
        elif kind == Event.CONNECTION_REMOTE_CLOSE and (connection := event.connection) is not None:
            self.connection_gone(connection)
            connection.close()

    def _link_event(self, kind: Any, link: Link) -> None:
        if kind == Event.LINK_REMOTE_OPEN:
            self._open_link(link)
        elif kind == Event.LINK_FLOW:
            if link.is_sender and getattr(link, "kind", None) == "entity":
                self.consumers.pump_link(link)
        else:
            self._link_gone(link)

    def _within_link_limit(self, link: Link) -> bool:
        """Count a new link; refuse it past the limit, close the connection past twice that."""
        connection = link.connection
        connection.link_count += 1
        most = self.limits.max_links_per_connection
        if connection.link_count <= most:
            return True
        if connection.link_count > 2 * most:
            # The peer ignores refusals, and each refused link it keeps attached still
            # holds memory here.
            connection.condition = error_condition(
                RESOURCE_LIMIT_EXCEEDED, f"more than {2 * most} links attached after refusals"
            )
            connection.close()
        else:
            self._refuse_link(
                link, RESOURCE_LIMIT_EXCEEDED, f"at most {most} links may be attached per connection"
            )
        return False

    def _link_gone(self, link: Link) -> None:
        """The peer detached ``link`` (or ended its session): detach it here, forget it, free it."""
        if getattr(link, "gone", False):
            return
        link.gone = True
        connection = link.connection
        connection.link_count -= 1
        self.consumers.remove(link)
        if link in connection.consumer_links:
            connection.consumer_links.remove(link)
        replies = connection.reply_links
        for address in [a for a, reply in replies.items() if reply == link]:
            del replies[address]
        if (current := link.current) is not None:
            current.buffer = None  # an unfinished transfer
        link.close()
        connection.to_free.append(link)

    def _session_gone(self, session: Session) -> None:
        # A peer may end a session without detaching its links first.
        link = session.connection.link_head(0)
        while link is not None:
            following = link.next(0)
            if link.session == session:
                self._link_gone(link)
            link = following
        session.close()
        session.connection.to_free.append(session)

    def free_closed(self, connection: Connection) -> None:
        """Free the links and sessions both ends have closed.

        Called once the connection's events are all handled: a later event about a
        freed link would find it gone. proton still sends the detach or end frame.
        """
        endpoints, connection.to_free = connection.to_free, []
        for endpoint in endpoints:
            endpoint.free()

    # -- links ---------------------------------------------------------------

    def _open_link(self, link: Link) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if not self._within_link_limit(link):
            return
        terminus = link.remote_target if link.is_receiver else link.remote_source
        try:
            address = terminus.address or ""  # proton decodes it as UTF-8
        except UnicodeDecodeError:
            self._refuse_link(link, INVALID_FIELD, "the link address is not valid UTF-8")
            return
        connection = link.connection
        if address == CBS_NODE:
            self._open_node(link, "cbs", address)
            return
        node = address[: -len(MANAGEMENT_SUFFIX)] if address.endswith(MANAGEMENT_SUFFIX) else None
        entity = node if node is not None else address
        try:
            path = entity_path(entity)
        except BadAddress as exc:
            self._refuse_link(link, INVALID_FIELD, str(exc))
            return
        if not authorized(connection, path, self.clock()):
            self._refuse_link(
                link,
                UNAUTHORIZED,
                f"no valid token for {path!r} on this connection (put-token on $cbs first)",
            )
            return
        if node is not None:
            self._open_node(link, "management", address)
            link.entity = path
            return
        wants_session, session_id = session_filter(link) if link.is_sender else (False, None)
        try:
            if link.is_receiver:
                link.send_target = self.broker.send_target(path)
            else:
                link.log = self.broker.receive_source(path)
        except EntityNotFound:
            self._refuse_link(link, NOT_FOUND, f"The messaging entity '{path}' could not be found.")
            return
        except BadAddress as exc:
            self._refuse_link(
                link, NOT_IMPLEMENTED if "send" in str(exc) else INVALID_FIELD, str(exc)
            )
            return
        if link.is_sender and link.log.requires_session != wants_session:
            self._refuse_link(link, NOT_ALLOWED, _SESSION_MISMATCH[wants_session])
            return
        link.kind = "entity"
        link.entity = path  # what its token must cover for as long as it is attached
        if wants_session:
            link.peek_lock = link.remote_snd_settle_mode != Link.SND_SETTLED
            connection.consumer_links.append(link)
            self.consumers.attach_session(link, session_id, self.limits.session_wait)
        elif link.is_receiver:
            link.max_message_size = self.max_message_size
            link.open()
            link.flow(LINK_CREDIT)
        else:
            link.peek_lock = link.remote_snd_settle_mode != Link.SND_SETTLED
            link.open()
            self.consumers.add(link)
            connection.consumer_links.append(link)
            self.consumers.pump_link(link)

    def _open_node(self, link: Link, kind: str, address: str) -> None:
        link.kind = kind
        if link.is_receiver:
            link.max_message_size = self._request_limit(link)
        link.open()
        if link.is_receiver:
            link.flow(LINK_CREDIT)
        else:
            replies = link.connection.reply_links
            replies[address.lower()] = link
            if link.remote_target.address:
                replies[link.remote_target.address.lower()] = link

    def _refuse_link(self, link: Link, condition: str, description: str) -> None:
        refuse_link(link, condition, description)

    # -- receiving from clients ------------------------------------------------

    def _incoming(self, delivery: Delivery) -> None:
        link = delivery.link
        payload = take_transfer(delivery, self._request_limit(link))
        if payload is None:
            return
        kind = getattr(link, "kind", None)
        try:
            if kind == "cbs":
                handle_put_token(self, link, payload)
            elif kind == "management":
                from ._management import handle_request

                handle_request(self, link, payload)
            elif kind == "entity":
                self._enqueue(link, payload)
            else:
                reject(delivery, NOT_FOUND, "the link is not attached to a node")
                return
        except CodecError as exc:
            reject(delivery, DECODE_ERROR, str(exc))
            return
        except SessionRequired as exc:
            reject(delivery, NOT_ALLOWED, str(exc))
            return
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        if link.credit < LINK_CREDIT // 2:
            link.flow(LINK_CREDIT - link.credit)

    def _request_limit(self, link: Link) -> int:
        """The most bytes one incoming delivery on ``link`` may have (its max-message-size)."""
        if getattr(link, "kind", None) == "cbs":
            return self.limits.max_cbs_request
        return self.max_message_size

    def _enqueue(self, link: Link, data: bytes) -> None:
        target: MessageLog | Topic = link.send_target
        inner = unpack_batch(data) or [data]
        parsed = [parse_message(m) for m in inner]
        for message in parsed:  # a batch is stored whole or not at all
            self.broker.check_session(target, message)
        for message in parsed:
            self.broker.enqueue(target, message)
        self.consumers.pump(target.subscriptions.values() if isinstance(target, Topic) else [target])

    def reply(
        self,
        connection: Connection,
        node: str,
        request: Message | None,
        properties: dict[str, Any],
        body: Any = None,
    ) -> None:
        """Send a request-response reply on the connection's reply link for ``node``.

        ``request`` is None when it could not be decoded: the reply is uncorrelated.
        """
        replies = connection.reply_links
        link = None
        reply_to = request.reply_to if request is not None else None
        if isinstance(reply_to, str) and reply_to:
            link = replies.get(reply_to.lower())
        link = link or replies.get(node.lower())
        if link is None:
            _LOG.debug("no reply link for %s; reply dropped", node)
            return
        correlation = request.id if request is not None else None
        response = Message(correlation_id=correlation, properties=properties, body=body)
        delivery = link.delivery(uuid.uuid4().hex)  # a tag is at most 32 bytes
        link.send(response.encode())
        link.advance()
        delivery.settle()


def _advertise_idle_timeout_only(transport: Transport) -> None:
    """Write the open frame now, with the idle-time-out it advertises, then turn off
    proton's own idle check.

    The server closes idle connections itself (``_limits``): proton's close frame
    carries no info map, which the SDK cannot read (see ``error_condition``).
    """
    transport.pending()
    transport.idle_timeout = 0


# A receiver's wish for a session that the entity does not match, as Service Bus words it.
_SESSION_MISMATCH = {
    False: "It is not possible for an entity that requires sessions to create a "
    "non-sessionful message receiver.",
    True: "A sessionful message receiver cannot be created on an entity that does not "
    "require sessions. Ensure RequiresSession is set to true when creating a Queue or "
    "Subscription to enable sessionful behavior.",
}
