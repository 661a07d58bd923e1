"""Pointing the azure-servicebus client at a ``FaultProxy`` (or any ``Proxy``).

Two ways, for two kinds of namespace:

- ``sdk_proxy_options``: keyword arguments for ``ServiceBusClient`` that keep the
  connection string (so the SAS audience and the link addresses still name the
  real namespace) and only change where the TCP connection goes
  (``custom_endpoint_address``). Works for local and real namespaces.
- ``proxied_connection_string``: the connection string itself, re-addressed to
  the proxy. Only for local namespaces (``UseDevelopmentEmulator=true``: plain
  AMQP, and geobus.local checks the host of a token's audience, not its port: a
  loopback proxy in front of a loopback namespace passes), for code that takes a
  connection string alone. geobus's ``NamespaceConfig`` takes the options as
  ``client_options``.

With a custom endpoint, azure-servicebus 7.15 checks the TLS certificate against
the custom endpoint's host (``127.0.0.1``), which a namespace's certificate does
not name. ``sdk_proxy_options`` therefore gives an ``ssl_context`` that checks the
certificate, and sends SNI, for the namespace's own host name instead.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import replace
from typing import Any, Protocol

from .._redact import describe
from .._sas import ConnectionString, SasTokenError


class Proxy(Protocol):
    """Where a proxy listens: a ``FaultProxy``, or a ``FaultProxyProcess`` in its own process."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def endpoint(self) -> str: ...


class ProxyAddress:
    """``address`` and ``endpoint`` from a proxy's ``host`` and ``port`` (both kinds of proxy)."""

    @property
    def host(self) -> str:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, for ``socket.create_connection`` and friends."""
        return (self.host, self.port)

    @property
    def endpoint(self) -> str:
        """``sb://host:port``, the SDK's ``custom_endpoint_address`` for this proxy."""
        return f"sb://{self.host}:{self.port}"


class _NamespaceTLSContext(ssl.SSLContext):
    """An SSLContext that verifies (and sends as SNI) one fixed host name.

    The SDK passes the custom endpoint's host as ``server_hostname``; this context
    replaces it with the namespace's, so full certificate checking stays on.
    """

    namespace_host = ""

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, self.namespace_host, session
        )

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.namespace_host, session)


def namespace_tls_context(host: str, *, cafile: str | None = None) -> ssl.SSLContext:
    """A client TLS context that checks certificates against ``host``, whatever address is dialled.

    ``cafile``: the CA bundle to trust; by default certifi's, as the SDK's own default.

    Raises:
        ValueError: ``host`` is empty. OSError: ``cafile`` cannot be read.
    """
    if not isinstance(host, str) or not host.strip():
        raise ValueError("host must be the namespace's host name, e.g. 'contoso.servicebus.windows.net'")
    context = _NamespaceTLSContext(ssl.PROTOCOL_TLS_CLIENT)
    context.namespace_host = host.strip()
    if cafile is None:
        import certifi

        cafile = certifi.where()
    context.load_verify_locations(cafile)
    return context


def sdk_proxy_options(proxy: Proxy, namespace: str, *, cafile: str | None = None) -> dict[str, Any]:
    """Keyword arguments that route an azure-servicebus client's connections through ``proxy``.

    ``namespace``: the connection string the client is built from, or its fully
    qualified namespace (``contoso.servicebus.windows.net``, TLS assumed). Use::

        ServiceBusClient.from_connection_string(conn_str, **sdk_proxy_options(proxy, conn_str))
        ServiceBusClient(fqns, credential, **sdk_proxy_options(proxy, fqns))

    The result holds ``transport_type=TransportType.Amqp`` (a custom endpoint
    otherwise means WebSockets), ``custom_endpoint_address=proxy.endpoint`` and,
    unless the connection string says ``UseDevelopmentEmulator=true``, an
    ``ssl_context`` from ``namespace_tls_context`` (``cafile`` is passed on). For a
    real namespace the proxy's upstream must be ``(host, 5671)``.

    Raises:
        ValueError: ``namespace`` is not a connection string or a host name (the
            message never contains a key).
    """
    from azure.servicebus import TransportType

    host, tls = _target(namespace)
    options: dict[str, Any] = {
        "transport_type": TransportType.Amqp,
        "custom_endpoint_address": proxy.endpoint,
    }
    if tls:
        options["ssl_context"] = namespace_tls_context(host, cafile=cafile)
    return options


def proxied_connection_string(connection_string: str, proxy: Proxy) -> str:
    """``connection_string`` with its Endpoint moved to ``proxy``: local namespaces only.

    For code that takes only a connection string; geobus's ``NamespaceConfig``
    takes ``client_options=sdk_proxy_options(...)`` instead, which also works for
    a real namespace. The result holds the key: do not print it.

    Raises:
        ValueError: the connection string is malformed, or is not a local one
            (``UseDevelopmentEmulator=true``): a TLS namespace cannot be
            re-addressed, since its certificate and SAS audience name its host;
            use ``sdk_proxy_options`` for those.
    """
    parsed = _parse(connection_string)
    if not parsed.use_development_emulator:
        raise ValueError(
            "only a local connection string (UseDevelopmentEmulator=true) can be re-addressed "
            "to a proxy; for a TLS namespace use sdk_proxy_options(proxy, connection_string)"
        )
    moved = replace(parsed, endpoint=proxy.endpoint, fully_qualified_namespace=f"{proxy.host}:{proxy.port}")
    return moved.to_string()


def _parse(connection_string: str) -> ConnectionString:
    try:
        return ConnectionString.parse(connection_string)
    except SasTokenError as exc:
        raise ValueError(f"not a usable connection string: {exc}") from None


def _target(namespace: str) -> tuple[str, bool]:
    """The namespace's host name, and whether the SDK will use TLS to it."""
    if not isinstance(namespace, str) or not namespace.strip():
        raise ValueError("namespace must be a connection string or a fully qualified namespace")
    if "=" in namespace:
        parsed = _parse(namespace)
        host = parsed.fully_qualified_namespace.partition(":")[0]
        return host, not parsed.use_development_emulator
    host = namespace.strip()
    if "://" in host or "/" in host or ":" in host:
        raise ValueError(
            "namespace should be a host name like 'contoso.servicebus.windows.net' "
            f"(or pass the connection string), got {describe(host)}"
        )
    return host, True
