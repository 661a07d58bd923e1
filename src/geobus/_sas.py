"""Service Bus shared-access-signature helpers: connection strings and SAS tokens.

Used by the client configuration (to parse and redact connection strings) and by
the local namespace (to validate the tokens the SDK puts on ``$cbs``). A key or a
signature never appears in a repr, a log line or an exception raised here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

__all__ = [
    "ConnectionString",
    "SasTokenError",
    "generate_sas_token",
    "parse_sas_token",
    "redact",
    "validate_sas_token",
]

_SECRET_KEYS = ("sharedaccesskey", "sharedaccesssignature")


class SasTokenError(ValueError):
    """A SAS token or connection string is malformed or does not verify.

    The message names what is wrong and never contains the key or signature.
    """


def redact(text: str) -> str:
    """Return ``text`` with the values of secret connection-string parts masked."""
    parts = []
    for part in text.split(";"):
        name, sep, _value = part.partition("=")
        if sep and name.strip().lower() in _SECRET_KEYS:
            parts.append(f"{name}=***")
        else:
            parts.append(part)
    return ";".join(parts)


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
            values[name.strip().lower()] = value.strip()
        endpoint = values.get("endpoint")
        if not endpoint:
            raise SasTokenError("connection string has no Endpoint")
        parsed = urlsplit(endpoint)
        try:
            port = parsed.port
        except ValueError:  # a port that is not a number: report it as a bad Endpoint
            port = -1
        if parsed.scheme not in ("sb", "amqps", "amqp", "https") or not parsed.hostname or port == -1:
            # A URL has no '='; an Endpoint with one has swallowed other parts (',' typed for
            # ';'), the key among them, so it is not echoed.
            shown = repr(endpoint) if "=" not in endpoint else "(not shown: it holds other parts)"
            raise SasTokenError(f"connection string Endpoint {shown} is not an sb:// URL")
        fqdn = parsed.hostname + (f":{port}" if port else "")
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
            fully_qualified_namespace=fqdn,
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
