"""What a setting with a fixed set of values chooses from: one enum each.

Each is a ``str`` enum: a value compares equal to its spelling, and a file or the
environment gives it in any case (``checks.choice``).
"""

from __future__ import annotations

import enum


class ReplicationMode(str, enum.Enum):
    """How a send reaches the two namespaces."""

    ACTIVE = "active"
    """Both copies, concurrently, every time."""
    PASSIVE = "passive"
    """The active namespace; the other only when the active one is unavailable (roles swap)."""


class WriteQuorum(str, enum.Enum):
    """In active mode, how many copies must land for a send to succeed."""

    ANY = "any"
    ALL = "all"


class FailbackMode(str, enum.Enum):
    """What passive mode does after a failover: ``stay`` on the new active
    namespace (the seed's rule), or ``prefer_primary``: probe the primary and
    come back to it once it has been healthy for a while."""

    STAY = "stay"
    PREFER_PRIMARY = "prefer_primary"


class StoreUnavailable(str, enum.Enum):
    """What a receiver does with a new key while its shared seen-set cannot be reached."""

    DELIVER = "deliver"  # at-least-once: a twin may reach another worker too
    HOLD = "hold"  # keep the copy locked and ask again: no duplicate, but a delay


class DedupKey(str, enum.Enum):
    """What identifies the two copies of one message to the receiver."""

    MESSAGE_ID = "message_id"
    SUBJECT = "subject"
    APPLICATION_PROPERTY = "application_property"
