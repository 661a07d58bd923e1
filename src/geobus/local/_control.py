"""Fault commands from outside the process: a small HTTP endpoint on loopback.

The AMQP port cannot carry its own heal command (a black-holed port answers
nothing), so each namespace started by ``geobus local`` also serves:

    GET  /                      {"fault": ..., "latency": ..., "connections": ..., "counts": {...}}
    POST /fault/<name>          name: refuse | black_hole | freeze | heal | drop | detach
    POST /latency?seconds=0.5   0 to MAX_LATENCY seconds

Every request must carry ``X-Geobus-Control: 1``. A web page cannot send that
header to another origin without a CORS preflight, which this server never
grants (it answers no OPTIONS), so a page the developer happens to visit cannot
trigger a fault. For the same reason a request with an ``Origin`` header (a
browser's), a ``Host`` that is not a loopback name (DNS rebinding), or a POST
with a body is refused. Refusals are 403 or 415; a bad number is 400.

``ControlClient`` is the Python side, used by drills and tests.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._namespace import LocalNamespace

HEADER = "X-Geobus-Control"

# POST /fault/<name>: the LocalNamespace method it calls, which ControlClient has too.
_FAULTS: dict[str, Callable[[LocalNamespace], object]] = {
    "refuse": LocalNamespace.refuse,
    "black_hole": LocalNamespace.black_hole,
    "freeze": LocalNamespace.freeze,
    "heal": LocalNamespace.heal,
    "drop": LocalNamespace.drop_connections,
    "detach": LocalNamespace.detach_links,
}


def status(namespace: LocalNamespace) -> dict[str, Any]:
    """What ``GET /`` answers: the namespace's address, fault, latency, connections and counts."""
    return {
        "endpoint": namespace.endpoint,
        "fault": namespace.fault.value,
        "latency": namespace.latency,
        "connections": namespace.connection_count,
        "counts": namespace.counts(),
    }


class ControlServer:
    """Serves one namespace's control endpoint on a daemon thread (loopback only)."""

    def __init__(self, namespace: LocalNamespace, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if not host.startswith("127."):
            raise ValueError("the control endpoint listens on loopback (127.0.0.0/8) only")
        handler = _handler_for(namespace)
        self._host = host
        self._http = ThreadingHTTPServer((host, port), handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where the endpoint listens (``http://127.0.0.1:<port>``), for ``ControlClient``."""
        return f"http://{self._host}:{self._http.server_port}"

    def start(self) -> ControlServer:
        """Serve on a daemon thread; returns this server."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._http.shutdown()
        self._http.server_close()


def _handler_for(namespace: LocalNamespace) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _refusal(self) -> tuple[int, str] | None:
            """Why this request may not be served, or None; see the module docstring."""
            if self.headers.get(HEADER) != "1":
                return 403, f"the {HEADER}: 1 header is required"
            if self.headers.get("Origin") is not None:
                return 403, "requests from a web page (with an Origin header) are refused"
            if not _loopback_host(self.headers.get("Host") or ""):
                return 403, "the Host header must name a loopback address"
            if self.command == "POST":
                length = self.headers.get("Content-Length") or "0"
                content_type = self.headers.get("Content-Type")
                if length != "0" or self.headers.get("Transfer-Encoding") is not None:
                    return 415, "commands take no body: parameters go in the query string"
                if content_type is not None and content_type.split(";")[0].strip() != "application/json":
                    return 415, "commands take no body (a Content-Type, if any, is application/json)"
            return None

        def _refused(self) -> bool:
            refusal = self._refusal()
            if refusal is None:
                return False
            code, reason = refusal
            self.close_connection = True
            self._reply(code, {"error": reason})
            return True

        def do_GET(self) -> None:
            if self._refused():
                return
            if urlsplit(self.path).path != "/":
                self._reply(404, {"error": "unknown path"})
                return
            self._reply(200, status(namespace))

        def do_POST(self) -> None:
            if self._refused():
                return
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            try:
                if len(parts) == 2 and parts[0] == "fault" and parts[1] in _FAULTS:
                    _FAULTS[parts[1]](namespace)
                elif parts == ["latency"]:
                    namespace.set_latency(_seconds(url.query))
                else:
                    self._reply(404, {"error": f"unknown command {url.path!r}"})
                    return
            except ValueError as exc:
                self._reply(400, {"error": str(exc)})
                return
            self._reply(200, status(namespace))

    return Handler


def _loopback_host(host: str) -> bool:
    """Whether a Host header (``127.0.0.1:8080``, ``[::1]:8080``, ``localhost``) is loopback."""
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _seconds(query: str) -> float:
    """The one ``seconds`` parameter of ``query``, as a number.

    Raises:
        ValueError: it is missing, repeated or not a number (its range is
            ``set_latency``'s to check).
    """
    values = parse_qs(query, keep_blank_values=True).get("seconds", [])
    if len(values) != 1:
        raise ValueError("give latency as one seconds=<number> parameter")
    try:
        return float(values[0])
    except ValueError:
        raise ValueError("latency seconds must be a number") from None


def _command(name: str) -> Callable[[ControlClient], None]:
    """The ``ControlClient`` method that posts fault ``name`` (a key of ``_FAULTS``)."""
    method = _FAULTS[name]

    def command(self: ControlClient) -> None:
        self._call("POST", f"/fault/{name}")

    command.__name__ = command.__qualname__ = method.__name__
    command.__doc__ = f"``LocalNamespace.{method.__name__}`` on the namespace, through ``POST /fault/{name}``."
    return command


class ControlClient:
    """Sends fault commands to a namespace started by ``geobus local``.

    Each method is one HTTP request; it raises ``urllib.error.URLError`` (an
    ``HTTPError`` for a refused or bad command) when it fails, and
    ``TimeoutError`` after ``timeout`` seconds. Thread-safe.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str) -> dict[str, Any]:
        # No body, so no Content-Type: urllib would label even an empty one a form.
        request = urllib.request.Request(self.url + path, method=method, headers={HEADER: "1"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def status(self) -> dict[str, Any]:
        """The namespace's ``status``: its address, fault, latency, connections and counts."""
        return self._call("GET", "/")

    refuse = _command("refuse")
    black_hole = _command("black_hole")
    freeze = _command("freeze")
    heal = _command("heal")
    drop_connections = _command("drop")
    detach_links = _command("detach")

    def set_latency(self, seconds: float) -> None:
        """``LocalNamespace.set_latency`` on the namespace, through ``POST /latency``."""
        self._call("POST", f"/latency?seconds={seconds}")
