"""Where the local namespace keeps its messages: memory, or a SQLite file (WAL).

With a file, everything the namespace acknowledged survives a restart (even a
``kill -9``: WAL with ``synchronous=NORMAL`` loses nothing on a process crash);
deleting the file is the disaster of a lost region. A file that is damaged
(truncated, overwritten, another program's) is refused when opened, never
replaced by an empty store. Locks are not kept: after a restart every message
is unlocked, as if its lock had been lost, and no session is locked; each
entity's settings and each session's state are kept.

The file holds message bodies, so a new one is created owner-only (0600), as
are SQLite's ``-wal`` and ``-shm`` files beside it. A write that fails (disk
full, a file size limit) raises ``StoreWriteError``: the server stops before it
acknowledges anything that was not saved.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .._storage.sqlite import NotOurDatabase, open_database, transaction
from ._admin_model import RuleRecord
from ._broker import DEAD_LETTER_SUFFIX, SUBSCRIPTIONS, Broker, Change
from ._codec import encode_annotations, encode_header, parse_message
from ._entities import EntitySettings, MessageState, StoredMessage
from ._registry import Stamp, restore_stamp

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    path TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    expires_at REAL,
    state INTEGER NOT NULL,
    scheduled_at REAL,
    delivery_count INTEGER NOT NULL,
    PRIMARY KEY (path, seq)
);
CREATE TABLE IF NOT EXISTS sequences (entity TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entities (path TEXT PRIMARY KEY, kind TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entity_settings (path TEXT PRIMARY KEY, settings TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entity_records (path TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session_states (
    path TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state BLOB,
    updated_at REAL NOT NULL,
    PRIMARY KEY (path, session_id)
);
"""


class StoreWriteError(OSError):
    """The store could not save a change (disk full, a file size limit, an I/O error).

    The message names the file and SQLite's reason; it never holds message data.
    """


class MemoryStore:
    """Keeps nothing: a restart is a disaster."""

    def load(self, broker: Broker) -> None:
        return None

    def save(self, broker: Broker, changes: list[Change], seqs: dict[str, int]) -> None:
        broker.take_state_changes()
        broker.admin.take_changes()

    def close(self) -> None:
        return None


