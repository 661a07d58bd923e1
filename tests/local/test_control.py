"""The control endpoint serves its own tools, not web pages, and takes only sane numbers.

A web page can make a browser POST ``text/plain`` to any loopback port without a
CORS preflight; the endpoint must refuse that, and anything from a page at all.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from geobus.local import MAX_LATENCY, ControlClient, ControlServer, LocalNamespace

pytestmark = pytest.mark.timeout(60)

HEADER = {"X-Geobus-Control": "1"}


@pytest.fixture
def control(namespace: LocalNamespace) -> Iterator[ControlServer]:
    server = ControlServer(namespace).start()
    try:
        yield server
    finally:
        server.stop()


def _request(
    server: ControlServer, method: str, path: str, *, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """One request with exactly ``headers`` (and the Host http.client adds); status and JSON."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload.startswith(b"{") else {}
    finally:
        connection.close()


class TestCrossOrigin:
    """Nothing a browser can send without a preflight changes the namespace."""

    @pytest.mark.parametrize(
        "headers, body",
        [
            # A "simple" cross-origin request, as a web page's fetch() or form sends it.
            ({"Content-Type": "text/plain", "Origin": "https://evil.example"}, b"x"),
            ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=b"),
            ({}, None),  # no header at all: curl without -H, or a page's no-cors fetch
            ({"X-Geobus-Control": "0"}, None),
            ({**HEADER, "Origin": "http://127.0.0.1:8000"}, None),  # a page on loopback too
            ({**HEADER, "Host": "evil.example:80"}, None),  # DNS rebinding
            ({**HEADER, "Host": "127.0.0.1.evil.example"}, None),
            ({**HEADER, "Content-Type": "text/plain"}, b"x"),
            ({**HEADER, "Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
            ({**HEADER, "Content-Type": "application/json"}, b"{}"),  # commands take no body
        ],
        ids=[
            "cross-origin-text-plain", "form", "no-header", "header-not-1", "origin", "foreign-host",
            "host-starting-127", "text-plain", "multipart", "json-body",
        ],
    )
    def test_a_refused_request_changes_nothing(
        self, control: ControlServer, namespace: LocalNamespace, headers: dict[str, str], body: bytes | None
    ) -> None:
        status, reply = _request(control, "POST", "/fault/refuse", headers=headers, body=body)
        assert status in (403, 415)
        assert "error" in reply
        assert namespace.fault.value == "none"

    def test_reading_the_status_needs_the_header_too(self, control: ControlServer) -> None:
        assert _request(control, "GET", "/", headers={})[0] == 403
        status, reply = _request(control, "GET", "/", headers=HEADER)
        assert status == 200 and reply["fault"] == "none"

    def test_a_preflight_is_never_granted(self, control: ControlServer) -> None:
        status, _ = _request(
            control,
            "OPTIONS",
            "/fault/refuse",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert not 200 <= status < 300

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
    def test_loopback_host_headers_are_served(
        self, control: ControlServer, namespace: LocalNamespace, host: str
    ) -> None:
        status, _ = _request(control, "POST", "/fault/black_hole", headers={**HEADER, "Host": host})
        assert status == 200
        assert namespace.fault.value == "black_hole"
        namespace.heal()

    def test_the_client_sends_the_header(self, control: ControlServer, namespace: LocalNamespace) -> None:
        client = ControlClient(control.url)
        client.refuse()
        assert client.status()["fault"] == "refuse"
        client.set_latency(0.25)
        client.heal()
        assert namespace.fault.value == "none"


class TestNumbers:
    """Latency is a finite number of seconds from 0 to MAX_LATENCY; anything else is 400."""

    @pytest.mark.parametrize(
        "query",
        ["seconds=nan", "seconds=NaN", "seconds=inf", "seconds=-inf", "seconds=1e309", "seconds=-1",
         f"seconds={MAX_LATENCY * 2:g}", "seconds=1e18", "seconds=abc", "seconds=", "", "seconds=1&seconds=2"],
    )
    def test_a_bad_latency_is_400_and_changes_nothing(
        self, control: ControlServer, namespace: LocalNamespace, query: str
    ) -> None:
        status, reply = _request(control, "POST", f"/latency?{query}", headers=HEADER)
        assert status == 400
        assert "latency" in reply["error"]
        assert namespace.latency == 0.0

    @pytest.mark.parametrize("seconds", ["0", "0.5", f"{MAX_LATENCY:g}"])
    def test_a_latency_in_range_is_set(
        self, control: ControlServer, namespace: LocalNamespace, seconds: str
    ) -> None:
        status, reply = _request(control, "POST", f"/latency?seconds={seconds}", headers=HEADER)
        assert status == 200 and reply["latency"] == float(seconds)
        namespace.heal()

    @pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -0.5, MAX_LATENCY + 1, True, "1"])
    def test_set_latency_refuses_the_same(self, namespace: LocalNamespace, seconds: Any) -> None:
        with pytest.raises(ValueError, match="latency seconds"):
            namespace.set_latency(seconds)
        assert namespace.latency == 0.0
