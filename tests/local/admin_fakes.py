"""Helpers for the administration API's tests: an in-memory ``Registry`` and transports
that carry a real ``ServiceBusAdministrationClient``'s requests to ``AdminApi.handle``
in-process (no sockets)."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline.transport import AsyncHttpTransport, HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl
from azure.core.utils import case_insensitive_dict

from geobus.local._admin_api import AdminApi, Response
from geobus.local._admin_model import (
    DEFAULT_RULE,
    DEFAULTS,
    IMMUTABLE,
    ActionSpec,
    AdminError,
    Counts,
    EntityRecord,
    FilterSpec,
    Kind,
    RuleRecord,
)

HOST = "127.0.0.1:5671"
NAMESPACE = "localns"
# A connection string of the kind the local namespace prints; the key is no secret.
CONNECTION_STRING = (
    f"Endpoint=sb://{HOST}/;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=not-a-real-key"
)
T0 = datetime.datetime(2024, 3, 1, 8, 30, tzinfo=datetime.timezone.utc)


@dataclass
class FakeRegistry:
    """A dict-based ``Registry`` as the contract describes one: case-insensitive names,
    ``DEFAULTS`` filled in on create, every property required on update, 404/409/400."""

    namespace: str = NAMESPACE
    entities: dict[tuple[Kind, str, str], EntityRecord] = field(default_factory=dict)
    rules: dict[tuple[str, str], dict[str, RuleRecord]] = field(default_factory=dict)
    created_with: list[tuple[Kind, str, dict[str, Any]]] = field(default_factory=list)
    updated_with: list[tuple[Kind, str, dict[str, Any]]] = field(default_factory=list)
    clock: datetime.datetime = T0

    def _tick(self) -> datetime.datetime:
        self.clock += datetime.timedelta(seconds=1)
        return self.clock

    def _key(self, kind: Kind, name: str, topic: str | None) -> tuple[Kind, str, str]:
        return kind, (topic or "").lower(), name.lower()

    def _topic(self, topic: str | None) -> EntityRecord:
        if topic is None or self._key("topic", topic, None) not in self.entities:
            raise AdminError(404, f"Topic '{topic}' does not exist.")
        return self.entities[self._key("topic", topic, None)]

    def list_entities(self, kind: Kind, topic: str | None = None) -> list[EntityRecord]:
        if kind == "subscription":
            self._topic(topic)
        wanted = (topic or "").lower()
        found = [r for (k, t, _), r in self.entities.items() if k == kind and t == wanted]
        return [self._with_counts(record) for record in found]

    def get_entity(self, kind: Kind, name: str, topic: str | None = None) -> EntityRecord:
        if kind == "subscription":
            self._topic(topic)
        record = self.entities.get(self._key(kind, name, topic))
        if record is None:
            raise AdminError(404, f"The {kind} '{name}' does not exist.")
        return self._with_counts(record)

    def _with_counts(self, record: EntityRecord) -> EntityRecord:
        if record.kind != "topic":
            return record
        count = sum(
            1 for k, t, _ in self.entities if k == "subscription" and t == record.name.lower()
        )
        return replace(record, counts=replace(record.counts, subscription_count=count))

    def create_entity(
        self, kind: Kind, name: str, properties: dict[str, Any], topic: str | None = None
    ) -> EntityRecord:
        self.created_with.append((kind, name, dict(properties)))
        if kind == "subscription":
            self._topic(topic)
        elif any(self._key(other, name, None) in self.entities for other in ("queue", "topic")):
            raise AdminError(409, f"The messaging entity '{name}' already exists.")
        key = self._key(kind, name, topic)
        if key in self.entities:
            raise AdminError(409, f"The messaging entity '{name}' already exists.")
        unknown = set(properties) - set(DEFAULTS[kind])
        if unknown:
            raise AdminError(400, f"Unknown properties {sorted(unknown)}.")
        now = self._tick()
        record = EntityRecord(
            kind, name, {**DEFAULTS[kind], **properties}, now, now, now, Counts(), topic
        )
        self.entities[key] = record
        if kind == "subscription":
            self.rules[(key[1], key[2])] = {
                DEFAULT_RULE.lower(): RuleRecord(
                    DEFAULT_RULE, {"kind": "true"}, {"kind": "empty"}, now
                )
            }
        return record

    def update_entity(
        self, kind: Kind, name: str, properties: dict[str, Any], topic: str | None = None
    ) -> EntityRecord:
        self.updated_with.append((kind, name, dict(properties)))
        current = self.get_entity(kind, name, topic)
        if set(properties) != set(DEFAULTS[kind]):
            raise AdminError(400, "An update must carry every property.")
        for immutable in IMMUTABLE[kind]:
            if properties[immutable] != current.properties[immutable]:
                raise AdminError(400, f"The property {immutable} cannot be changed.")
        record = replace(current, properties=dict(properties), updated_at=self._tick())
        self.entities[self._key(kind, name, topic)] = record
        return record

    def delete_entity(self, kind: Kind, name: str, topic: str | None = None) -> None:
        self.get_entity(kind, name, topic)
        del self.entities[self._key(kind, name, topic)]
        if kind == "topic":
            for key in [
                key for key in self.entities if key[0] == "subscription" and key[1] == name.lower()
            ]:
                del self.entities[key]
                self.rules.pop((key[1], key[2]), None)
        if kind == "subscription":
            self.rules.pop(((topic or "").lower(), name.lower()), None)

    def _rules_of(self, topic: str, subscription: str) -> dict[str, RuleRecord]:
        self.get_entity("subscription", subscription, topic)
        return self.rules[(topic.lower(), subscription.lower())]

    def list_rules(self, topic: str, subscription: str) -> list[RuleRecord]:
        return list(self._rules_of(topic, subscription).values())

    def get_rule(self, topic: str, subscription: str, name: str) -> RuleRecord:
        rule = self._rules_of(topic, subscription).get(name.lower())
        if rule is None:
            raise AdminError(404, f"The rule '{name}' does not exist.")
        return rule

    def create_rule(
        self, topic: str, subscription: str, name: str, filter: FilterSpec, action: ActionSpec
    ) -> RuleRecord:
        rules = self._rules_of(topic, subscription)
        if name.lower() in rules:
            raise AdminError(409, f"The rule '{name}' already exists.")
        _check_filter(filter)
        rules[name.lower()] = RuleRecord(name, filter, action, self._tick())
        return rules[name.lower()]

    def update_rule(
        self, topic: str, subscription: str, name: str, filter: FilterSpec, action: ActionSpec
    ) -> RuleRecord:
        current = self.get_rule(topic, subscription, name)
        _check_filter(filter)
        rule = replace(current, filter=filter, action=action)
        self._rules_of(topic, subscription)[name.lower()] = rule
        return rule

    def delete_rule(self, topic: str, subscription: str, name: str) -> None:
        self.get_rule(topic, subscription, name)
        del self._rules_of(topic, subscription)[name.lower()]

    def namespace_name(self) -> str:
        return self.namespace

    # -- for the tests ---------------------------------------------------------------

    def set_counts(self, kind: Kind, name: str, counts: Counts, topic: str | None = None) -> None:
        key = self._key(kind, name, topic)
        self.entities[key] = replace(self.entities[key], counts=counts)


def _check_filter(filter: FilterSpec) -> None:
    if (
        filter.get("kind") == "sql"
        and "(" in filter.get("expression", "")
        and ")" not in filter["expression"]
    ):
        raise AdminError(400, "The SQL expression does not parse: a parenthesis is not closed.")


@dataclass
class Exchange:
    """One request the transport carried and the answer it got."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    response: Response


