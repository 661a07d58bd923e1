"""Pointing azure-servicebus at a proxy: ``sdk_proxy_options`` and ``proxied_connection_string``.

The TLS tests stand a loopback TLS server, with a certificate made for a
namespace-like host name, behind the proxy: the real SDK must verify that name
(and send it as SNI) although it dials 127.0.0.1. Nothing leaves loopback.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, TransportType
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import ServiceBusConnectionError

from geobus.local import DEV_KEY
from geobus.testing import (
    FaultProxy,
    namespace_tls_context,
    proxied_connection_string,
    sdk_proxy_options,
)

from .helpers import LOOPBACK, PROMPTLY, EchoServer

pytestmark = pytest.mark.timeout(60)

NAMESPACE_HOST = "geobus-test.servicebus.test"
# A made-up key for a made-up TLS namespace: only ever sent to loopback, never shown.
FAKE_KEY = base64.b64encode(b"a key no namespace accepts").decode()
AZURE_STYLE = f"Endpoint=sb://{NAMESPACE_HOST}/;SharedAccessKeyName=send;SharedAccessKey={FAKE_KEY}"
LOCAL_STYLE = (
    f"Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=RootManageSharedAccessKey;"
    f"SharedAccessKey={DEV_KEY};UseDevelopmentEmulator=true"
)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with EchoServer() as echo, FaultProxy(echo.address) as proxy:
        yield proxy


class TestOptions:
    """What the helpers return, and how they refuse bad input without showing a key."""

    def test_local_connection_string_gets_a_custom_endpoint_and_no_tls(self, proxy: FaultProxy) -> None:
        assert sdk_proxy_options(proxy, LOCAL_STYLE) == {
            "transport_type": TransportType.Amqp,
            "custom_endpoint_address": proxy.endpoint,
        }

    @pytest.mark.parametrize("namespace", [AZURE_STYLE, NAMESPACE_HOST])
    def test_tls_namespace_gets_a_context_for_its_own_host(self, proxy: FaultProxy, namespace: str) -> None:
        options = sdk_proxy_options(proxy, namespace)
        assert options["transport_type"] == TransportType.Amqp
        assert options["custom_endpoint_address"] == proxy.endpoint
        context = options["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname

    @pytest.mark.parametrize(
        "namespace", ["", "sb://contoso.servicebus.windows.net", "contoso:5671", "Endpoint=nonsense;SharedAccessKey=" + FAKE_KEY]
    )
    def test_bad_namespace(self, proxy: FaultProxy, namespace: str) -> None:
        with pytest.raises(ValueError) as raised:
            sdk_proxy_options(proxy, namespace)
        assert FAKE_KEY not in str(raised.value)

    def test_proxied_connection_string_moves_only_the_endpoint(self, proxy: FaultProxy) -> None:
        moved = proxied_connection_string(LOCAL_STYLE, proxy)
        assert moved.startswith(f"Endpoint={proxy.endpoint};")
        assert f"SharedAccessKey={DEV_KEY}" in moved
        assert moved.endswith("UseDevelopmentEmulator=true")

    def test_tls_connection_string_cannot_be_moved(self, proxy: FaultProxy) -> None:
        with pytest.raises(ValueError, match="sdk_proxy_options") as raised:
            proxied_connection_string(AZURE_STYLE, proxy)
        assert FAKE_KEY not in str(raised.value)

    def test_tls_context_needs_a_host(self) -> None:
        with pytest.raises(ValueError, match="host"):
            namespace_tls_context(" ")


# -- a TLS "namespace" on loopback ------------------------------------------------------------


def _certificate(tmp_path: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (its own CA), and its key."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class TlsServer:
    """Completes TLS handshakes, records the SNI each client sent, then hangs up."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.server_names: list[str | None] = []
        self.handshakes = 0
        self.context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.address: tuple[str, int] = self._listener.getsockname()
        self._thread = threading.Thread(target=self._serve, name="tls-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                conn.settimeout(PROMPTLY)
                with self.context.wrap_socket(conn, server_side=True):
                    self.handshakes += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(PROMPTLY)


@pytest.fixture
def tls_namespace(tmp_path: Path) -> Iterator[tuple[TlsServer, Path]]:
    cert, key = _certificate(tmp_path, NAMESPACE_HOST)
    server = TlsServer(cert, key)
    try:
        yield server, cert
    finally:
        server.close()


def _send_one(options: dict[str, object]) -> None:
    with ServiceBusClient.from_connection_string(AZURE_STYLE, retry_total=0, **options) as client:  # type: ignore[arg-type]
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("x"))


async def _send_one_async(options: dict[str, object]) -> None:
    async with AsyncServiceBusClient.from_connection_string(AZURE_STYLE, retry_total=0, **options) as client:  # type: ignore[arg-type]
        async with client.get_queue_sender("q") as sender:
            await sender.send_messages(ServiceBusMessage("x"))


class TestTlsThroughTheProxy:
    """The SDK checks the namespace's certificate, by its own name, through the proxy."""

    def test_sync_client_verifies_the_namespace_name(self, tls_namespace: tuple[TlsServer, Path]) -> None:
        server, cert = tls_namespace
        with FaultProxy(server.address) as proxy:
            # The server hangs up after the handshake: the AMQP part fails, TLS succeeded.
            with pytest.raises(ServiceBusConnectionError) as raised:
                _send_one(sdk_proxy_options(proxy, AZURE_STYLE, cafile=str(cert)))
        assert "CERTIFICATE_VERIFY_FAILED" not in str(raised.value)
        assert server.handshakes >= 1
        assert set(server.server_names) == {NAMESPACE_HOST}
        assert FAKE_KEY not in str(raised.value)

    async def test_async_client_verifies_the_namespace_name(self, tls_namespace: tuple[TlsServer, Path]) -> None:
        server, cert = tls_namespace
        with FaultProxy(server.address) as proxy:
            with pytest.raises(ServiceBusConnectionError) as raised:
                await _send_one_async(sdk_proxy_options(proxy, AZURE_STYLE, cafile=str(cert)))
        assert "CERTIFICATE_VERIFY_FAILED" not in str(raised.value)
        assert server.handshakes >= 1
        assert set(server.server_names) == {NAMESPACE_HOST}

    def test_a_certificate_for_another_name_is_still_rejected(self, tmp_path: Path) -> None:
        cert, key = _certificate(tmp_path, "someone-else.servicebus.test")
        server = TlsServer(cert, key)
        try:
            with FaultProxy(server.address) as proxy:
                with pytest.raises(ServiceBusConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                    _send_one(sdk_proxy_options(proxy, AZURE_STYLE, cafile=str(cert)))
        finally:
            server.close()
        assert server.handshakes == 0

    def test_custom_endpoint_alone_fails_tls(self, tls_namespace: tuple[TlsServer, Path]) -> None:
        """Why the helper adds a context: azure-servicebus 7.15 checks the proxy's address."""
        server, cert = tls_namespace
        with FaultProxy(server.address) as proxy:
            options = {
                "transport_type": TransportType.Amqp,
                "custom_endpoint_address": proxy.endpoint,
                "connection_verify": str(cert),
            }
            with pytest.raises(ServiceBusConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                _send_one(options)

