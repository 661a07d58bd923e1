"""The local namespace's sockets: one selector loop on one thread, and its faults.

The loop owns the selector and the set of connections. The listening socket is
``_listener.Listener``'s, the calls other threads hand the loop ``_inbox.Inbox``'s,
and what one connection does with its bytes and events ``_connection.Conn``'s.

Owning the sockets is what makes faults exact. ``refuse`` stops listening (the port
stays bound, so ``heal`` gets it back) and resets open connections; ``black_hole``
keeps accepting but neither reads nor writes (new and open connections alike);
``freeze`` stops all I/O and the clock's work, as SIGSTOP would; ``latency``
holds every inbound chunk, and the peer's end of stream, for that long before the
protocol sees it; ``drop`` resets every open connection once.

Every change of broker state is written to the store before the bytes that
acknowledge it are written to a socket. A store that cannot be written stops the
loop: its connections are closed without sending what that turn answered (so no
unsaved transfer is ever accepted), ``failure`` holds the error and
``on_failure`` is called.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from proton import Endpoint

from ._admin_http import AdminHttp, is_http
from ._amqp import Engine
from ._broker import DEAD_LETTER_SUFFIX, Broker
from ._cbs import expired_links
from ._conditions import NOT_FOUND, UNAUTHORIZED, error_condition
from ._connection import Conn
from ._inbox import WAKE, Inbox
from ._limits import CLOSE_GRACE, next_deadline, oldest_unauthorised, overdue, restart_clocks
from ._listener import LISTENER, Listener
from ._sockets import KeptPort, arm_reset
from ._store import StoreWriteError

_LOG = logging.getLogger("geobus.local")
_T = TypeVar("_T")


class Store(Protocol):
    def save(self, broker: Broker, changes: Any, seqs: dict[str, int]) -> None: ...


class Fault(enum.Enum):
    """What the namespace is doing to its clients."""

    NONE = "none"
    REFUSE = "refuse"
    BLACK_HOLE = "black_hole"
    FREEZE = "freeze"


# Faults that stop the server reading: its limits' clocks stand still meanwhile.
_SILENT = (Fault.BLACK_HOLE, Fault.FREEZE)


class Server:
    """Runs one namespace's listener and connections on a private thread."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        host: str,
        port: int,
        *,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.fault = Fault.NONE
        self.latency = 0.0
        self._selector = selectors.DefaultSelector()
        # The port is kept through ``refuse`` (0 until started, when any free one was asked for).
        self.address = KeptPort(host, port)
        self._listener = Listener(self._selector, self.address)
        self._conns: set[Conn] = set()
        self._inbox = Inbox(self._selector)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._full = False  # at max_connections with no one to give way: logged once
        # Why the loop ended by itself; None while it runs or once ``stop`` ended it.
        self.failure: BaseException | None = None
        self._on_failure = on_failure
        # The administration API's connections (``_admin_http``), once the namespace sets it.
        self.admin: AdminHttp | None = None
        self._failed_save: StoreWriteError | None = None
        self._fault_changed = threading.Condition()

    # -- lifecycle (any thread) ----------------------------------------------------

    def start(self) -> None:
        self._listener.listen()
        self._watch_listener()
        self._thread = threading.Thread(
            target=self._run, name=f"geobus-local-{self.address.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping = True
        with self._fault_changed:
            self._fault_changed.notify_all()
        if self.admin is not None:
            self.admin.stop()
        self._inbox.wake()
        self._thread.join(timeout=10)
        self._thread = None

    def call(self, fn: Callable[[], _T], timeout: float = 10.0) -> _T:
        """Run ``fn`` on the loop thread and return its result.

        Raises RuntimeError at once if the loop has ended without ``stop`` (a bug),
        rather than waiting ``timeout`` for a loop that will never answer.
        """
        if self._thread is None or threading.current_thread() is self._thread:
            return fn()
        return self._inbox.call(fn, timeout)

    def call_saved(self, fn: Callable[[], _T], timeout: float = 10.0) -> _T:
        """``call``, and save what ``fn`` changed before returning: a caller that
        acknowledges the change (the administration API) never acknowledges what a
        restart would lose.

        Raises:
            RuntimeError: the store could not be written (the loop then stops, as
                for any failed save), or the loop is not running.
        """

        def run() -> _T:
            result = fn()
            try:
                self._save()
            except StoreWriteError as exc:
                self._failed_save = exc  # the loop stops after this round of calls
                raise RuntimeError("the local namespace's store could not be written") from None
            return result

        return self.call(run, timeout)

    # -- faults (loop thread) ------------------------------------------------------

    def set_fault(self, fault: Fault) -> None:
        """Apply ``fault``; applying the current fault again changes nothing.

        Raises OSError when leaving ``REFUSE`` cannot listen again; the fault stays.
        """
        if fault == Fault.REFUSE:
            self.drop_connections()
            if self.fault != Fault.REFUSE:
                self._listener.refuse()
        elif self.fault == Fault.REFUSE:
            self._listener.listen()
        if self.fault in _SILENT and fault not in _SILENT:
            # The server read nothing during the fault: that silence is not the clients'.
            restart_clocks(self._conns, self.engine.limits, time.monotonic())
        self.fault = fault
        with self._fault_changed:
            self._fault_changed.notify_all()
        self._watch_listener()
        for conn in list(self._conns):
            self._update_interest(conn)

    def drop_connections(self) -> int:
        conns = list(self._conns)
        for conn in conns:
            self._reset(conn)
        return len(conns) + (self.admin.drop() if self.admin is not None else 0)

    def wait_until_answering(self, timeout: float) -> bool:
        """Block (any thread but the loop's) while a fault keeps the namespace silent;
        False if it is stopping, or still silent after ``timeout`` seconds."""
        with self._fault_changed:
            self._fault_changed.wait_for(lambda: self._stopping or self.fault not in _SILENT, timeout)
            return not self._stopping and self.fault not in _SILENT

    def _detach_deleted(self) -> None:
        """Detach the links of entities the administration API deleted, as Service Bus does."""
        paths, self.engine.broker.admin.detach_paths = self.engine.broker.admin.detach_paths, []
        gone = {owned for path in paths for owned in (path, path + DEAD_LETTER_SUFFIX)}
        self._detach(
            lambda link: getattr(link, "entity", None) in gone,
            NOT_FOUND,
            lambda link: f"The messaging entity '{link.entity}' could not be found.",
        )

    def detach_links(self, condition: str, description: str) -> int:
        return self._detach(lambda _link: True, condition, lambda _link: description)

    def _detach(
        self, chosen: Callable[[Any], bool], condition: str, description: Callable[[Any], str]
    ) -> int:
        """Detach every entity link ``chosen`` picks, with ``condition``; how many."""
        count = 0
        for conn in list(self._conns):
            link = conn.connection.link_head(Endpoint.LOCAL_ACTIVE)
            while link is not None:
                following = link.next(Endpoint.LOCAL_ACTIVE)
                if getattr(link, "kind", None) == "entity" and chosen(link):
                    link.condition = error_condition(condition, description(link))
                    link.close()
                    count += 1
                link = following
        return count

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._selector.select(self._timeout()):
                    if key.data == WAKE:
                        self._inbox.woken()
                    elif key.data == LISTENER:
                        self._accept()
                    else:
                        conn: Conn = key.data
                        if mask & selectors.EVENT_READ:
                            self._read(conn)
                        if mask & selectors.EVENT_WRITE:
                            conn.want_write = False
                self._inbox.run_all()
                if self._failed_save is not None:
                    raise self._failed_save
                self._turn()
        except StoreWriteError as exc:
            # Not a bug: the disk is full, say. Serving on would acknowledge what is not
            # saved, so stop; the sockets close below without sending this turn's answers.
            self.failure = exc
            _LOG.error("local namespace %s:%s stopped: %s", self.address.host, self.address.port, exc)
        except Exception as exc:  # pragma: no cover - a bug; keep the traceback visible
            self.failure = exc
            _LOG.exception("local namespace loop crashed")
            raise
        finally:
            if self.failure is None:
                self._inbox.close("the local namespace's loop is not running", None)
            else:
                self._inbox.close(f"the local namespace stopped: {self.failure}", self.failure)
            for conn in list(self._conns):
                self._close(conn)
            self._listener.close()
            self._selector.close()
            if self.failure is not None and self._on_failure is not None:
                self._on_failure(self.failure)

    def _timeout(self) -> float:
        now = time.monotonic()
        deadlines = [now + 0.5]
        if self._listener.backoff.resume_at:
            deadlines.append(self._listener.backoff.resume_at)
        if self.fault != Fault.FREEZE:
            deadline = self.engine.broker.next_deadline()
            if deadline is not None:
                deadlines.append(now + max(0.0, deadline - self.engine.clock()))
            for conn in self._conns:
                if conn.inbound:
                    deadlines.append(conn.inbound[0][0])
                if conn.next_tick:
                    deadlines.append(conn.next_tick)
                if self.fault != Fault.BLACK_HOLE:
                    deadlines.append(next_deadline(conn, self.engine.limits))
        return max(0.0, min(deadlines) - now)

    def _turn(self) -> None:
        """Feed delayed input, run the clock's work and every event, persist, write."""
        if self.fault == Fault.FREEZE:
            return
        now = time.monotonic()
        for conn in list(self._conns):
            while conn.inbound and conn.inbound[0][0] <= now and not conn.closed:
                data = conn.inbound.popleft()[1]
                if data:  # b"" is the end of stream: _write closes once the answers are out
                    conn.push(data)
                    self._update_interest(conn)  # the transport may have refused it
        if self.engine.broker.next_deadline() is not None:
            self.engine.consumers.pump(self.engine.broker.tick())
        self._revoke_expired_tokens()
        if self.engine.broker.admin.detach_paths:
            self._detach_deleted()
        self._dispatch_all()
        if self.fault != Fault.BLACK_HOLE:
            self._enforce_limits(time.monotonic())
        self._watch_listener()  # a pause in accepting may have run out
        self._save()
        if self.fault == Fault.BLACK_HOLE:
            return
        for conn in list(self._conns):
            self._write(conn)

    def _save(self) -> None:
        changes, seqs = self.engine.broker.take_changes()
        self.store.save(self.engine.broker, changes, seqs)

    def _revoke_expired_tokens(self) -> None:
        """Detach every link whose token has expired, as Service Bus does."""
        now = self.engine.clock()
        for conn in self._conns:
            for link in expired_links(conn.connection, now):
                link.condition = error_condition(
                    UNAUTHORIZED, "the token for this link's entity has expired (put a new one on $cbs)"
                )
                link.close()

    def _enforce_limits(self, now: float) -> None:
        """Close connections that overstayed their handshake or idle time (``_limits``)."""
        for conn in list(self._conns):
            if conn.authorise_by and conn.connection.audiences:
                conn.authorise_by = 0.0
            if conn.close_by:
                if now >= conn.close_by:
                    self._reset(conn)  # it did not take its close frame in time
            elif conn.connection.state & Endpoint.LOCAL_CLOSED:
                conn.close_by = now + CLOSE_GRACE  # closed here: the peer has a grace to answer
            elif (why := overdue(conn, self.engine.limits, now)) is not None:
                self._close_for(conn, *why)
                conn.close_by = now + CLOSE_GRACE

    def _close_for(self, conn: Conn, condition: str, description: str) -> None:
        _LOG.debug("closing a connection: %s", description)
        connection = conn.connection
        if connection.state & Endpoint.REMOTE_ACTIVE:
            connection.condition = error_condition(condition, description)
            connection.close()
        else:
            self._close(conn)  # no AMQP connection to close: the socket is all there is

    def _dispatch_all(self) -> None:
        # A delivery on one connection can pump messages onto another's link, so go
        # round until no collector has events left.
        for _ in range(1000):
            busy = False
            for conn in list(self._conns):
                conn.tick(time.monotonic())
                if conn.dispatch(self.engine):
                    busy = True
            if not busy:
                return

    # -- sockets -----------------------------------------------------------------

    def _watch_listener(self) -> None:
        self._listener.watch(frozen=self.fault == Fault.FREEZE)

    def _accept(self) -> None:
        while True:
            try:
                sock = self._listener.accept()
            except OSError as exc:  # out of descriptors
                self._out_of_descriptors(exc)
                if self._listener.backoff.resume_at:
                    return
                continue
            if sock is None:
                return
            self._serve(sock)

    def _out_of_descriptors(self, exc: OSError) -> None:
        """Free a descriptor, or stop accepting for a while: the listener stays readable,
        and retrying at once would spin."""
        victim = oldest_unauthorised(self._conns)
        if victim is not None:
            self._reset(victim)  # its descriptor is the next client's
            return
        if not self._listener.backoff.resume_at:
            _LOG.warning("cannot accept connections (%s): retrying when one closes", exc.strerror)
        self._listener.backoff.failed(time.monotonic())
        self._watch_listener()

    def _serve(self, sock: socket.socket) -> None:
        limits = self.engine.limits
        if len(self._conns) >= limits.max_connections:
            victim = oldest_unauthorised(self._conns)
            if victim is None:
                if not self._full:
                    _LOG.warning(
                        "%s connections, the most allowed: closing new ones until one closes",
                        limits.max_connections,
                    )
                    self._full = True
                sock.close()
                return
            self._reset(victim)
        self._full = False
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport, connection, collector = self.engine.new_connection()
        conn = Conn(sock, transport, connection, collector)
        now = time.monotonic()
        conn.next_tick = conn.last_input = now
        conn.authorise_by = now + limits.handshake_timeout
        self._conns.add(conn)
        self._update_interest(conn)

    def _update_interest(self, conn: Conn) -> None:
        if conn.closed:
            return
        wanted = 0
        if self.fault not in _SILENT:
            read = 0 if conn.input_done else selectors.EVENT_READ
            wanted = read | (selectors.EVENT_WRITE if conn.want_write else 0)
        if wanted == conn.registered:
            return
        if conn.registered and wanted:
            self._selector.modify(conn.sock, wanted, conn)
        elif conn.registered:
            self._selector.unregister(conn.sock)
        else:
            self._selector.register(conn.sock, wanted, conn)
        conn.registered = wanted

    def _read(self, conn: Conn) -> None:
        if not conn.sniffed:
            try:
                first = conn.sock.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                first = b""
            conn.sniffed = True
            if first and self.admin is not None and is_http(first[0]):
                self._hand_over(conn, first[0])
                return
        conn.read(self.latency)
        self._update_interest(conn)  # the end of stream stops reading

    def _write(self, conn: Conn) -> None:
        if conn.closed:
            return
        if conn.flush() and not conn.finished:
            self._update_interest(conn)
        else:
            self._close(conn)  # the socket or the transport failed, or every answer is out

    def _hand_over(self, conn: Conn, first: int) -> None:
        """Give an HTTP or TLS connection to the administration API's threads."""
        assert self.admin is not None
        if conn.registered:
            self._selector.unregister(conn.sock)
            conn.registered = 0
        conn.closed = True
        self._conns.discard(conn)
        self.engine.connection_gone(conn.connection)
        with contextlib.suppress(Exception):
            conn.transport.unbind()
        self.admin.serve(conn.sock, first)

    def _reset(self, conn: Conn) -> None:
        arm_reset(conn.sock)
        self._close(conn)

    def _close(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.registered:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        conn.sock.close()
        conn.inbound.clear()
        self._conns.discard(conn)
        if self._listener.backoff.resume_at:  # a descriptor is free: accept again now
            self._listener.backoff.clear()
            self._watch_listener()
        self.engine.connection_gone(conn.connection)
        with contextlib.suppress(Exception):
            conn.transport.unbind()
