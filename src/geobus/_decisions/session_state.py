"""A session's state as geobus keeps it in both namespaces: an envelope with a version. No I/O.

``set_state`` writes the application's state to both namespaces inside an
envelope; ``get_state`` reads both, keeps the newest and hands back the
application's bytes only. The envelope is::

    GEOBUS-STATE/1\\n{"v": 7, "u": true, "m": {"3f9c2a1b.1": 41}, "t": 1718000000.25, "w": "9e1f0c2a"}\\n<the application's bytes>

``v``: the version, one more than the newest the writer had read; ``u``: whether the
application set a state (``set_state(None)`` clears it, and is kept as a version
too); ``m``: per producer stream, the last number a session receiver settled in
order (``session_order``), so that the next owner of the session knows where the
stream stands; ``t``: when it was written (the writer's clock, Unix seconds) and
``w``: the writing receiver's random id. Two writes with one version (two owners,
each having read a stale state, in two regions) are told apart by ``t``, then by
``w``: every reader picks the same one, the later write. State that does not
start with the envelope's first line — written by the plain SDK, or before
geobus — reads as version 0 with those bytes as the application's state and no
marks. The plain SDK reading geobus's state sees the
envelope.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAGIC = b"GEOBUS-STATE/1\n"


@dataclass(frozen=True)
class SessionState:
    """One namespace's state of a session, out of its envelope."""

    version: int = 0
    user: bytes | None = None
    marks: Mapping[str, int] = field(default_factory=dict)
    written_at: float = 0.0  # the writer's clock; 0 for state written before these fields
    writer: str = ""

    def encode(self) -> bytes:
        header = {"v": self.version, "u": self.user is not None, "m": dict(self.marks), "t": self.written_at, "w": self.writer}
        return MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + (self.user or b"")

    @property
    def rank(self) -> tuple[int, float, str]:
        """What orders two states: the version, then the time written, then the writer."""
        return (self.version, self.written_at, self.writer)


def decode(raw: bytes | bytearray | str | None) -> SessionState:
    """A namespace's raw session state, out of its envelope (see the module); never raises."""
    if raw is None:
        return SessionState()
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if not data.startswith(MAGIC):
        return SessionState(0, data)
    header, newline, user = data[len(MAGIC) :].partition(b"\n")
    try:
        if not newline:
            raise ValueError("no header line")
        fields = json.loads(header)
        version, has_user, marks = int(fields["v"]), bool(fields["u"]), dict(fields["m"])
        marks = {str(k): int(v) for k, v in marks.items()}
        written_at, writer = float(fields.get("t", 0.0)), str(fields.get("w", ""))
    except (ValueError, TypeError, KeyError, AttributeError):
        return SessionState(0, data)  # not ours after all: the application's bytes as they are
    return SessionState(version, user if has_user else None, marks, written_at, writer)


def newest(states: Iterable[SessionState]) -> SessionState:
    """The state with the highest ``rank`` (version, then time written, then writer: the same
    answer whatever order the namespaces are read in); an empty state when there is none.
    Marks are merged (highest per producer): a mark only ever moves forward."""
    found = list(states)
    if not found:
        return SessionState()
    best = max(found, key=lambda state: state.rank)
    marks: dict[str, int] = {}
    for state in found:
        for producer, mark in state.marks.items():
            marks[producer] = max(mark, marks.get(producer, 0))
    return SessionState(best.version, best.user, marks, best.written_at, best.writer)