class SqliteStore:
    """Persists every change in one transaction per loop turn."""

    def __init__(self, path: str | Path) -> None:
        """Open (or create) the store at ``path``.

        Raises:
            ValueError: ``path`` cannot be opened, or holds something other than a
                sound geobus local store (another file, another program's database,
                a truncated or corrupt file). The file is left as it was.
        """
        self.path = Path(path)
        try:
            self._db = open_database(self.path, tables=_TABLES, schema=_SCHEMA, synchronous="NORMAL")
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if self.path.exists():  # a directory, say
                raise ValueError(f"{self.path} is not a geobus local store: {reason}") from exc
            raise ValueError(f"cannot create the store {self.path}: {reason}") from exc
        except NotOurDatabase as exc:
            raise ValueError(f"{self.path} is not a geobus local store: {exc}") from exc
        try:
            self._saved_entities = set(self._db.execute("SELECT path, kind FROM entities"))
            self._saved_settings = set(self._db.execute("SELECT path, settings FROM entity_settings"))
        except sqlite3.Error as exc:
            self._db.close()
            raise ValueError(f"{self.path} is not a geobus local store: {exc}") from exc

    def load(self, broker: Broker) -> None:
        """Recreate entities, messages and sequence counters from the file.

        Raises:
            ValueError: a row cannot be read back (the file was damaged after opening
                or written by something else); the message names the file.
        """
        try:
            self._load(broker)
        except (sqlite3.DatabaseError, ValueError) as exc:  # CodecError is a ValueError
            raise ValueError(f"{self.path} is not a geobus local store: {exc}") from exc

    def _load(self, broker: Broker) -> None:
        settings = {path: _settings(text) for path, text in self._saved_settings}
        for path, kind in self._db.execute("SELECT path, kind FROM entities ORDER BY path"):
            _declare(broker, path, kind, settings.get(path))
        for entity, seq in self._db.execute("SELECT entity, seq FROM sequences"):
            broker.restore_sequence(entity, seq)
        rows = self._db.execute(
            "SELECT path, seq, body, enqueued_at, expires_at, state, scheduled_at,"
            " delivery_count FROM messages ORDER BY path, seq"
        )
        for path, seq, body, enqueued, expires, state, scheduled, count in rows:
            log = broker.log(path)
            if log is None:
                continue
            try:
                parsed = parse_message(body)
                message_state = MessageState(state)
            except ValueError as exc:
                raise ValueError(f"message {seq} of {path!r} is damaged ({exc})") from exc
            log.add(
                StoredMessage(
                    seq=seq,
                    header=parsed.header,
                    annotations=parsed.annotations,
                    rest=parsed.rest,
                    message_id=parsed.message_id,
                    enqueued_at=enqueued,
                    expires_at=expires,
                    state=message_state,
                    scheduled_at=scheduled,
                    delivery_count=count,
                    session_id=parsed.session_id,
                ),
                persist=False,
            )
        for path, text in self._db.execute("SELECT path, record FROM entity_records"):
            if broker.log(path) is not None or path in broker.topics:
                restore_stamp(broker, path, stamp_from_json(text))
        states = self._db.execute("SELECT path, session_id, state, updated_at FROM session_states")
        for path, session_id, state, updated_at in states:
            log = broker.log(path)
            if log is not None and log.sessions is not None:
                log.sessions.restore_state(session_id, state, updated_at)

    def save(self, broker: Broker, changes: list[Change], seqs: dict[str, int]) -> None:
        """Write ``changes`` and ``seqs`` in one transaction.

        Raises:
            StoreWriteError: SQLite could not write (nothing of this call was saved).
        """
        try:
            self._save(broker, changes, seqs)
        except sqlite3.Error as exc:
            raise StoreWriteError(
                f"cannot write the store {self.path} ({exc}): is its disk full, or is a file "
                "size limit (ulimit -f) in the way?"
            ) from exc

    def _save(self, broker: Broker, changes: list[Change], seqs: dict[str, int]) -> None:
        # An entity declared with nothing sent yet (a subscription receiver attached
        # first) must survive a restart too, or the topic comes back as a queue.
        stamps, deleted = broker.admin.take_changes()
        # Rows of a deleted entity: its own and its dead-letter queue's (never another
        # entity's whose name merely starts with its own).
        gone = {owned for path in deleted for owned in (path, path + DEAD_LETTER_SUFFIX)}
        saved_entities = {row for row in self._saved_entities if row[0] not in gone}
        saved_settings = {row for row in self._saved_settings if row[0] not in gone}
        # Computed after the deletions: an entity deleted and created again in one turn
        # is written again.
        entities = set(_entity_rows(broker)) - saved_entities
        settings = set(_settings_rows(broker)) - saved_settings
        states = broker.take_state_changes()
        if not changes and not seqs and not entities and not settings and not states and not stamps and not deleted:
            return
        with transaction(self._db) as db:
            for table, column in _ENTITY_COLUMNS:
                db.executemany(f"DELETE FROM {table} WHERE {column} = ?", [(path,) for path in sorted(gone)])
            db.executemany(
                "INSERT OR REPLACE INTO entity_records (path, record) VALUES (?, ?)",
                [(path, stamp_json(stamp)) for path, stamp in sorted(stamps.items())],
            )
            db.executemany(
                "INSERT OR IGNORE INTO entities (path, kind) VALUES (?, ?)", sorted(entities)
            )
            db.executemany(
                "INSERT OR REPLACE INTO entity_settings (path, settings) VALUES (?, ?)",
                sorted(settings),
            )
            db.executemany(
                "INSERT OR REPLACE INTO session_states VALUES (?, ?, ?, ?)", states
            )
            db.executemany(
                "INSERT INTO sequences (entity, seq) VALUES (?, ?)"
                " ON CONFLICT(entity) DO UPDATE SET seq = excluded.seq",
                list(seqs.items()),
            )
            for path, message, removed in changes:
                if removed:
                    db.execute("DELETE FROM messages WHERE path = ? AND seq = ?", (path, message.seq))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            path,
                            message.seq,
                            _encode(message),
                            message.enqueued_at,
                            message.expires_at,
                            int(message.state),
                            message.scheduled_at,
                            message.delivery_count,
                        ),
                    )
        self._saved_entities = saved_entities | entities
        saved = dict(saved_settings)
        saved.update(settings)
        self._saved_settings = set(saved.items())

    def close(self) -> None:
        self._db.close()


