"""One administration request as ``AdminApi`` routes it, and the answers it gives.

A request-target is split into its path's segments, each percent-decoded (the SDK
sends a ``/`` inside a name as ``%2F``, so a segment is never split inside a name),
and its query's parameters (``api-version``, ``$skip``, ``$top``, ``enrich``). A PUT
with ``If-Match`` (the SDK's update sends ``If-Match: *``) updates; without, it
creates. HEAD is answered as GET (the HTTP side sends no body).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

from . import _atom
from ._admin_model import AdminError
from ._atom import XML_TYPE

DEFAULT_API_VERSION = "2021-05"
PAGE_LIMIT = 100  # entries in one feed at most, as the service pages


@dataclass(frozen=True)
class Response:
    """An HTTP answer: status, headers (``Content-Type`` always) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class NotAllowed(AdminError):
    """A method the target does not take (405, with the ones it takes)."""

    def __init__(self, method: str, allowed: str) -> None:
        super().__init__(405, f"The specified HTTP verb ({method[:16]}) is not valid here.")
        self.allowed = allowed


@dataclass(frozen=True)
class Request:
    method: str
    segments: tuple[str, ...]
    query: dict[str, str]
    is_update: bool
    body: bytes

    @classmethod
    def parse(cls, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Request:
        path, _, query = target.partition("#")[0].partition("?")
        if "://" in path:  # absolute-form: drop the scheme and authority
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        trimmed = path.strip("/")
        segments = tuple(unquote(part) for part in trimmed.split("/")) if trimmed else ()
        parameters = {key.lower(): value for key, value in parse_qsl(query, keep_blank_values=True)}
        is_update = any(key.lower() == "if-match" for key in headers)
        verb = method.upper()
        return cls("GET" if verb == "HEAD" else verb, segments, parameters, is_update, body)

    @property
    def api_version(self) -> str:
        return self.query.get("api-version") or DEFAULT_API_VERSION

    def only(self, *methods: str) -> None:
        """Refuses the request (405) unless its method is one of these."""
        if self.method not in methods:
            raise NotAllowed(self.method, ", ".join(methods))

    def paging(self) -> tuple[int, int]:
        """``$skip`` (0) and ``$top`` (100, and no more)."""
        skip = self._count("$skip", 0)
        return skip, min(self._count("$top", PAGE_LIMIT), PAGE_LIMIT)

    def _count(self, name: str, default: int) -> int:
        text = self.query.get(name)
        if text is None or text == "":
            return default
        if not (text.isascii() and text.isdigit()):
            raise AdminError(400, f"The query parameter {name} must be a count, not '{text[:20]}'.")
        return int(text)


def url_path(*names: str) -> str:
    """Names as a URL path (each quoted, ``$`` kept as the service writes ``$Default``)."""
    return "/".join(quote(name, safe="$") for name in names)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def answer(status: int, content_type: str, document: str) -> Response:
    return Response(status, {"Content-Type": content_type}, document.encode("utf-8"))


def error_response(exc: AdminError) -> Response:
    """The service's error body for a refusal, with ``Allow`` for a 405."""
    response = answer(exc.status, XML_TYPE, _atom.error(exc.status, exc.message))
    if isinstance(exc, NotAllowed):
        response.headers["Allow"] = exc.allowed
    return response
