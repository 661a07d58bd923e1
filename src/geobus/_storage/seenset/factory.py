"""A store URL read into a ``SeenSet``, and the argument checks every store shares.

``memory``, ``sqlite:PATH`` (also ``sqlite:///ABSOLUTE/PATH``) and
``redis://[[user]:password@]host[:port][/db][?prefix=...&timeout=...]`` (or
``rediss://`` for TLS). A URL is never echoed with its password: errors name
it through ``geobus._redact``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..._redact import describe, redact
from . import Claim

if TYPE_CHECKING:
    from . import SeenSet

SCHEMES = "memory, sqlite:PATH, redis://host:port/db or rediss://host:port/db"


def open_store(url: str, *, max_entries: int, clock: Callable[[], float] | None = None) -> SeenSet:
    """The store ``url`` names; see ``geobus._storage.seenset.open_seen_set``.

    Raises:
        ValueError: an unknown scheme, a malformed URL, or a file that is not a
            seen-set database (the message never holds a password).
        ImportError: ``redis://`` without redis-py (the ``redis`` extra).
    """
    if not isinstance(url, str):
        raise ValueError(f"a seen-set store is a URL string ({SCHEMES}), got {describe(url)}")
    check_max_entries(max_entries)
    scheme = url.partition(":")[0].lower()
    if url in ("memory", "memory:", "memory://"):
        from .memory import MemorySeenSet

        return MemorySeenSet(max_entries=max_entries, clock=clock)
    if scheme == "sqlite":
        from .sqlite import SqliteSeenSet, sqlite_path

        return SqliteSeenSet(sqlite_path(url), max_entries=max_entries, clock=clock)
    if scheme in ("redis", "rediss"):
        try:
            import redis.asyncio  # noqa: F401 - only to say which extra is missing
        except ImportError as exc:
            raise ImportError(
                f"the seen-set store {redact(url)!r} needs redis-py: pip install 'geobus[redis]'"
            ) from exc
        from .redis import RedisSeenSet

        return RedisSeenSet(url)
    raise ValueError(f"unknown seen-set store, got {describe(url)}: expected {SCHEMES}")


# A deferred key is kept as if in flight with this owner, whom no receiver can be (owners are
# not empty): a store of an older geobus reads it as another worker's and holds its twins.
DEFERRED_OWNER = ""


# -- argument checks shared by the stores ------------------------------------------------


def check_max_entries(max_entries: object) -> int:
    """Raises ValueError unless ``max_entries`` is a whole number of at least 1."""
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
        raise ValueError(f"max_entries must be a whole number of at least 1, got {max_entries!r}")
    return max_entries


def check_seconds(name: str, value: object) -> float:
    """Raises ValueError unless ``value`` (a lease or a ttl) is a finite number of seconds above 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of seconds above 0, got {value!r}")
    return float(value)


def check_key(key: object, owner: object) -> None:
    """Raises ValueError unless ``key`` is a string and ``owner`` a non-empty one."""
    if not isinstance(key, str):
        raise ValueError(f"a seen-set key is a string, got {type(key).__name__}")
    if not isinstance(owner, str) or not owner:
        raise ValueError(f"a seen-set owner is a non-empty string, got {owner!r}")


def check_outcome(outcome: object) -> Claim:
    """Raises ValueError unless ``outcome`` is ``Claim.COMPLETED``, ``DEAD_LETTERED`` or ``DEFERRED``."""
    if outcome is not Claim.COMPLETED and outcome is not Claim.DEAD_LETTERED and outcome is not Claim.DEFERRED:
        raise ValueError(
            f"a recorded outcome is Claim.COMPLETED, Claim.DEAD_LETTERED or Claim.DEFERRED, got {outcome!r}")
    return outcome
