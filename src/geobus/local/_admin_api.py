"""The administration API's requests and answers, without sockets: ``AdminApi.handle``.

``_admin_http`` checks a request's SAS token and hands it here; this routes it as the
service does and answers with the Atom XML ``ServiceBusAdministrationClient`` (sync
and async, azure-servicebus 7.x) reads:

=======  =============================================  ==================================
Method   Target (``?api-version=...`` on every one)     Answer
=======  =============================================  ==================================
GET      ``/$namespaceinfo``                            the namespace's ``NamespaceInfo``
GET      ``/$Resources/queues`` (``topics``),           a feed of ``$top`` (at most 100)
         ``/{topic}/subscriptions``,                    entries from ``$skip``, with a
         ``/{topic}/subscriptions/{sub}/rules``         ``next`` link while more remain
GET      ``/{entity}``, ``/{topic}/subscriptions/       the entry; an empty feed (200)
         {sub}``, ``.../rules/{rule}``                  when there is none, as the service
PUT      the same                                       creates it (201), or with
                                                        ``If-Match`` updates it (200)
DELETE   the same                                       200, empty
=======  =============================================  ==================================

``{entity}`` is a queue or a topic (a name may hold ``/``: the SDK sends it as
``%2F``); the PUT's description says which. A registry's ``AdminError`` becomes the
service's ``<Error><Code>...</Code><Detail>...</Detail></Error>`` with its status, so
that the SDK raises what the service makes it raise (409 ``ResourceExistsError``, 404
``ResourceNotFoundError``, 400 ``HttpResponseError`` with the detail as its message).
An update sends every property: the request's over the service's defaults, keeping
the immutable ones the request leaves out (an element the SDK leaves out is one set
to None: ``forward_to=None`` clears forwarding). Authorization rules are kept here
beside the registry, per entity (as created: a rule set for an entity deleted since
does not show on a new one of its name).
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import quote

from . import _atom
from ._admin_api_request import (
    Request,
    Response,
    answer,
    error_response,
    now,
    url_path,
)
from ._admin_model import (
    DEFAULT_RULE,
    DEFAULTS,
    IMMUTABLE,
    AdminError,
    EntityRecord,
    Kind,
    Registry,
    RuleRecord,
)
from ._atom import DESCRIPTION_NAMESPACES, ENTRY_TYPE, FEED_TYPE, XML_TYPE, element
from ._atom_entities import (
    AuthorizationRule,
    DefaultRule,
    describe_entity,
    parse_entity,
    stamp_authorization_rules,
)
from ._atom_rules import describe_rule, parse_filter_and_action

_T = TypeVar("_T")


class AdminApi:
    """Answers administration requests from a ``Registry``; ``host`` (``127.0.0.1:5671``,
    or what returns it once the port is known) names the namespace in entries' ids and
    links and in ``ForwardTo`` URLs."""

    def __init__(self, registry: Registry, *, host: str | Callable[[], str]) -> None:
        self._registry = registry
        self._host_of = host if callable(host) else (lambda: host)
        self._started = now()
        self._lock = threading.Lock()
        self._authorization: dict[
            tuple[str, str, str], tuple[datetime.datetime, tuple[AuthorizationRule, ...]]
        ] = {}

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """The answer to one request (``target`` as sent: path and query)."""
        try:
            return self._route(Request.parse(method, target, headers, body))
        except AdminError as exc:
            return error_response(exc)

    # -- routing ---------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        segments = request.segments
        lowered = [segment.lower() for segment in segments]
        if not segments:
            request.only("GET")
            return answer(200, FEED_TYPE, _atom.empty_feed(now()))
        if lowered == ["$namespaceinfo"]:
            request.only("GET")
            return self._namespace(request)
        if lowered[0] == "$resources":
            if len(segments) == 2 and lowered[1] in ("queues", "topics"):
                request.only("GET")
                kind: Kind = "queue" if lowered[1] == "queues" else "topic"
                records = self._registry.list_entities(kind)
                return self._entity_feed(
                    request, records, segments[1].capitalize(), "$Resources/" + lowered[1]
                )
            raise AdminError(404, "No such resource collection: $Resources has queues and topics.")
        if len(segments) >= 2 and lowered[1] == "subscriptions":
            topic = segments[0]
            if len(segments) == 2:
                request.only("GET")
                records = self._registry.list_entities("subscription", topic)
                return self._entity_feed(
                    request, records, "Subscriptions", url_path(topic, "subscriptions")
                )
            if len(segments) == 3:
                return self._entity(request, segments[2], topic)
            if lowered[3] == "rules" and len(segments) in (4, 5):
                if len(segments) == 4:
                    request.only("GET")
                    return self._rule_feed(request, topic, segments[2])
                return self._rule(request, topic, segments[2], segments[4])
            raise AdminError(
                404, "No such resource: a subscription has rules and nothing else below it."
            )
        return self._entity(request, "/".join(segments), None)

    # -- queues, topics, subscriptions -----------------------------------------------

    def _entity(self, request: Request, name: str, topic: str | None) -> Response:
        request.only("GET", "PUT", "DELETE")
        kinds: tuple[Kind, ...] = ("subscription",) if topic is not None else ("queue", "topic")
        if request.method == "GET":
            record = self._find(kinds, name, topic)
            if record is None:
                return answer(200, FEED_TYPE, _atom.empty_feed(now()))
            return answer(200, ENTRY_TYPE, self._entity_entry(record, request.api_version))
        if request.method == "DELETE":
            self._delete(kinds, name, topic)
            return answer(200, XML_TYPE, "")
        put = parse_entity(_atom.description_of(request.body))
        if put.kind not in kinds:
            where = "/{topic}/subscriptions/{name}" if put.kind == "subscription" else "/{name}"
            raise AdminError(400, f"A {put.kind} is put at {where}.")
        if request.is_update:
            current = self._registry.get_entity(put.kind, name, topic)
            properties = dict(DEFAULTS[put.kind])
            for key in IMMUTABLE[put.kind]:
                properties[key] = current.properties.get(key, properties[key])
            properties.update(put.properties)
            record = self._registry.update_entity(put.kind, name, properties, topic)
        else:
            record = self._registry.create_entity(put.kind, name, put.properties, topic)
            if put.default_rule is not None:
                self._set_default_rule(record, put.default_rule)
        self._keep_authorization(record, put.authorization_rules)
        status = 200 if request.is_update else 201
        return answer(status, ENTRY_TYPE, self._entity_entry(record, request.api_version))

    def _find(self, kinds: Sequence[Kind], name: str, topic: str | None) -> EntityRecord | None:
        for kind in kinds:
            try:
                return self._registry.get_entity(kind, name, topic)
            except AdminError as exc:
                if exc.status != 404:
                    raise
        return None

    def _delete(self, kinds: Sequence[Kind], name: str, topic: str | None) -> None:
        for kind in kinds:
            try:
                self._registry.delete_entity(kind, name, topic)
            except AdminError as exc:
                if exc.status != 404:
                    raise
                continue
            with self._lock:
                self._authorization.pop(_key(kind, topic, name), None)
            return
        if topic is None:
            raise AdminError(404, f"No queue or topic named '{name[:260]}' exists.")
        raise AdminError(404, f"No subscription '{name[:260]}' of topic '{topic[:260]}' exists.")

    def _set_default_rule(self, record: EntityRecord, rule: DefaultRule) -> None:
        """Gives a new subscription the rule its ``DefaultRuleDescription`` names instead
        of the true ``$Default`` (or removes the subscription again and refuses)."""
        topic = record.topic or ""
        try:
            if rule.name.casefold() == DEFAULT_RULE.casefold():
                try:
                    self._registry.update_rule(
                        topic, record.name, DEFAULT_RULE, rule.filter, rule.action
                    )
                except AdminError as exc:
                    if exc.status != 404:
                        raise
                    self._registry.create_rule(
                        topic, record.name, DEFAULT_RULE, rule.filter, rule.action
                    )
            else:
                self._registry.create_rule(topic, record.name, rule.name, rule.filter, rule.action)
                _ignore_missing(
                    lambda: self._registry.delete_rule(topic, record.name, DEFAULT_RULE)
                )
        except AdminError:
            _ignore_missing(
                lambda: self._registry.delete_entity("subscription", record.name, topic)
            )
            raise

    def _entity_entry(self, record: EntityRecord, api_version: str) -> str:
        path = (
            url_path(record.name)
            if record.topic is None
            else url_path(record.topic, "subscriptions", record.name)
        )
        url = self._url(path, api_version)
        content = describe_entity(
            record,
            host=self._host_of(),
            authorization_rules=self._authorization_of(record),
            filter_counts=self._filter_counts(record.name) if record.kind == "topic" else (0, 0),
        )
        author = None if record.kind == "subscription" else self._registry.namespace_name()
        return _atom.entry(
            url=url,
            title=record.name,
            published=record.created_at,
            updated=record.updated_at,
            author=author,
            content=content,
        )

    def _entity_feed(
        self, request: Request, records: list[EntityRecord], title: str, path: str
    ) -> Response:
        def render(record: EntityRecord) -> str:
            return self._entity_entry(record, request.api_version)

        return self._feed(
            request, sorted(records, key=lambda record: record.name.casefold()), render, title, path
        )

    def _filter_counts(self, topic: str) -> tuple[int, int]:
        """A topic's SQL (true and false ones included) and correlation filters."""
        sql = correlation = 0
        try:
            subscriptions = self._registry.list_entities("subscription", topic)
        except AdminError:
            return 0, 0
        for subscription in subscriptions:
            try:
                rules = self._registry.list_rules(topic, subscription.name)
            except AdminError:  # gone meanwhile
                continue
            for rule in rules:
                if rule.filter.get("kind") == "correlation":
                    correlation += 1
                else:
                    sql += 1
        return sql, correlation

    # -- authorization rules -----------------------------------------------------------

    def _keep_authorization(
        self, record: EntityRecord, rules: tuple[AuthorizationRule, ...]
    ) -> None:
        key = _key(record.kind, record.topic, record.name)
        with self._lock:
            if rules:
                self._authorization[key] = (
                    record.created_at,
                    stamp_authorization_rules(rules, now()),
                )
            else:
                self._authorization.pop(key, None)

    def _authorization_of(self, record: EntityRecord) -> tuple[AuthorizationRule, ...]:
        with self._lock:
            kept = self._authorization.get(_key(record.kind, record.topic, record.name))
        return kept[1] if kept is not None and kept[0] == record.created_at else ()

    # -- rules -------------------------------------------------------------------------

    def _rule(self, request: Request, topic: str, subscription: str, name: str) -> Response:
        request.only("GET", "PUT", "DELETE")
        path = url_path(topic, "subscriptions", subscription, "rules", name)
        if request.method == "GET":
            try:
                record = self._registry.get_rule(topic, subscription, name)
            except AdminError as exc:
                if exc.status != 404:
                    raise
                return answer(200, FEED_TYPE, _atom.empty_feed(now()))
            return answer(
                200,
                ENTRY_TYPE,
                self._rule_entry(record_path=path, record=record, api_version=request.api_version),
            )
        if request.method == "DELETE":
            self._registry.delete_rule(topic, subscription, name)
            return answer(200, XML_TYPE, "")
        filter_, action = parse_filter_and_action(_atom.description_of(request.body))
        if request.is_update:
            record = self._registry.update_rule(topic, subscription, name, filter_, action)
        else:
            record = self._registry.create_rule(topic, subscription, name, filter_, action)
        status = 200 if request.is_update else 201
        return answer(
            status,
            ENTRY_TYPE,
            self._rule_entry(record_path=path, record=record, api_version=request.api_version),
        )

    def _rule_feed(self, request: Request, topic: str, subscription: str) -> Response:
        records = self._registry.list_rules(topic, subscription)

        def render(record: RuleRecord) -> str:
            path = url_path(topic, "subscriptions", subscription, "rules", record.name)
            return self._rule_entry(
                record_path=path, record=record, api_version=request.api_version
            )

        ordered = sorted(records, key=lambda record: record.name.casefold())
        return self._feed(
            request,
            ordered,
            render,
            "Rules",
            url_path(topic, "subscriptions", subscription, "rules"),
        )

    def _rule_entry(self, *, record_path: str, record: RuleRecord, api_version: str) -> str:
        return _atom.entry(
            url=self._url(record_path, api_version),
            title=record.name,
            published=record.created_at,
            updated=record.created_at,
            author=None,
            content=describe_rule(record),
        )

    # -- the namespace and feeds -------------------------------------------------------

    def _namespace(self, request: Request) -> Response:
        name = self._registry.namespace_name()
        started = _atom.format_time(self._started)
        content = (
            f"<NamespaceInfo {DESCRIPTION_NAMESPACES}>{element('CreatedTime', started)}"
            f"{element('MessagingSKU', 'Standard')}{element('ModifiedTime', started)}"
            f"{element('Name', name)}{element('NamespaceType', 'Messaging')}</NamespaceInfo>"
        )
        url = self._url("$namespaceinfo", request.api_version)
        document = _atom.entry(
            url=url, title=name, published=None, updated=now(), author=name, content=content
        )
        return answer(200, ENTRY_TYPE, document)

    def _feed(
        self, request: Request, items: list[_T], render: Callable[[_T], str], title: str, path: str
    ) -> Response:
        skip, top = request.paging()
        end = skip + top
        next_url = (
            self._url(path, request.api_version, (end, top)) if top and end < len(items) else None
        )
        document = _atom.feed(
            url=self._url(path, request.api_version, (skip, top)),
            title=title,
            updated=now(),
            entries=[render(item) for item in items[skip:end]],
            next_url=next_url,
        )
        return answer(200, FEED_TYPE, document)

    def _url(self, path: str, api_version: str, page: tuple[int, int] | None = None) -> str:
        query = f"$skip={page[0]}&$top={page[1]}&" if page is not None else ""
        return f"https://{self._host_of()}/{path}?{query}api-version={quote(api_version, safe='')}"


def _key(kind: str, topic: str | None, name: str) -> tuple[str, str, str]:
    return kind, (topic or "").casefold(), name.casefold()


def _ignore_missing(operation: Callable[[], object]) -> None:
    try:
        operation()
    except AdminError as exc:
        if exc.status != 404:
            raise


__all__ = ["AdminApi", "Response"]
