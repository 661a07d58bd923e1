"""Service Bus shared-access-signature helpers: connection strings and SAS tokens.

Used by the client configuration (to parse connection strings and tell namespaces
apart) and by the local namespace (to validate the tokens the SDK puts on ``$cbs``). A key or a
signature never appears in a repr, a log line or an exception raised here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

from ._redact import describe, looks_like, redact

__all__ = [
    "ConnectionString",
    "Host",
    "SasTokenError",
    "generate_sas_token",
    "host_problem",
    "is_host",
    "is_loopback",
    "namespace_identity",
    "parse_sas_token",
    "split_host",
    "validate_sas_token",
]


class SasTokenError(ValueError):
    """A SAS token or connection string is malformed or does not verify.

    The message names what is wrong and never contains the key or signature.
    """


@dataclass(frozen=True)
class ConnectionString:
    """A parsed Service Bus connection string.

    Its repr masks the key and any signature, so it can be logged.
    """

    endpoint: str
    fully_qualified_namespace: str
    shared_access_key_name: str | None = None
    shared_access_key: str | None = field(default=None, repr=False)
    shared_access_signature: str | None = field(default=None, repr=False)
    entity_path: str | None = None
    use_development_emulator: bool = False

    @classmethod
    def parse(cls, text: str) -> ConnectionString:
        """Parse ``text``.

        Raises:
            SasTokenError: a part is missing or malformed; the message names the part
                and never echoes a key.
        """
        if not isinstance(text, str) or not text.strip():
            raise SasTokenError("connection string is empty")
        values: dict[str, str] = {}
        for raw_part in text.strip().split(";"):
            if not raw_part.strip():
                continue
            name, sep, value = raw_part.partition("=")
            if not sep:
                # Never echo the part: a key pasted bare, or after a typo such as
                # "SharedAccessKey:...", is exactly the text that has no '='.
                raise SasTokenError(
                    "connection string has a part with no '=' (expected Name=value pairs separated by ';')"
                )
            name = name.strip().lower()
            if name in values or (name in _SAME_AS and _SAME_AS[name] in values):
                # The SDK and this parser could each keep a different one of the two (the
                # SDK also reads HostName as the Endpoint): refuse rather than guess.
                raise SasTokenError(f"connection string names {_PART_NAMES.get(name, 'a part')} twice")
            values[name] = value.strip()
        endpoint = values.get("endpoint", values.get("hostname"))
        if not endpoint:
            raise SasTokenError("connection string has no Endpoint")
        try:
            host = split_host(endpoint, schemes=SCHEMES)
        except ValueError as exc:
            # Never echoed: an Endpoint may have swallowed other parts (',' typed for ';'),
            # the key among them. What is wrong with it is said instead.
            raise SasTokenError(f"connection string Endpoint is not an sb://host URL: {exc}") from None
        if host.userinfo:
            raise SasTokenError(
                "connection string Endpoint holds a user or password (user:password@): "
                "the key belongs in SharedAccessKey"
            )
        key_name = values.get("sharedaccesskeyname")
        key = values.get("sharedaccesskey")
        signature = values.get("sharedaccesssignature")
        if signature is None and (not key_name or not key):
            raise SasTokenError(
                "connection string needs SharedAccessKeyName and SharedAccessKey "
                "(or SharedAccessSignature)"
            )
        emulator = values.get("usedevelopmentemulator", "false").lower() == "true"
        return cls(
            endpoint=endpoint,
            fully_qualified_namespace=host.address,
            shared_access_key_name=key_name,
            shared_access_key=key,
            shared_access_signature=signature,
            entity_path=values.get("entitypath") or None,
            use_development_emulator=emulator,
        )

    def __str__(self) -> str:
        return redact(self.to_string())

    def to_string(self) -> str:
        """The full connection string, secrets included. Never log this."""
        parts = [f"Endpoint={self.endpoint}"]
        if self.shared_access_key_name:
            parts.append(f"SharedAccessKeyName={self.shared_access_key_name}")
        if self.shared_access_key:
            parts.append(f"SharedAccessKey={self.shared_access_key}")
        if self.shared_access_signature:
            parts.append(f"SharedAccessSignature={self.shared_access_signature}")
        if self.entity_path:
            parts.append(f"EntityPath={self.entity_path}")
        if self.use_development_emulator:
            parts.append("UseDevelopmentEmulator=true")
        return ";".join(parts)


# Names the SDK reads as the same part (it takes the last of Endpoint and HostName).
_SAME_AS = {"endpoint": "hostname", "hostname": "endpoint"}
_PART_NAMES = {
    "endpoint": "Endpoint (or HostName)",
    "hostname": "Endpoint (or HostName)",
    "sharedaccesskeyname": "SharedAccessKeyName",
    "sharedaccesskey": "SharedAccessKey",
    "sharedaccesssignature": "SharedAccessSignature",
    "entitypath": "EntityPath",
    "usedevelopmentemulator": "UseDevelopmentEmulator",
}


# -- where a namespace is: the one host parser ---------------------------------------------

AMQP_PORT = 5672  # the SDK's port for a namespace without TLS (UseDevelopmentEmulator=true)
SCHEMES = ("sb", "amqps", "amqp", "https")  # an Endpoint's, as the SDK reads them
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9.])?)(?::\d{1,5})?")


class Host(NamedTuple):
    """Where an address points: ``name`` in lower case (an IPv6 address without its
    brackets), ``port`` if one is written, and whether a ``user[:password]@`` came with it."""

    name: str
    port: int | None
    userinfo: bool

    @property
    def address(self) -> str:
        """``host[:port]``, an IPv6 host in brackets: a fully qualified namespace."""
        host = f"[{self.name}]" if ":" in self.name else self.name
        return host + (f":{self.port}" if self.port else "")


def split_host(address: str, *, schemes: Iterable[str] | None = None) -> Host:
    """The host of ``address``: ``host``, ``host:port``, ``[::1]:port`` or a URL
    ``scheme://[user@]host[:port]/...``; with ``schemes``, a URL with one of them.

    Raises:
        ValueError: no host, a scheme not among ``schemes``, an unclosed ``[IPv6`` address
            or a port that is not a number; the message says which and never quotes
            ``address`` (it may hold a key).
    """
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if schemes is not None:
        if not sep:
            raise ValueError("it has no scheme (sb://)")
        if scheme.lower() not in schemes:
            # A short word (ftp, http) is named; anything longer may be a pasted secret.
            short = scheme.isalpha() and len(scheme) <= 5
            raise ValueError(f"its scheme is {scheme!r}, not sb://" if short else "its scheme is not sb://")
    netloc = (rest if sep else text).split("/", 1)[0]
    try:
        parts = urlsplit("//" + netloc)
        port = parts.port
    except ValueError:  # a port that is not a number, a broken [IPv6]
        raise ValueError(_netloc_problem(netloc)) from None
    if not parts.hostname:
        raise ValueError(_netloc_problem(netloc))
    return Host(parts.hostname, port, "@" in parts.netloc)


def _netloc_problem(netloc: str) -> str:
    host = netloc.rpartition("@")[2]
    if not host or host.startswith(":"):
        return "it has no host"
    if host.startswith("[") and "]" not in host:
        return "its [IPv6 address] is not closed"
    return "its port is not a number from 0 to 65535"


def is_host(text: str) -> bool:
    """``text`` is a host name or address, with or without a port, and nothing else."""
    return _HOST.fullmatch(text) is not None


def host_problem(value: object, *, connection_string: str) -> str | None:
    """Why ``value`` is not a fully qualified namespace, and where it belongs; None when it is
    one. Never the value: ``connection_string`` names the setting a pasted one belongs in."""
    if isinstance(value, str) and is_host(value):
        return None
    looks = describe(value)
    if looks_like(value) == "connection_string":
        return f"got {looks}: put it in {connection_string}"
    if isinstance(value, str) and "://" in value:
        try:
            host = split_host(value)
        except ValueError:
            host = None
        if host is not None and is_host(host.name) and "@" not in value:
            return f"got {looks}: give its host name only, {host.name!r}"
    return f"must be a host name like 'contoso.servicebus.windows.net', got {looks}"


def namespace_identity(address: str, *, tls: bool) -> tuple[str, int | None]:
    """Which namespace ``address`` (``host``, ``host:port``, ``sb://host:port/``...) reaches:
    its host in lower case without a trailing dot, and its port where the port matters.

    Over TLS the SDK connects to the host's own port whatever the address says (it strips
    the port), so ``a.sb.net``, ``a.sb.net:5671`` and ``sb://A.SB.NET./`` are one namespace.
    Without TLS (a local namespace) the port is kept, 5672 when none is given: two local
    namespaces on 127.0.0.1 differ by their ports.
    """
    try:
        host = split_host(address)
    except ValueError:  # not host[:port]: compared as written
        return address.strip().lower(), None
    return host.name.rstrip("."), (None if tls else host.port or AMQP_PORT)


def normal_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets: the form ``urlsplit`` gives."""
    return host.strip().strip("[]").rstrip(".").lower()


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (also written ``[::1]`` or IPv4-mapped)."""
    host = normal_host(host)
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _signature(audience: str, expiry: int, key: str) -> str:
    to_sign = f"{quote_plus(audience)}\n{expiry}".encode()
    digest = hmac.new(key.encode("utf-8"), to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_sas_token(audience: str, key_name: str, key: str, expiry: int) -> str:
    """Build a ``SharedAccessSignature`` token exactly as azure-servicebus does."""
    query = {"sr": audience, "sig": _signature(audience, expiry, key), "se": str(expiry)}
    if key_name:
        # The SDK quotes the key name before urlencode quotes the whole query again.
        query["skn"] = quote_plus(key_name)
    return "SharedAccessSignature " + urlencode(query)


@dataclass(frozen=True)
class SasToken:
    """The parts of a SAS token. ``signature`` is kept out of the repr."""

    audience: str
    expiry: int
    key_name: str
    signature: str = field(repr=False)


def parse_sas_token(token: str) -> SasToken:
    """Split a ``SharedAccessSignature sr=..&sig=..&se=..&skn=..`` token.

    Raises:
        SasTokenError: the token is not of that form.
    """
    prefix = "SharedAccessSignature "
    if not isinstance(token, str) or not token.startswith(prefix):
        raise SasTokenError("token is not a SharedAccessSignature")
    fields = parse_qs(token[len(prefix) :], keep_blank_values=True)
    try:
        audience = fields["sr"][0]
        signature = fields["sig"][0]
        expiry = int(fields["se"][0])
    except (KeyError, IndexError, ValueError):
        raise SasTokenError("token lacks sr, sig or a numeric se") from None
    key_name = fields.get("skn", [""])[0]
    return SasToken(audience=audience, expiry=expiry, key_name=key_name, signature=signature)


def validate_sas_token(
    token: str, *, key_name: str, key: str, now: float | None = None
) -> SasToken:
    """Check ``token`` against ``key_name``/``key`` and return its parts.

    Raises:
        SasTokenError: malformed, wrong key name, bad signature or expired.
    """
    parsed = parse_sas_token(token)
    # azure-servicebus sends the key name quoted twice, so one decoding leaves it quoted.
    if parsed.key_name not in (key_name, quote_plus(key_name)):
        raise SasTokenError("token names an unknown shared access key")
    expected = _signature(parsed.audience, parsed.expiry, key)
    # Bytes, not str: compare_digest refuses str with non-ASCII characters (TypeError).
    if not hmac.compare_digest(expected.encode(), parsed.signature.encode("utf-8")):
        raise SasTokenError("token signature does not match the key")
    if parsed.expiry < (time.time() if now is None else now):
        raise SasTokenError("token has expired")
    return parsed
