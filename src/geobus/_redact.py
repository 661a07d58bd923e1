"""The one redactor: text fit to print, with every secret geobus knows the shape of masked.

The library (reprs, exceptions), the commands (every line they print), the drill
(what its agents wrote to stderr) and the seen-set stores (their URLs) all print
through ``redact``. Its rules are the ``_SHAPES`` table, applied in order:

- ``SharedAccessKey=``, ``SharedAccessSignature=``, ``AccountKey=`` and
  ``password=`` (also ``passwd``/``pwd``; ``:`` for ``=`` too), any case, in a
  connection string (``;``), an Azure-portal Redis string
  (``host:6380,password=...,ssl=True``), a URL query (``&``), YAML or JSON;
- ``sig=`` of a SAS token, plain or URL-encoded (``sig%3D``);
- whatever stands before the last ``@`` of a URL's authority (``user:password@``,
  ``redis://:password@``, ``redis:password@``), whatever the scheme.

A secret's value becomes ``***`` whole, never a prefix of it; the name before it
stays, so a reader still sees which part was hidden. Redacting is idempotent.

``describe`` is for error messages: it says what a value that failed to parse looks
like ("what looks like a connection string") rather than quoting it, and sums up an
exception in one redacted line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["LOOKS_LIKE", "MASK", "RedactingFilter", "describe", "looks_like", "redact", "redact_logs"]

MASK = "***"
# A known secret shorter than this is not masked where it stands alone: replacing every
# "s" of a test key "s" would garble the text and hide nothing real.
MIN_KNOWN_SECRET = 6
MAX_ERROR_TEXT = 200  # of an exception's first line, in ``describe``

# A secret's value runs to the next separator of a connection string (;), an Azure-portal
# Redis string (,), a URL query (&) or of prose (whitespace, quotes, brackets). '%26' is
# not a separator: a value cut there could leave the rest of a signature behind.
_VALUE = r"""[^;,&\s"'<>()\[\]{}]*"""
_NAMES = r"SharedAccessKey|SharedAccessSignature|AccountKey|password|passwd|pwd"
# Where a name starts: not after a letter or digit (so "SharedAccessKeyName" and "Xpassword"
# do not match) but after "_" (REDIS_PASSWORD=...), or after an encoded '&', ';' or ','
# (a token or a connection string URL-encoded once more: "...%26sig%3D...").
_START = r"(?:(?<![a-z0-9])|(?<=%26)|(?<=%3b)|(?<=%2c))"

# (what it hides, pattern, replacement): the one table of shapes.
_SHAPES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "a named secret in a connection string, a Redis string or a URL query",
        # '=' (also URL-encoded) or ':' (YAML, JSON, a "SharedAccessKey:..." typo).
        # A quoted value runs to its closing quote, spaces and all ("correct horse battery").
        re.compile(rf"""(?i){_START}({_NAMES})([\"']?\s*(?:=|:|%3D|%253D)\s*)(?:(["'])(?:(?!\3).)*\3?|{_VALUE})"""),
        rf"\1\2\3{MASK}\3",
    ),
    (
        "a SAS token's signature",
        re.compile(rf"(?i){_START}(sig)(=|%3D|%253D){_VALUE}"),
        rf"\1\2{MASK}",
    ),
    (
        "the user and password of a URL, up to the last '@' (a password may hold '@', '/', '?')",
        # "scheme:" with or without "//", so "redis:pw@host" and "user:pw@host" are caught too.
        re.compile(r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*:(?://)?)\S*@"),
        rf"\1{MASK}@",
    ),
)


def redact(text: object, known: Iterable[str | None] = ()) -> str:
    """``text`` (or its ``str``) with every secret of a known shape, and each of the
    ``known`` secrets wherever it stands (also URL-encoded), replaced by ``***``."""
    result = str(text)
    for secret in known:
        if secret and len(secret) >= MIN_KNOWN_SECRET:
            for form in {secret, quote_plus(secret), quote(secret, safe="")}:
                result = result.replace(form, MASK)
    for _what, pattern, replacement in _SHAPES:
        result = pattern.sub(replacement, result)
    return result


_KEY_LIKE = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")

# What a value that did not parse may be, in the order they are checked.
LOOKS_LIKE = {
    "connection_string": "what looks like a Service Bus connection string",
    "redis_portal": "what looks like an Azure-portal Redis connection string (host:port,password...,ssl=True)",
    "secret_settings": "what looks like settings with a secret in them",
    "userinfo": "what looks like a user and password (it holds '@')",
    "key": "what looks like a key or a token",
}


def looks_like(value: object) -> str | None:
    """The ``LOOKS_LIKE`` kind of secret-bearing text ``value`` is, if any."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    lowered = text.lower()
    if "sharedaccesskey" in lowered or "sharedaccesssignature" in lowered or lowered.startswith("endpoint="):
        return "connection_string"
    if re.search(r"(?i),\s*password\s*=", text):
        return "redis_portal"
    if re.search(rf"(?i)(?<![a-z0-9])(?:{_NAMES}|sig)\s*=", text):
        return "secret_settings"
    if "@" in text and not _SCHEME.match(text):
        return "userinfo"
    if _KEY_LIKE.fullmatch(text) and (re.search(r"[+/=]", text) or ("." not in text and re.search(r"\d", text))):
        return "key"
    return None


def describe(value: object, *, prefix: bool = True) -> str:
    """What ``value`` is, for a message about it, never quoting what may be a secret: the one
    describer of geobus's errors and of what its commands print about a failure.

    ``prefix=False`` never shows any of a string's characters (a message's fields: an
    application's data is not geobus's to print), only what it looks like and its length.

    - a number, a flag or None: as it is (nothing secret to hide);
    - bytes: their type and size;
    - an exception: its type and the first line of its message, redacted, at most
      ``MAX_ERROR_TEXT`` characters (``"TimeoutError: no answer"``);
    - a string: what it looks like (``LOOKS_LIKE``), a URL's scheme, or at most a prefix of a
      few characters (never more than half of it) when it looks like nothing in particular.

    >>> describe("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=abc")
    'what looks like a Service Bus connection string'
    """
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        return f"{type(value).__name__} of {len(value)} bytes"
    if isinstance(value, BaseException):
        lines = str(value).splitlines()
        text = redact(lines[0])[:MAX_ERROR_TEXT] if lines else ""
        return f"{type(value).__name__}: {text}" if text else type(value).__name__
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    text = value.strip()
    if not text:
        return "an empty value"
    kind = looks_like(text)
    if kind is not None:
        return LOOKS_LIKE[kind]
    scheme = _SCHEME.match(text)
    if scheme:
        return f"a URL ({scheme.group(1).lower()}://...)" + (" with a user or password" if "@" in text else "")
    if not prefix:
        return f"str of {len(value)} characters"
    if len(text) <= 32:
        try:
            float(text)
        except ValueError:
            pass
        else:
            return repr(text)  # a number in the wrong range or form: no one's key
    shown = text[: min(4, len(text) // 2)]
    if not shown:
        return f"a {len(text)}-character value"
    return f"a value starting {shown!r} ({len(text)} characters)"


class RedactingFilter(logging.Filter):
    """Rewrites each record of a geobus logger through ``redact`` before any handler sees it:
    an SDK error or a URL that a log line quotes cannot carry a key out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # The traceback's text is made by the handler's formatter: make it here, redacted.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


# Every logger geobus writes to; a filter on "geobus" does not see its children's records.
_LOGGERS = ("geobus", "geobus.local", "geobus.testing")


def redact_logs() -> None:
    """Put a ``RedactingFilter`` on each of geobus's loggers, once."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
