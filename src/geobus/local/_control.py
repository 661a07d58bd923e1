"""Fault commands from outside the process: a small HTTP endpoint on loopback.

The AMQP port cannot carry its own heal command (a black-holed port answers
nothing), so each namespace started by ``geobus local`` also serves:

    GET  /                      {"fault": ..., "latency": ..., "connections": ..., "counts": {...}}
    POST /fault/<name>          name: refuse | black_hole | freeze | heal | drop | detach
    POST /latency?seconds=0.5

``ControlClient`` is the Python side, used by drills and tests.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._namespace import LocalNamespace

_FAULTS = {
    "refuse": LocalNamespace.refuse,
    "black_hole": LocalNamespace.black_hole,
    "freeze": LocalNamespace.freeze,
    "heal": LocalNamespace.heal,
    "drop": LocalNamespace.drop_connections,
    "detach": LocalNamespace.detach_links,
}


def status(namespace: LocalNamespace) -> dict[str, Any]:
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
        return f"http://{self._host}:{self._http.server_port}"

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
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

        def do_GET(self) -> None:
            if urlsplit(self.path).path != "/":
                self._reply(404, {"error": "unknown path"})
                return
            self._reply(200, status(namespace))

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            try:
                if len(parts) == 2 and parts[0] == "fault" and parts[1] in _FAULTS:
                    _FAULTS[parts[1]](namespace)
                elif parts == ["latency"]:
                    seconds = float(parse_qs(url.query).get("seconds", ["0"])[0])
                    namespace.set_latency(seconds)
                else:
                    self._reply(404, {"error": f"unknown command {url.path!r}"})
                    return
            except ValueError as exc:
                self._reply(400, {"error": str(exc)})
                return
            self._reply(200, status(namespace))

    return Handler


class ControlClient:
    """Sends fault commands to a namespace started by ``geobus local``."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/")

    def refuse(self) -> None:
        self._call("POST", "/fault/refuse")

    def black_hole(self) -> None:
        self._call("POST", "/fault/black_hole")

    def freeze(self) -> None:
        self._call("POST", "/fault/freeze")

    def heal(self) -> None:
        self._call("POST", "/fault/heal")

    def drop_connections(self) -> None:
        self._call("POST", "/fault/drop")

    def detach_links(self) -> None:
        self._call("POST", "/fault/detach")

    def set_latency(self, seconds: float) -> None:
        self._call("POST", f"/latency?seconds={seconds}")
