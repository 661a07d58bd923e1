"""``SessionPolicy``: how a session receiver keeps a session's order and its ownership (``[sessions]``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .checks import Checked, count, seconds


@dataclass(frozen=True)
class SessionPolicy(Checked):
    """Session receivers across two namespaces (docs/sessions.md).

    ``order_gap_wait``: in passive mode, the most a session receiver waits for a
    producer's missing message — stranded in a namespace that is down — before it
    delivers the later ones and reports the gap (seconds; 0 never waits). Active
    mode never waits on a namespace that is down: the other holds every copy.
    ``lock_attempts``: how many times a receiver tries to own a session in both
    namespaces when another receiver holds it in one of them, releasing what it
    holds between attempts (with a jittered backoff) before it gives up.
    """

    _prefix = "sessions"

    order_gap_wait: float = field(default=30.0, metadata=seconds(allow_zero=True))
    lock_attempts: int = field(default=5, metadata=count())
