"""The sync sender's passive sends on the caller's thread, through the sync SDK, under a watchdog.

Run through the private loop, a sync send pays two thread hand-offs and the async
SDK, which costs more per call than the sync one: measured on loopback, 2 cores,
~430 µs of CPU per message against ~220 for the plain sync SDK. In the common
case — passive mode, the active namespace clear, nothing waiting in the outbox,
no session to number — the fast lane sends instead from the calling thread, with
a sync SDK sender of that thread's own (the sync SDK's handlers are not
thread-safe), under the client's ``Watchdog``, which shuts the sender's socket
down if the call outlasts its share of the deadline (the sync SDK alone can
block forever on a black-holed namespace). What it needs of the core it asks
without waiting (``ReplicatedSender._direct_target``, ``_landed_directly``).

Anything else goes through the loop as before, with the same logic and nothing
copied: a send the fast lane may not make, and a send whose direct try failed —
the core then records that failure as its own (``_send_after``) and goes on from
there (the other namespace, the outbox) within the time left. So every guarantee
of the loop path holds: the deadline, failover, the breakers, the outbox order.

A namespace whose calls the watchdog cannot bound (a transport other than plain
AMQP over TCP; an azure-identity credential, whose token calls are HTTP inside a
send) is never sent to directly. A thread's link is opened after its second
send (a sender made per message never opens one); a thread that ended has its
links closed when another opens one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from azure.servicebus import ServiceBusClient, ServiceBusSender, TransportType
from azure.servicebus.exceptions import MessageSizeExceededError, OperationTimeoutError

from .._config import NamespaceConfig, ReplicationConfig
from .._decisions.session_stamps import SessionStamper, session_of
from .._engine import sender as core
from .._engine.channels import client_options
from .._engine.payload import payload
from .._errors import NamespaceTimeoutError
from .._models import SendResult
from .portal import Portal
from .watchdog import TICK, Watchdog

_LOG = logging.getLogger("geobus")
SMALLEST_REST = 0.001  # seconds: the least a failed direct try leaves the loop path (its own checks run)
MARGIN = 3 * TICK  # seconds a direct try ends before the deadline: the watchdog may cut a TICK late, twice
CLOSE_TIMEOUT = 5.0  # seconds ``FastLane.close`` waits for its channels to close
# Seconds: an error this quick is taken for a stale link (a reset meets the SDK's next write,
# or its next read, within its socket timeout, 0.2 s by default), not for the namespace's.
QUICK_FAILURE = 0.5


class SyncChannel(Protocol):
    """One thread's sender to one namespace: the fast lane's seam with the sync SDK.

    ``ready``: its link is open (``open`` succeeded). ``usable``: False once its open
    failed or a call was cut off; the lane then opens another.
    """

    name: str
    ready: bool
    usable: bool

    def open(self, seconds: float) -> None:
        """Open the link within ``seconds``; ``ready`` or not ``usable`` after. Never raises."""
        ...

    def send(self, payload: Any, seconds: float) -> None:
        """Send within ``seconds``. Raises ``NamespaceTimeoutError`` when cut off, else the SDK's error."""
        ...

    def close(self) -> None: ...


class SdkSyncChannel:
    """A sync SDK sender whose every call runs under the watchdog (see the module)."""

    def __init__(self, name: str, sender: ServiceBusSender, watchdog: Watchdog) -> None:
        self.name = name
        self.ready = False
        self.usable = True
        self._sender = sender
        self._watchdog = watchdog

    def open(self, seconds: float) -> None:
        opened = cut = False
        try:
            watch = self._watchdog.arm(seconds, self._cut)
            try:
                self._sender.__enter__()
                # The watchdog's hold on this link rests on reaching its socket: an SDK that
                # hid it gets no fast lane.
                opened = socket_of(self._sender) is not None
            finally:
                cut = self._watchdog.disarm(watch)
        except Exception as exc:
            _LOG.debug("geobus: a sync sender to %s did not open: %s", self.name, type(exc).__name__)
        self.ready = self.usable = opened and not cut

    def send(self, payload: Any, seconds: float) -> None:
        # The SDK's own timeout bounds a call on an open link; the watchdog, a TICK later,
        # everything else (the first open's SASL exchange, which no SDK knob bounds).
        watch = self._watchdog.arm(seconds + TICK, self._cut)
        cut = False
        try:
            self._sender.send_messages(payload, timeout=seconds)
        except Exception as exc:
            cut = self._watchdog.disarm(watch)
            if cut:
                raise NamespaceTimeoutError(self.name, seconds) from exc
            raise
        finally:
            cut = cut or self._watchdog.disarm(watch)
            if cut:
                self.usable = False  # cut off (also if it landed as it was): its connection is gone

    def _cut(self) -> bool:
        sock = socket_of(self._sender)
        if sock is None:
            return False  # still connecting (bounded by the transport's connect timeout)
        with contextlib.suppress(OSError):  # closed already
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        return True

    def close(self) -> None:
        """Close the sender, its socket shut first if it is still busy (a call or an open cut
        off, blocked holding the SDK's socket lock): never waits on a dead connection."""
        if not self.ready:
            self._cut()
        try:
            self._sender.close()
        except Exception as exc:  # a connection cut off: nothing more to do with it
            _LOG.debug("closing a sync sender of %s failed: %r", self.name, exc)