_TABLES = {"messages", "sequences", "entities"}
# Where an entity's path is kept: every row of a deleted entity goes with it.
_ENTITY_COLUMNS = (
    ("messages", "path"),
    ("sequences", "entity"),
    ("entities", "path"),
    ("entity_settings", "path"),
    ("entity_records", "path"),
    ("session_states", "path"),
)


def _encode(message: StoredMessage) -> bytes:
    return (
        encode_header(message.header, message.delivery_count)
        + encode_annotations(message.annotations)
        + message.rest
    )


def _entity_rows(broker: Broker) -> Iterable[tuple[str, str]]:
    for path in broker.queues:
        yield path, "queue"
    for topic in broker.topics.values():
        yield topic.path, "topic"
        for sub in topic.subscriptions.values():
            yield sub.path, "subscription"


def _settings_rows(broker: Broker) -> Iterable[tuple[str, str]]:
    for path in broker.queues:
        yield path, _settings_text(broker.queues[path].settings)
    for topic in broker.topics.values():
        yield topic.path, _settings_text(topic.settings)
        for sub in topic.subscriptions.values():
            yield sub.path, _settings_text(sub.settings)


def _settings_text(settings: EntitySettings) -> str:
    return json.dumps(dataclasses.asdict(settings), sort_keys=True)


def _settings(text: str) -> EntitySettings:
    """Settings saved by this or an earlier version: fields it lacks take their defaults."""
    saved: Any = json.loads(text)
    if not isinstance(saved, dict):
        raise ValueError("entity settings are not a JSON object")
    known = {f.name for f in dataclasses.fields(EntitySettings)}
    try:
        return EntitySettings(**{k: v for k, v in saved.items() if k in known})
    except TypeError as exc:
        raise ValueError(f"entity settings are not valid ({exc})") from exc


def _declare(broker: Broker, path: str, kind: str, settings: EntitySettings | None) -> None:
    if kind == "queue":
        broker.declare_queue(path, settings)
    elif kind == "topic":
        broker.declare_topic(path, settings=settings)
    elif kind == "subscription" and SUBSCRIPTIONS in path:
        topic, _, sub = path.partition(SUBSCRIPTIONS)
        broker.declare_subscription(topic, sub.removesuffix(DEAD_LETTER_SUFFIX), settings)


# -- administration records ---------------------------------------------------------------

_TAGS: dict[str, tuple[type, Callable[[Any], Any], Callable[[Any], Any]]] = {
    "timedelta": (
        datetime.timedelta,
        lambda v: [v.days, v.seconds, v.microseconds],
        lambda v: datetime.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    ),
    "datetime": (datetime.datetime, lambda v: v.isoformat(), datetime.datetime.fromisoformat),
    "uuid": (uuid.UUID, str, uuid.UUID),
    "bytes": (bytes, lambda v: base64.b64encode(v).decode(), base64.b64decode),
}


def stamp_json(stamp: Stamp) -> str:
    """``stamp`` as JSON: every value of its properties and rules (a filter's typed
    parameters among them) comes back as the type it was.

    Raises:
        TypeError: a value of a type the store does not know (a bug: nothing is lost quietly).
    """
    return json.dumps(
        _tagged(
            {
                "name": stamp.name,
                "properties": stamp.properties,
                "created_at": stamp.created_at,
                "updated_at": stamp.updated_at,
                "rules": [[r.name, r.filter, r.action, r.created_at] for r in stamp.rules.values()],
            }
        ),
        sort_keys=True,
    )


def stamp_from_json(text: str) -> Stamp:
    """A stamp ``stamp_json`` wrote.

    Raises:
        ValueError: the text is not one (a damaged store).
    """
    try:
        data = _untagged(json.loads(text))
        rules = {name.lower(): RuleRecord(name, spec, action, at) for name, spec, action, at in data["rules"]}
        return Stamp(data["name"], data["properties"], data["created_at"], data["updated_at"], rules)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"an entity record is damaged ({type(exc).__name__})") from exc


def _tagged(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _tagged(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_tagged(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    for tag, (kind, encode, _) in _TAGS.items():
        if isinstance(value, kind):
            return {f"${tag}": encode(value)}
    raise TypeError(f"the store cannot keep a {type(value).__name__} in an entity record")


def _untagged(value: Any) -> Any:
    if isinstance(value, list):
        return [_untagged(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, item), = value.items()
        if key.startswith("$") and key[1:] in _TAGS:
            return _TAGS[key[1:]][2](item)
    return {key: _untagged(item) for key, item in value.items()}
