"""azure-servicebus's ``ServiceBusClient`` options, as geobus takes them.

A program written for the SDK passes its client options as keyword arguments
(``from_connection_string(cs, logging_enable=True, retry_total=2)``). geobus
takes the same names in ``GeoServiceBusClient.from_connection_strings``,
``from_namespaces`` and ``from_config`` and sorts them three ways (``split``):

- ``CLIENT_OPTIONS`` go, as they are, to both namespaces' SDK clients
  (``NamespaceConfig.client_options``), each checked for its type first
  (``check_client_option``): the SDK would take a wrong one quietly and fail
  later, far from the mistake. Stricter than the SDK: ``logging_enable`` must be
  a ``bool`` (the SDK takes any truthy value). ``custom_endpoint_address`` sends
  both namespaces to one address, right only for a gateway that routes by the
  namespace's host name inside the connection; an endpoint per region goes in
  each ``NamespaceConfig.client_options``;
- ``RETRY_OPTIONS`` mean what ``SdkRetryPolicy``'s fields mean and set them;
- ``OWNED_OPTIONS`` are geobus's own business and refused, with the reason.

None of these checks quotes a value: ``http_proxy`` may hold a password.
"""

from __future__ import annotations

import enum
import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from azure.servicebus import TransportType

from .._errors import ConfigurationError
from .checks import positive

# ServiceBusClient option -> the SdkRetryPolicy field that means the same.
RETRY_OPTIONS: Mapping[str, str] = {
    "retry_total": "total",
    "retry_backoff_factor": "backoff_factor",
    "retry_backoff_max": "backoff_max",
    "retry_mode": "mode",
}

# ServiceBusClient options geobus sets itself, and why a caller may not.
OWNED_OPTIONS: Mapping[str, str] = {
    "try_timeout": (
        "geobus bounds each namespace's attempt, the SDK's retries included, with deadlines.attempt "
        "and gives the SDK that as its try_timeout; set deadlines=Deadlines(attempt=...) instead"
    ),
}

# ServiceBusClient options that reach the SDK clients unchanged.
CLIENT_OPTIONS = frozenset(
    {
        "transport_type",
        "http_proxy",
        "user_agent",
        "logging_enable",
        "custom_endpoint_address",
        "connection_verify",
        "ssl_context",
        "socket_timeout",
        "uamqp_transport",
    }
)

# Every ServiceBusClient option: what a NamespaceConfig's client_options may not set itself.
GEOBUS_CLIENT_OPTIONS = frozenset({*RETRY_OPTIONS, *OWNED_OPTIONS})

def _a(kind: type | str) -> str:
    name = kind if isinstance(kind, str) else kind.__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


_PROXY_KEYS = {"proxy_hostname": str, "proxy_port": int, "username": str, "password": str}


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(name, f"must be True or False, got {_a(type(value))}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(name, f"must be a string, got {_a(type(value))}")
    if not value.strip():
        raise ConfigurationError(name, "must not be empty")
    return value


def _path(name: str, value: Any) -> str:
    return _text(name, os.fspath(value) if isinstance(value, os.PathLike) else value)


def _transport(name: str, value: Any) -> TransportType:
    if not isinstance(value, TransportType):
        raise ConfigurationError(name, f"must be an azure.servicebus.TransportType, got {_a(type(value))}")
    return value


def _ssl_context(name: str, value: Any) -> ssl.SSLContext:
    if not isinstance(value, ssl.SSLContext):
        raise ConfigurationError(name, f"must be an ssl.SSLContext, got {_a(type(value))}")
    return value


def _http_proxy(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(name, f"must be a dict with proxy_hostname and proxy_port, got {_a(type(value))}")
    for key in ("proxy_hostname", "proxy_port"):
        if key not in value:
            raise ConfigurationError(name, f"needs {key}")
    for key, given in value.items():
        wanted = _PROXY_KEYS.get(key)
        if wanted is None:
            raise ConfigurationError(name, f"unknown key {key!r} (known: {', '.join(_PROXY_KEYS)})")
        if not isinstance(given, wanted) or isinstance(given, bool):
            # Only the type: the value may be the password.
            raise ConfigurationError(f"{name}.{key}", f"must be {_a(wanted)}, got {_a(type(given))}")
    return dict(value)


def _socket_timeout(name: str, value: Any) -> float | None:
    return None if value is None else positive(name, value)


def _uamqp_transport(name: str, value: Any) -> bool:
    if _flag(name, value):
        raise ConfigurationError(
            name,
            "geobus runs on the SDK's pure-Python AMQP transport: its deadlines and its reading of "
            "the SDK's errors are built on it (the uamqp transport is deprecated by the SDK too)",
        )
    return False


_CHECKS: Mapping[str, Callable[[str, Any], Any]] = {
    "transport_type": _transport,
    "http_proxy": _http_proxy,
    "user_agent": _text,
    "logging_enable": _flag,
    "custom_endpoint_address": _text,
    "connection_verify": _path,
    "ssl_context": _ssl_context,
    "socket_timeout": _socket_timeout,
    "uamqp_transport": _uamqp_transport,
}
assert set(_CHECKS) == CLIENT_OPTIONS


def check_client_option(name: str, option: str, value: Any) -> Any:
    """``value`` for the client option ``option``, normalised (a path-like to ``str``), or
    ``ConfigurationError(name, ...)``; the message names the type, never the value."""
    return _CHECKS[option](name, value)


def retry_value(option: str, value: Any) -> Any:
    """An SDK retry option's value for ``SdkRetryPolicy`` (``RetryMode.FIXED`` -> ``"fixed"``)."""
    return value.value if isinstance(value, enum.Enum) else value


def split(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Sort keyword options into ``(others, client options, retry fields)``.

    ``others`` are left for the caller (``ReplicationConfig``'s own fields); client
    options are checked; retry options are renamed to ``SdkRetryPolicy``'s fields.

    Raises:
        ConfigurationError: an option geobus owns (``try_timeout``), or a client option
            of the wrong type; ``field`` is the option's name.
    """
    others: dict[str, Any] = {}
    client: dict[str, Any] = {}
    retry: dict[str, Any] = {}
    for option, value in options.items():
        if option in OWNED_OPTIONS:
            raise ConfigurationError(option, OWNED_OPTIONS[option])
        if option in CLIENT_OPTIONS:
            client[option] = check_client_option(option, option, value)
        elif option in RETRY_OPTIONS:
            retry[RETRY_OPTIONS[option]] = retry_value(option, value)
        else:
            others[option] = value
    return others, client, retry


def backoff_total(total: int, factor: float, most: float, mode: str) -> float:
    """The SDK's waits between ``total`` retries added up (``_get_backoff_time``, 7.15)."""
    waits = (factor if mode == "fixed" else factor * 2**retried for retried in range(1, total + 1))
    return sum(min(most, wait) for wait in waits)