def _carry(api: AdminApi, request: Any, log: list[Exchange]) -> tuple[Response, dict[str, str]]:
    url = urlsplit(request.url)
    target = url.path + (f"?{url.query}" if url.query else "")
    content = request.content
    body = content.encode() if isinstance(content, str) else (content or b"")
    headers = {key.lower(): value for key, value in request.headers.items()}
    response = api.handle(request.method, target, headers, body)
    log.append(Exchange(request.method, target, headers, body, response))
    response_headers = dict(response.headers)
    response_headers["Content-Length"] = str(len(response.body))
    return response, response_headers


class _Closed:
    def close(self) -> None:
        pass


class _AsyncClosed:
    async def close(self) -> None:
        pass


class InProcessTransport(HttpTransport):  # type: ignore[misc]
    """Hands each request of a sync client to ``AdminApi.handle``."""

    def __init__(self, api: AdminApi) -> None:
        self.api = api
        self.log: list[Exchange] = []

    def __enter__(self) -> InProcessTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **kwargs: Any) -> HttpResponseImpl:
        response, headers = _carry(self.api, request, self.log)

        def stream(**_: Any) -> Iterator[bytes]:
            yield response.body

        answer = HttpResponseImpl(
            internal_response=_Closed(), stream_download_generator=stream, **_status(request, response, headers)
        )
        answer.read()  # as the requests transport does unless asked to stream
        return answer


def _status(request: Any, response: Any, headers: Any) -> dict[str, Any]:
    """What an azure-core response takes from ``AdminApi``'s, sync or async alike."""
    return {
        "request": request,
        "status_code": response.status,
        "reason": HTTPStatus(response.status).phrase,
        "content_type": response.headers.get("Content-Type"),
        "headers": case_insensitive_dict(headers),
    }


class AsyncInProcessTransport(AsyncHttpTransport):  # type: ignore[misc]
    """Hands each request of an async client to ``AdminApi.handle``."""

    def __init__(self, api: AdminApi) -> None:
        self.api = api
        self.log: list[Exchange] = []

    async def __aenter__(self) -> AsyncInProcessTransport:
        return self

    async def __aexit__(self, *args: Any) -> None:
        pass

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, request: Any, **kwargs: Any) -> AsyncHttpResponseImpl:
        response, headers = _carry(self.api, request, self.log)

        async def stream(**_: Any) -> AsyncIterator[bytes]:
            yield response.body

        answer = AsyncHttpResponseImpl(
            internal_response=_AsyncClosed(), stream_download_generator=stream, **_status(request, response, headers)
        )
        await answer.read()  # as aiohttp's transport does unless asked to stream
        return answer
