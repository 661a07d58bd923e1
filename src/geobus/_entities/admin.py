"""``admin_client``: azure-servicebus's ``ServiceBusAdministrationClient`` for a geobus namespace."""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import quote

from azure.core.pipeline.transport import RequestsTransport
from azure.servicebus.management import ServiceBusAdministrationClient

from .._config import NamespaceConfig
from .._errors import ConfigurationError
from .._sas import ConnectionString, is_loopback, split_host

# Bounds on each administration request, for a namespace that does not answer
# (azure-core's own defaults wait 300 s to connect and retry a timed-out read three
# times: a black-holed region took 4 minutes to report). The service answers these
# calls in well under a second; a page of a hundred entities in one or two.
CONNECTION_TIMEOUT = 10.0
READ_TIMEOUT = 10.0
RETRIES = 1


class PlainHttpTransport(RequestsTransport):  # type: ignore[misc]  # azure-core's lazy import: Any to mypy
    """Sends ``https://`` requests as ``http://``: for a namespace without TLS (the emulator's
    ``UseDevelopmentEmulator=true``), which the administration client cannot reach otherwise."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        if request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://") :]
        return super().send(request, **kwargs)


def admin_client(namespace: NamespaceConfig) -> ServiceBusAdministrationClient:
    """The (sync) administration client of ``namespace``: from its connection string, or its
    fully qualified namespace and credential (an azure-identity object, or a name in
    ``CREDENTIAL_NAMES``, built as the sync class).

    Working around an SDK bug: for a connection string with ``UseDevelopmentEmulator=true``,
    azure-servicebus 7.15's ``ServiceBusAdministrationClient.from_connection_string``
    computes ``use_tls=False`` but ignores it, and dials ``https://host:port`` anyway (its
    ``_endpoint = "https://" + fully_qualified_namespace``, and the generated client's
    ``"https://{endpoint}"``). Such a namespace gets a ``PlainHttpTransport``, which sends
    the same requests over ``http://``; only for a loopback host, or one allowed by
    ``allow_remote_emulator`` (as ``NamespaceConfig`` checks for the messaging client).

    Of ``client_options`` (the AMQP client's), only what azure-core's HTTP pipeline means
    the same way goes on: ``user_agent``, ``logging_enable``, ``connection_verify`` (a CA
    bundle), and ``http_proxy`` as azure-core's ``proxies``. ``custom_endpoint_address``,
    ``ssl_context``, ``transport_type`` and ``socket_timeout`` are the AMQP connection's
    and left out. Each request waits at most ``CONNECTION_TIMEOUT`` s to connect and
    ``READ_TIMEOUT`` s for an answer, and is retried ``RETRIES`` time(s).

    Raises:
        ConfigurationError: an async credential object (the administration client is sync),
            or a namespace without TLS on a host that is not allowed.
    """
    where = namespace.name or "namespace"
    transport: type[RequestsTransport] = RequestsTransport
    credential = namespace.credential
    if namespace.connection_string is not None:
        parsed = ConnectionString.parse(namespace.connection_string)
        host = split_host(parsed.fully_qualified_namespace).name
        if parsed.use_development_emulator:
            if not (is_loopback(host) or namespace.allow_remote_emulator):
                raise ConfigurationError(
                    f"{where}.connection_string",
                    f"UseDevelopmentEmulator=true sends the administration requests in plaintext to {host!r}; "
                    "it is accepted for a loopback host only, unless allow_remote_emulator is set",
                )
            transport = PlainHttpTransport
    elif isinstance(credential, str):
        from .._engine.channels import identity_credential

        credential = identity_credential(credential)
    elif inspect.iscoroutinefunction(getattr(credential, "get_token", None)):
        raise ConfigurationError(
            f"{where}.credential",
            "the administration client is sync: give a sync azure-identity credential "
            "(azure.identity, not azure.identity.aio), or its name (default, cli...)",
        )
    given = namespace.client_options
    verify = {"connection_verify": given["connection_verify"]} if "connection_verify" in given else {}
    options = _pipeline_options(namespace)
    options["retry_total"] = RETRIES
    options["transport"] = transport(connection_timeout=CONNECTION_TIMEOUT, read_timeout=READ_TIMEOUT, **verify)
    if namespace.connection_string is not None:
        return ServiceBusAdministrationClient.from_connection_string(namespace.connection_string, **options)
    assert namespace.fully_qualified_namespace is not None  # NamespaceConfig checks it
    return ServiceBusAdministrationClient(namespace.fully_qualified_namespace, credential, **options)


def _pipeline_options(namespace: NamespaceConfig) -> dict[str, Any]:
    """The client options azure-core's pipeline takes as the AMQP client does."""
    given = namespace.client_options
    options: dict[str, Any] = {name: given[name] for name in ("user_agent", "logging_enable") if name in given}
    proxy = given.get("http_proxy")
    if proxy:
        user = proxy.get("username")
        login = f"{quote(user, safe='')}:{quote(proxy.get('password') or '', safe='')}@" if user else ""
        url = f"http://{login}{proxy['proxy_hostname']}:{proxy['proxy_port']}"
        options["proxies"] = {"http": url, "https": url}
    return options
