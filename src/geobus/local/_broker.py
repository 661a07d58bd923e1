"""The local namespace's entities and what a send, a receive or a settlement does.

No I/O: the server's loop calls in with the current time, then asks
``take_changes()`` for what to persist before any reply leaves the socket.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ._administered import Administered
from ._codec import ParsedMessage
from ._entities import EntitySettings, MessageLog, MessageState, StoredMessage
from ._routing import FILTER_EXCEPTION_REASON, Copy, gives_everything, route
from ._sessions import SESSION_REQUIRED, SessionRequired

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
SUBSCRIPTIONS = "/subscriptions/"


class EntityNotFound(LookupError):
    """The address names no entity and the namespace does not create on first use."""


class BadAddress(ValueError):
    """The address cannot name a Service Bus entity (for example, a send to a subscription)."""


def entity_path(address: str) -> str:
    """Normalise a link address (``amqps://host:port/q``, ``q``, ``/q``) to ``q``.

    Service Bus entity names are case-insensitive; so are these paths.

    Raises:
        BadAddress: the address is empty, or not a URL (an unclosed or invalid
            IPv6 host, say).
    """
    if "://" in address:
        try:
            address = urlsplit(address).path
        except ValueError as exc:
            raise BadAddress("the address is not a valid URL") from exc
    path = unquote(address).strip("/").lower()
    if not path:
        raise BadAddress("empty entity address")
    return path


@dataclass
class Topic:
    path: str
    settings: EntitySettings
    subscriptions: dict[str, MessageLog] = field(default_factory=dict)


Change = tuple[str, StoredMessage, bool]
StateChange = tuple[str, str, bytes | None, float]
"""(log path, session id, state or None, when it was set)."""


class Broker:
    """Every entity of one namespace. Not thread-safe: the server's loop owns it."""

    def __init__(
        self,
        settings: EntitySettings | None = None,
        *,
        auto_create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or EntitySettings()
        self.auto_create = auto_create
        self.clock = clock
        self.queues: dict[str, MessageLog] = {}
        self.topics: dict[str, Topic] = {}
        self._sequence: dict[str, int] = {}
        self._recent_ids: dict[str, OrderedDict[str, float]] = {}
        self._changes: list[Change] = []
        self._changed_seq: set[str] = set()
        self._state_changes: list[StateChange] = []
        self.admin = Administered()  # the administration API's records and rules

    # -- declaring -----------------------------------------------------------

    def declare_queue(self, name: str, settings: EntitySettings | None = None) -> MessageLog:
        """Queue ``name``, created if missing; ``settings``, if given, apply to it either way."""
        path = entity_path(name)
        if path in self.topics:
            raise BadAddress(f"{name!r} is already a topic")
        if path not in self.queues:
            self.queues[path] = MessageLog(path, settings or self.settings, self._record)
        elif settings is not None and settings != self.queues[path].settings:
            self.queues[path].reconfigure(settings)
        return self.queues[path]

    def declare_topic(
        self, name: str, subscriptions: Iterable[str] = (), settings: EntitySettings | None = None
    ) -> Topic:
        path = entity_path(name)
        if path in self.queues:
            raise BadAddress(f"{name!r} is already a queue")
        topic = self.topics.setdefault(path, Topic(path, settings or self.settings))
        if settings is not None:
            topic.settings = settings  # declared again: the new settings apply
        for sub in subscriptions:
            self.declare_subscription(path, sub)
        return topic

    def declare_subscription(
        self, topic: str, name: str, settings: EntitySettings | None = None
    ) -> MessageLog:
        owner = self.topics.get(entity_path(topic)) or self.declare_topic(topic)
        sub = entity_path(name)
        if sub not in owner.subscriptions:
            owner.subscriptions[sub] = MessageLog(
                f"{owner.path}{SUBSCRIPTIONS}{sub}", settings or owner.settings, self._record
            )
        elif settings is not None and settings != owner.subscriptions[sub].settings:
            owner.subscriptions[sub].reconfigure(settings)
        return owner.subscriptions[sub]

    # -- resolving -----------------------------------------------------------

    def send_target(self, address: str) -> MessageLog | Topic:
        """The queue or topic a sender link writes to.

        Raises:
            EntityNotFound: unknown, and the namespace does not create on first use.
            BadAddress: a subscription or dead-letter queue cannot be sent to.
        """
        path = entity_path(address)
        if SUBSCRIPTIONS in path or path.endswith(DEAD_LETTER_SUFFIX):
            raise BadAddress(f"cannot send to {path!r}")
        if path in self.topics:
            return self.topics[path]
        if path in self.queues:
            return self.queues[path]
        if not self.auto_create:
            raise EntityNotFound(path)
        return self.declare_queue(path)

    def receive_source(self, address: str) -> MessageLog:
        """The log a receiver link reads: a queue, a subscription or a dead-letter queue.

        Raises:
            EntityNotFound: unknown, and the namespace does not create on first use.
        """
        path = entity_path(address)
        dead_letter = path.endswith(DEAD_LETTER_SUFFIX)
        if dead_letter:
            path = path[: -len(DEAD_LETTER_SUFFIX)]
        if SUBSCRIPTIONS in path:
            topic, _, sub = path.partition(SUBSCRIPTIONS)
            owner = self.topics.get(topic)
            if owner is not None and sub in owner.subscriptions:
                log = owner.subscriptions[sub]
            elif self.auto_create and topic not in self.queues:
                log = self.declare_subscription(topic, sub)
            else:
                raise EntityNotFound(path)
        elif path in self.queues:
            log = self.queues[path]
        elif self.auto_create and path not in self.topics:
            log = self.declare_queue(path)
        else:
            raise EntityNotFound(path)
        if dead_letter:
            assert log.dead_letter is not None
            return log.dead_letter
        return log

    def log(self, path: str) -> MessageLog | None:
        """The log stored under ``path`` (as the store names it), if it exists."""
        try:
            return self.receive_source(path)
        except (EntityNotFound, BadAddress):
            return None

    def all_logs(self) -> Iterable[MessageLog]:
        for log in self._top_logs():
            yield log
            if log.dead_letter is not None:
                yield log.dead_letter

    def _top_logs(self) -> Iterable[MessageLog]:
        yield from self.queues.values()
        for topic in self.topics.values():
            yield from topic.subscriptions.values()

    # -- sending -------------------------------------------------------------

    def next_sequence(self, entity: str) -> int:
        seq = self._sequence.get(entity, 0) + 1
        self._sequence[entity] = seq
        self._changed_seq.add(entity)
        return seq

    def restore_sequence(self, entity: str, seq: int) -> None:
        self._sequence[entity] = max(seq, self._sequence.get(entity, 0))

    def enqueue(
        self,
        target: MessageLog | Topic,
        parsed: ParsedMessage,
        *,
        scheduled_at: float | None = None,
    ) -> int | None:
        """Store one sent message; return its sequence number, or None if it was
        dropped as a duplicate (duplicate detection is then on for the entity).

        Raises:
            SessionRequired: see ``check_session`` (nothing is stored).
        """
        self.check_session(target, parsed)
        now = self.clock()
        settings = target.settings
        if settings.duplicate_detection_window and self._is_duplicate(
            target.path, parsed.message_id, settings.duplicate_detection_window, now
        ):
            return None
        seq = self.next_sequence(target.path)
        if scheduled_at is None:
            scheduled_at = _scheduled_time(parsed)
        if scheduled_at is not None and scheduled_at <= now:
            scheduled_at = None  # due already: an ordinary send
        header, ttl = _effective_ttl(parsed, settings.default_ttl)
        # A scheduled message's time to live starts when it appears, as in Service Bus.
        live_from = now if scheduled_at is None else scheduled_at
        message = StoredMessage(
            seq=seq,
            header=header,
            annotations=parsed.annotations,
            rest=parsed.rest,
            message_id=parsed.message_id,
            enqueued_at=now,
            expires_at=(live_from + ttl) if ttl else None,
            session_id=parsed.session_id,
        )
        if scheduled_at is not None:
            message.state = MessageState.SCHEDULED
            message.scheduled_at = scheduled_at
        if isinstance(target, Topic):
            for sub in target.subscriptions.values():
                self._deliver(sub, message, parsed, live_from)
        else:
            target.add(message)
        return seq

    def _deliver(
        self, sub: MessageLog, message: StoredMessage, parsed: ParsedMessage, live_from: float
    ) -> None:
        """Give ``sub`` the copies its rules select (one, unchanged, without rules of its own)."""
        rules = self.admin.rules.get(sub.path)
        copies: list[Copy | None]
        if rules is None or gives_everything(rules):
            copies = [None]
        else:
            copies = []
            for routed in route(rules, parsed, message.enqueued_at):
                if routed.failed is not None:
                    copy = _for_subscription(message, sub.settings.default_ttl, parsed, live_from)
                    if self.admin.dead_letters_failures(sub.path):
                        sub.dead_letter_copy(copy, FILTER_EXCEPTION_REASON, routed.failed)
                    continue
                copies.append(routed)
        for index, chosen in enumerate(copies):
            copy = _for_subscription(message, sub.settings.default_ttl, parsed, live_from)
            if index:  # a rule's own copy is a message of its own in the subscription
                copy.origin = copy.seq
                copy.seq = self.next_sequence(sub.path.partition(SUBSCRIPTIONS)[0])
            if chosen is not None:
                copy.rest = chosen.rest
                if chosen.fields is not None:  # an action may have set them
                    copy.message_id, copy.session_id = chosen.fields[0], chosen.fields[10]
            if sub.requires_session and copy.session_id is None:
                sub.reject_without_session(copy)
            else:
                sub.add(copy)

    # -- the administration API's changes ------------------------------------------

    def delete_entity(self, path: str) -> None:
        """Remove a queue, a topic (with its subscriptions) or a subscription, and its
        messages; the server detaches its links, the store forgets it."""
        logs: list[MessageLog]
        if SUBSCRIPTIONS in path:
            topic, _, sub = path.partition(SUBSCRIPTIONS)
            logs = [self.topics[topic].subscriptions.pop(sub)]
        elif path in self.topics:
            logs = list(self.topics.pop(path).subscriptions.values())
        else:
            logs = [self.queues.pop(path)]
        for log in logs:
            # A sender or receiver link may still reach it this turn: what it does there
            # is not recorded, so the store cannot bring the entity back.
            log.deleted = True
            if log.dead_letter is not None:
                log.dead_letter.deleted = True
        gone = [path, *(log.path for log in logs if log.path != path)]
        for each in gone:
            self._recent_ids.pop(each, None)
            self._sequence.pop(each, None)
            self._changed_seq.discard(each)
        self._changes = [c for c in self._changes if c[0].removesuffix(DEAD_LETTER_SUFFIX) not in gone]
        self.admin.forget(gone)

    def check_session(self, target: MessageLog | Topic, parsed: ParsedMessage) -> None:
        """Refuse a message without a session id for a queue that requires sessions (a
        topic takes it: each session-enabled subscription dead-letters its copy).

        Raises:
            SessionRequired: the queue requires sessions and the message has no id.
        """
        if isinstance(target, MessageLog) and target.requires_session and not parsed.session_id:
            raise SessionRequired(SESSION_REQUIRED)

    def set_session_state(self, log: MessageLog, session_id: str, state: bytes | None) -> None:
        """Set (or, with None, clear) a session's state, to be persisted."""
        assert log.sessions is not None
        now = self.clock()
        log.sessions.set_state(session_id, state, now)
        self._state_changes.append((log.path, session_id, state, now))

    def take_state_changes(self) -> list[StateChange]:
        """Session states set since the last call (the store persists them)."""
        changes, self._state_changes = self._state_changes, []
        return changes

    def _is_duplicate(self, path: str, message_id: Any, window: float, now: float) -> bool:
        if message_id is None:
            return False
        recent = self._recent_ids.setdefault(path, OrderedDict())
        while recent and next(iter(recent.values())) <= now - window:
            recent.popitem(last=False)
        key = str(message_id)
        if key in recent:
            return True
        recent[key] = now
        return False

    def cancel_scheduled(self, target: MessageLog | Topic, seq: int) -> None:
        if not isinstance(target, Topic):
            target.cancel_scheduled(seq)
            return
        for log in target.subscriptions.values():
            log.cancel_scheduled(seq)
            for copy in [m for m in log.messages.values() if m.origin == seq]:
                log.cancel_scheduled(copy.seq)  # a rule's copy of the same message

    # -- time and persistence --------------------------------------------------

    def tick(self) -> list[MessageLog]:
        """Expire locks, activate scheduled messages; the logs that gained ready messages."""
        now = self.clock()
        return [log for log in self.all_logs() if log.tick(now)]

    def next_deadline(self) -> float | None:
        deadlines = [d for log in self.all_logs() if (d := log.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    def _record(self, log: MessageLog, message: StoredMessage, deleted: bool) -> None:
        if not log.deleted:
            self._changes.append((log.path, message, deleted))

    def take_changes(self) -> tuple[list[Change], dict[str, int]]:
        """What changed since the last call: messages, and sequence counters."""
        changes, self._changes = self._changes, []
        seqs = {e: self._sequence[e] for e in self._changed_seq}
        self._changed_seq = set()
        return changes, seqs

    def counts(self) -> dict[str, int]:
        """Messages held per log path (tests and the control endpoint read this)."""
        return {log.path: len(log.messages) for log in self.all_logs() if log.messages}


def _for_subscription(
    message: StoredMessage, sub_ttl: float | None, parsed: ParsedMessage, live_from: float
) -> StoredMessage:
    """A subscription's copy: its own default time to live applies when shorter."""
    copy = message.copy_for()
    if sub_ttl is not None and (copy.expires_at is None or live_from + sub_ttl < copy.expires_at):
        copy.header, _ = _effective_ttl(parsed, sub_ttl)
        copy.expires_at = live_from + sub_ttl
    return copy


def _scheduled_time(parsed: ParsedMessage) -> float | None:
    value = parsed.scheduled_enqueue_ms
    return None if value is None else value / 1000.0


def _effective_ttl(
    parsed: ParsedMessage, default_ttl: float | None
) -> tuple[list[Any] | None, float | None]:
    """The header to keep and the time to live in seconds (None: forever).

    A message's own TTL above the entity's default is silently lowered to it, as
    Service Bus does; the kept header says so, so that the receiver's
    ``time_to_live`` is the one that applies.
    """
    own = parsed.ttl_ms
    if not own:
        return parsed.header, default_ttl
    if default_ttl is None or own <= default_ttl * 1000:
        return parsed.header, own / 1000.0
    header = list(parsed.header or [])
    header[2] = int(default_ttl * 1000)
    return header, default_ttl