def socket_of(sender: ServiceBusSender) -> socket.socket | None:
    """The TCP socket under a sync SDK sender's connection; None before it connected."""
    handler = getattr(sender, "_handler", None)
    transport = getattr(getattr(handler, "_connection", None), "_transport", None)
    sock = getattr(transport, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _NoSessions(SessionStamper):
    """Payload checks without numbering: a session's message is the loop's to send."""

    def stamp(self, message: Any) -> None:
        if session_of(message) is not None:
            raise _SessionMessage


class _SessionMessage(Exception):
    pass


class SyncClients:
    """Each namespace's sync SDK client, opened on first use; None for one the watchdog cannot
    bound (see the module). Thread-safe."""

    def __init__(self, config: ReplicationConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._clients: dict[str, ServiceBusClient | None] = {}
        self.watchdog = Watchdog()

    def sender_opener(self, entity: dict[str, str], options: dict[str, Any]) -> Callable[[str], SyncChannel | None]:
        """Opens one sync sender to ``entity`` (``{"queue": name}`` or ``{"topic": name}``) with
        the SDK sender ``options``, on the namespace named; None where there is no fast lane."""

        def open_channel(name: str) -> SyncChannel | None:
            with self._lock:
                client = self._client(name)
                if client is None:
                    return None
                if "queue" in entity:
                    sender = client.get_queue_sender(entity["queue"], **options)
                else:
                    sender = client.get_topic_sender(entity["topic"], **options)
            return SdkSyncChannel(name, sender, self.watchdog)

        return open_channel

    def _client(self, name: str) -> ServiceBusClient | None:
        if name not in self._clients:
            namespace = next(ns for ns in self._config.namespaces if ns.name == name)
            self._clients[name] = _build(namespace, self._config)
        return self._clients[name]

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            if client is not None:
                try:
                    client.close()
                except Exception as exc:
                    _LOG.debug("closing a sync client failed: %r", exc)
        self.watchdog.close()


def _build(namespace: NamespaceConfig, config: ReplicationConfig) -> ServiceBusClient | None:
    """A sync client for the fast lane, or None where the watchdog could not bound its calls:
    a transport other than AMQP over TCP, or an azure-identity credential (the sync SDK asks it
    for a token inside a send, an HTTP call that shutting the AMQP socket does not stop). No
    SDK retries: a second open after a cut one would block with no watch on it; the loop path
    is the retry."""
    options = {**client_options(namespace, config.retry, config.deadlines.attempt), "retry_total": 0}
    if options.get("transport_type", TransportType.Amqp) != TransportType.Amqp or options.get("http_proxy"):
        return None
    if namespace.connection_string is None:
        return None
    return ServiceBusClient.from_connection_string(namespace.connection_string, **options)


class FastLane:
    """One sync ``ReplicatedSender``'s direct sends (see the module). Thread-safe."""

    def __init__(self, sender: core.ReplicatedSender, portal: Portal, open_channel: Callable[[str], SyncChannel | None]) -> None:
        self._core = sender
        self._portal = portal
        self._open = open_channel
        self._local = threading.local()  # this thread's channels, by namespace
        self._lock = threading.Lock()
        self._opened: dict[SyncChannel, threading.Thread] = {}  # every thread's channels, by owner
        self._stamper = _NoSessions()
        self._closed = False
        self.direct = 0  # sends that landed straight from a caller's thread (approximate across threads)

    def send(self, message: Any, timeout: float | None) -> SendResult:
        """``ReplicatedSender.send_messages``: directly when it may, otherwise through the loop."""
        seconds = self._core.deadlines.send if timeout is None else timeout
        # The direct try ends before the deadline, its watchdog's lateness included; the loop
        # path has the rest (at least that margin) should it fail.
        budget = min(self._core.deadlines.attempt, seconds - MARGIN)
        name = None if self._closed or budget <= MARGIN else self._core._direct_target()
        channel = self._channel(name) if name is not None else None
        sent: Any = None
        if channel is not None:
            try:
                sent, messages = payload(message, self._stamper)
            except _SessionMessage:
                channel = None
        if channel is None:
            return self._portal.run(self._core.send_messages(message, timeout=timeout))
        if not messages:
            return SendResult(landed=(), missed={})
        started = time.monotonic()
        try:
            channel.send(sent, budget)
        except Exception as exc:
            failed: Exception | None = exc
        else:
            failed = None
        if not channel.usable or (failed is not None and not isinstance(failed, MessageSizeExceededError)):
            self._forget(channel)
        if failed is None:
            self.direct += 1
            result, tell = self._core._landed_directly(channel.name, len(messages))
            if tell:
                self._portal.call_soon(self._core._after_direct, channel.name)
            return result
        took = time.monotonic() - started
        rest = max(seconds - took, SMALLEST_REST)
        if took < QUICK_FAILURE and not isinstance(failed, (NamespaceTimeoutError, OperationTimeoutError)):
            # A quick error may be this thread's link alone (reset while it was idle): the loop
            # tries the namespace on its own link before it fails over, and judges the error as
            # it would have (the message's fault raised, an outage counted).
            return self._portal.run(self._core.send_messages(message, timeout=rest))
        # It did not answer in time, or failed slowly: that namespace's failure, not to be waited
        # out twice (the other namespace must have the time left).
        return self._portal.run(self._core._send_after(message, {channel.name: failed}, timeout=rest))

    def _channel(self, name: str) -> SyncChannel | None:
        """This thread's open channel to ``name``; None while there is none (the send goes
        through the loop, whose links are warm). One is opened aside at this thread's second
        send there, so that no send waits for a link of its own to open (on a namespace slow
        to answer, several round trips), and a sender made per message opens none."""
        local = self._local
        if not hasattr(local, "channels"):
            local.channels, local.sends = {}, {}
        channel: SyncChannel | None = local.channels.get(name)
        if channel is None:
            local.sends[name] = local.sends.get(name, 0) + 1
            if name not in local.channels and local.sends[name] >= 2:
                self._start_opening(name)
            return None
        if not channel.ready:
            if not channel.usable:
                self._forget(channel)  # its open failed: a later send tries again
            return None
        return channel

    def _start_opening(self, name: str) -> None:
        try:
            channel = self._open(name)
        except Exception as exc:  # a client the fast lane cannot build: the loop sends
            _LOG.debug("geobus: no fast lane to %s (%s)", name, type(exc).__name__)
            channel = None
        self._local.channels[name] = channel
        if channel is None:
            return
        me = threading.current_thread()
        with self._lock:
            ended = [c for c, owner in self._opened.items() if not owner.is_alive()]
            for gone in ended:
                del self._opened[gone]
            self._opened[channel] = me
        for gone in ended:  # the links of threads that ended: nobody sends on them again
            _close_aside(gone)
        seconds = self._core.deadlines.attempt
        threading.Thread(target=channel.open, args=(seconds,), name="geobus-open", daemon=True).start()

    def _forget(self, channel: SyncChannel) -> None:
        """Drop this thread's ``channel`` (a later send opens another) and close it aside:
        closing a connection that was cut off must not hold the caller up."""
        self._local.channels.pop(channel.name, None)
        with self._lock:
            self._opened.pop(channel, None)
        _close_aside(channel)

    def close(self) -> None:
        """Close every thread's channels, each aside (bounded: ``CLOSE_TIMEOUT`` in all). Safe
        to call twice."""
        with self._lock:
            self._closed = True
            channels, self._opened = list(self._opened), {}
        closing = [_close_aside(channel) for channel in channels]
        deadline = time.monotonic() + CLOSE_TIMEOUT
        for thread in closing:
            thread.join(max(0.0, deadline - time.monotonic()))


def _close_aside(channel: SyncChannel) -> threading.Thread:
    thread = threading.Thread(target=channel.close, name="geobus-close", daemon=True)
    thread.start()
    return thread
