"""The administration API on the namespace's own port: HTTP and HTTPS beside AMQP.

A ``ServiceBusAdministrationClient`` built from the connection string the namespace
prints dials the same host and port as the ``ServiceBusClient`` (the SDK keeps the
port of an emulator's connection string). The server's loop tells the protocols apart
by a connection's first byte (``is_http``): ``A`` opens AMQP, an HTTP method's first
letter opens HTTP, ``0x16`` a TLS handshake (the 7.15 administration client always
speaks HTTPS: ``_tls``). An HTTP connection then leaves the loop for a thread of its
own here, which parses requests with the standard library and runs each on the loop
(``Server.call``), where the broker lives; the loop never blocks on one.

Requests are authorised as the AMQP side is: a SAS token in ``Authorization`` signed
with the namespace's key, naming one of its hosts, covering the entity. Faults apply:
``refuse`` and ``drop`` reset admin connections, ``black_hole`` and ``freeze`` hold
every answer until healed, ``latency`` delays each request.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from .._redact import redact
from .._sas import SasTokenError
from ._admin_api import AdminApi, Response
from ._admin_api_request import error_response
from ._admin_model import AdminError
from ._cbs import check_audience_host
from ._sockets import arm_reset

_LOG = logging.getLogger("geobus.local")
_T = TypeVar("_T")

_HTTP_FIRST = frozenset(b"GPDHOT")  # GET PUT POST DELETE HEAD OPTIONS TRACE PATCH
_TLS_HANDSHAKE = 0x16
_MAX_BODY = 1024 * 1024
_MAX_CONNECTIONS = 32
_IDLE_TIMEOUT = 60.0
_STOP_TIMEOUT = 5.0  # for all of them together: each was reset, so each ends at once
_XML = "application/xml; charset=utf-8"


def is_http(first: int) -> bool:
    """Whether a connection whose first byte is ``first`` speaks HTTP or TLS, not AMQP."""
    return first in _HTTP_FIRST or first == _TLS_HANDSHAKE


class AdminHttp:
    """Serves the administration API on connections the loop hands over.

    ``run`` executes a call on the namespace's loop and saves what it changed;
    ``validate`` checks a SAS token (raising ``SasTokenError``); ``hosts`` are the
    namespace's own names; ``wait_until_answering`` blocks while a fault keeps the
    namespace silent (False: it is stopping, or still silent); ``latency`` is the
    delay in force; ``tls`` gives the server's TLS context, and a TLS handshake must
    be done within ``handshake_timeout`` seconds (``Limits.handshake_timeout``, as an
    AMQP connection must authorise in it). Thread-safe.
    """

    def __init__(
        self,
        api: AdminApi,
        *,
        run: Callable[[Callable[[], Any]], Any],
        validate: Callable[[str], Any],
        hosts: frozenset[str],
        wait_until_answering: Callable[[float], bool],
        latency: Callable[[], float],
        tls: Callable[[], ssl.SSLContext],
        handshake_timeout: float,
    ) -> None:
        self.api = api
        self._run = run
        self._validate = validate
        self._hosts = hosts
        self._wait = wait_until_answering
        self._latency = latency
        self._tls = tls
        self._handshake_timeout = handshake_timeout
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = False

    def serve(self, sock: socket.socket, first: int) -> None:
        """Take over ``sock`` (its first byte peeked, not read) on a thread of its own."""
        with self._lock:
            if self._stopping or len(self._sockets) >= _MAX_CONNECTIONS:
                arm_reset(sock)
                sock.close()
                return
            self._sockets.add(sock)
            thread = threading.Thread(
                target=self._connection, args=(sock, first), name="geobus-local-admin", daemon=True
            )
            self._threads.add(thread)
        thread.start()

    def drop(self) -> int:
        """Reset every admin connection (``refuse``, ``drop``)."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                arm_reset(sock)
                sock.shutdown(socket.SHUT_RDWR)
        return len(sockets)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            threads = list(self._threads)
        self.drop()
        deadline = time.monotonic() + _STOP_TIMEOUT
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _connection(self, sock: socket.socket, first: int) -> None:
        stream: socket.socket = sock
        try:
            sock.setblocking(True)
            sock.settimeout(_IDLE_TIMEOUT)
            peer = sock.getpeername()
            if first == _TLS_HANDSHAKE:
                # The TLS socket takes over the descriptor: ``drop`` must reach it, also
                # during a handshake that a client leaves half done.
                stream = self._tls().wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                with self._lock:
                    self._sockets.discard(sock)
                    self._sockets.add(stream)
                stream.settimeout(self._handshake_timeout)
                stream.do_handshake()
                stream.settimeout(_IDLE_TIMEOUT)
            _Handler(stream, peer, self)
        except (OSError, ssl.SSLError, ValueError) as exc:
            _LOG.debug("admin connection ended: %s", type(exc).__name__)
        finally:
            with contextlib.suppress(OSError):
                stream.close()
            with self._lock:
                self._sockets.discard(sock)
                self._sockets.discard(stream)
                self._threads.discard(threading.current_thread())

    # -- one request (a handler's thread) ----------------------------------------

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response | None:
        """The response to one request, or None when the namespace stopped meanwhile."""
        latency = self._latency()
        if latency > 0:
            time.sleep(latency)  # the fault being emulated: the network holds the request
        if not self._wait(_IDLE_TIMEOUT):
            return None
        problem = self._unauthorised(target, headers.get("authorization", ""))
        if problem is not None:
            return _error(401, problem)
        try:
            response: Response = self._run(lambda: self.api.handle(method, target, headers, body))
        except RuntimeError:  # the loop has stopped, or could not save the change
            return None
        except Exception as exc:  # a bug: answered as the service answers its own
            _LOG.warning("admin request failed: %s", type(exc).__name__)
            return _error(500, "InternalServerError: the request could not be handled.")
        return response

    def _unauthorised(self, target: str, authorization: str) -> str | None:
        if not authorization.startswith("SharedAccessSignature "):
            return "MissingToken: the request has no SAS token in its Authorization header."
        try:
            token = self._validate(authorization)
            check_audience_host(token.audience, self._hosts)
        except SasTokenError as exc:  # never quotes the token
            return f"InvalidSignature: {exc}"
        audience = unquote(urlsplit(token.audience).path).strip("/").lower()
        path = unquote(urlsplit(target).path).strip("/").lower()
        if audience and path != audience and not path.startswith(audience + "/"):
            return "InvalidSignature: the token's audience does not cover this entity."
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "geobus-local"
    sys_version = ""

    def __init__(self, stream: socket.socket, peer: Any, admin: AdminHttp) -> None:
        self.admin = admin
        super().__init__(stream, peer, None)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        self._one()

    do_PUT = do_DELETE = do_POST = do_HEAD = do_PATCH = do_GET

    def _one(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            self._send(_error(413 if length > 0 else 400, "The request body is too large or its length is not valid."))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        response = self.admin.answer(self.command, self.path, headers, body)
        if response is None:
            self.close_connection = True
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.status in (400, 401, 413) and self.close_connection is False:
            # A client that has not authorised, or sent what cannot be read, holds no
            # thread here: it is answered, then the connection closes.
            self.close_connection = True
            self.send_header("Connection", "close")
        for key, value in response.headers.items():
            self.send_header(key, value)
        if not any(key.lower() == "content-type" for key in response.headers):
            self.send_header("Content-Type", _XML)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line is the client's: a SAS signature pasted into a URL is masked.
        _LOG.debug("admin %s", redact(format % args))


def _error(status: int, detail: str) -> Response:
    return error_response(AdminError(status, detail))
