"""One Service Bus namespace's settings: where it is and how geobus signs in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._errors import ConfigurationError
from .._redact import describe, looks_like
from .._sas import ConnectionString, SasTokenError, host_problem, is_loopback, namespace_identity
from .checks import Checked, checked, flag, settle
from .sdk_options import CLIENT_OPTIONS, GEOBUS_CLIENT_OPTIONS, check_client_option

# Names accepted for ``credential`` in files and the environment (azure-identity classes).
CREDENTIAL_NAMES = ("default", "managed_identity", "workload_identity", "cli", "environment")


def _client_options(name: str, options: Any) -> Mapping[str, Any]:
    """A read-only copy: changing the caller's dict later does not reach the SDK client."""
    if not isinstance(options, Mapping):
        raise ConfigurationError(name, "must be a mapping of ServiceBusClient options")
    owned = sorted(set(options) & GEOBUS_CLIENT_OPTIONS)
    if owned:
        raise ConfigurationError(
            name,
            f"{', '.join(owned)} are set by geobus for both namespaces: give them to the client's "
            "constructor (retry_* become ReplicationConfig.retry) or see deadlines.attempt",
        )
    unknown = sorted(set(options) - CLIENT_OPTIONS, key=str)
    if unknown:
        raise ConfigurationError(
            name,
            f"{', '.join(map(str, unknown))} not among the options geobus passes on: {', '.join(sorted(CLIENT_OPTIONS))}",
        )
    return MappingProxyType(
        {option: check_client_option(f"{name}.{option}", option, value) for option, value in options.items()}
    )


@dataclass(frozen=True)
class NamespaceConfig(Checked):
    """One Service Bus namespace: a connection string, or a namespace and a credential.

    ``credential`` is an azure-identity credential object, or one of the names in
    ``CREDENTIAL_NAMES`` (``"default"`` is ``DefaultAzureCredential``), which
    geobus builds as the sync or async class as needed. The repr never shows a key.

    A connection string with ``UseDevelopmentEmulator=true`` (no TLS: SAS tokens and
    messages in plaintext) is accepted for a loopback host only (127.0.0.0/8, ::1,
    ``localhost``) unless ``allow_remote_emulator`` is true.

    ``client_options`` (in code only) go to this namespace's ``ServiceBusClient``
    as they are, each checked for its type: ``transport_type``, ``http_proxy``,
    ``custom_endpoint_address``, ``ssl_context``, ``logging_enable``... (``CLIENT_OPTIONS``;
    ``geobus.testing.sdk_proxy_options`` builds some for a fault proxy). The retry and
    timeout options are the client's, for both namespaces, and are refused here. They
    never show in the repr (``http_proxy`` may hold a password).

    Raises:
        ConfigurationError: neither or both forms given, a malformed connection
            string, a remote host without TLS, or ``client_options`` naming an option
            geobus sets itself. The message never quotes a value that did not parse.
    """

    name: str | None = field(default=None, metadata=checked(env=None))
    connection_string: str | None = field(default=None, repr=False)
    fully_qualified_namespace: str | None = field(default=None, metadata=checked(env="NAMESPACE"))
    credential: Any = field(default=None, repr=False)
    client_options: Mapping[str, Any] = field(
        default_factory=dict, repr=False, hash=False, metadata=checked(_client_options, env=None, files=False)
    )
    allow_remote_emulator: bool = field(default=False, metadata=checked(flag))

    def _setting_name(self, name: str) -> str:
        return f"{self.name or 'namespace'}.{name}"

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigurationError("name", "a namespace name must be a non-empty string")
        super().__post_init__()
        prefix = self.name or "namespace"
        if self.connection_string is not None:
            self._check_connection_string(prefix)
            return
        if not self.fully_qualified_namespace:
            raise ConfigurationError(
                prefix, "needs a connection_string, or fully_qualified_namespace with a credential"
            )
        problem = host_problem(self.fully_qualified_namespace, connection_string=f"{prefix}.connection_string")
        if problem is not None:
            raise ConfigurationError(f"{prefix}.fully_qualified_namespace", problem)
        if self.credential is None:
            raise ConfigurationError(f"{prefix}.credential", "a fully_qualified_namespace needs a credential")
        if isinstance(self.credential, str) and self.credential not in CREDENTIAL_NAMES:
            looks = describe(self.credential)
            where = f"; a key belongs in {prefix}.connection_string" if looks_like(self.credential) else ""
            raise ConfigurationError(
                f"{prefix}.credential",
                f"must be an azure-identity credential or one of {' | '.join(CREDENTIAL_NAMES)}, got {looks}{where}",
            )

    def _check_connection_string(self, prefix: str) -> None:
        if not isinstance(self.connection_string, str):
            raise ConfigurationError(f"{prefix}.connection_string", f"must be a string, got {describe(self.connection_string)}")
        try:
            parsed = ConnectionString.parse(self.connection_string)
        except SasTokenError as exc:
            raise ConfigurationError(f"{prefix}.connection_string", str(exc)) from None
        given = self.fully_qualified_namespace
        tls = not parsed.use_development_emulator
        if self.credential is not None or (
            given
            and namespace_identity(str(given), tls=tls)
            != namespace_identity(parsed.fully_qualified_namespace, tls=tls)
        ):
            raise ConfigurationError(
                prefix,
                "give a connection_string, or fully_qualified_namespace with a credential, not both",
            )
        settle(self, "fully_qualified_namespace", parsed.fully_qualified_namespace)
        if not tls:
            self._check_plaintext(prefix, parsed.fully_qualified_namespace)

    def _check_plaintext(self, prefix: str, namespace: str) -> None:
        """Refuse a remote host for a connection without TLS, unless allowed.

        Where the SDK connects: the Endpoint's host, or ``custom_endpoint_address``'s."""
        if self.allow_remote_emulator:
            return
        hosts = [namespace_identity(namespace, tls=True)[0]]
        custom = self.client_options.get("custom_endpoint_address")
        if custom is not None:
            hosts.append(namespace_identity(str(custom), tls=True)[0])
        remote = [host for host in hosts if not is_loopback(host)]
        if remote:
            raise ConfigurationError(
                f"{prefix}.connection_string",
                f"UseDevelopmentEmulator=true turns TLS off: SAS tokens and every message would cross the "
                f"network in plaintext to {remote[0]!r}. It is accepted for a loopback host only "
                f"(127.0.0.0/8, ::1, localhost); set {prefix}.allow_remote_emulator = true to accept the risk",
            )

    def __repr__(self) -> str:
        how = "connection_string=***" if self.connection_string else f"credential={_credential_label(self.credential)}"
        remote = ", allow_remote_emulator=True" if self.allow_remote_emulator else ""
        return f"NamespaceConfig(name={self.name!r}, namespace={self.fully_qualified_namespace!r}, {how}{remote})"

def identity(namespace: NamespaceConfig) -> tuple[str, int | None]:
    """Which namespace ``namespace`` reaches (``namespace_identity``): two configs with one
    identity are the same namespace, however their addresses are written."""
    assert namespace.fully_qualified_namespace is not None  # checked in __post_init__
    tls = True
    if namespace.connection_string is not None:
        tls = not ConnectionString.parse(namespace.connection_string).use_development_emulator
    return namespace_identity(namespace.fully_qualified_namespace, tls=tls)


def _credential_label(credential: Any) -> str:
    if credential is None or isinstance(credential, str):
        return repr(credential)
    return type(credential).__name__
