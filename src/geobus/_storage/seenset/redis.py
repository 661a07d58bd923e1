"""The ``redis://`` seen-set: a fleet of workers on any hosts (``geobus[redis]``).

One string per key, ``<prefix><key>`` (the key spelt with its type: ``s:order-1``,
``i:42``; see ``geobus._decisions.dedup.key_of``), whose value is the state: ``f2:<owner>``
(in flight; the key's expiry is the lease), ``c2`` (completed) or ``d2``
(dead-lettered; the expiry is the ttl), or ``f2:`` (deferred: in flight with the
empty owner, which no receiver can be, until the ttl runs out; a worker of a
geobus that predates deferral reads it as another worker's key in flight and
holds its twins, never delivers them). An absent key is absent. Redis keeps
the time, so the workers' clocks do not matter, and a dead worker's leases
simply expire. ``claim``, ``claim_deferred``, ``renew`` and ``release`` are small Lua scripts, so
each is atomic on the server; ``complete`` is one ``SET ... PX``. ``claim_many`` and
``complete_many`` are one script call for the whole batch (the claim script loops over
its keys): one round trip, and atomic as a whole. Their keys need not share a hash
slot, so the store speaks to one Redis (or a primary with replicas), not a Cluster.

The ``2`` is the format. geobus 0.1.0.dev0 wrote ``f:<owner>``, ``c`` and ``d``
under untyped keys (``42`` and ``"42"`` were both ``<prefix>42``). Its keys do
not meet these, but one can spell a typed key (the id ``"i:42"`` wrote
``<prefix>i:42``, the key of ``42`` now): such a value is another message's, so
``claim`` takes the key as absent and overwrites it; an old value is never read
as this key's state. Workers of both versions must not share a prefix: their
keys do not meet, so a message could be processed by one of each.

``max_entries`` is not enforced here: every key expires (a lease, or the ttl,
the dedup window), so memory is bounded by the rate of keys times the window.
A Redis that must also cap its memory should run with
``maxmemory-policy volatile-ttl``, which evicts the keys nearest their expiry
first (the oldest processed ones, or leases about to lapse) rather than failing
writes.

Every error of the server or the connection is a ``SeenSetError``; sockets time
out after ``timeout`` seconds (the URL's ``?timeout=``, default 1), with one
immediate retry on a new connection (a stale one after a Redis restart), so a
Redis that is down fails a call within about two timeouts. The URL's password
never appears in a repr, an error or a log line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..._decisions.dedup import Key
from ..._redact import redact
from . import Claim, SeenSetError
from .factory import check_key, check_outcome, check_seconds

PREFIX = "geobus:seen:"
TIMEOUT = 1.0

# KEYS the keys, claimed in turn; ARGV[1] "f2:<owner>", ARGV[2] the lease in ms; ARGV[3] "1": a
# deferred key is taken too (claim_deferred), "0": it is answered (claim). The answers, in order.
_CLAIM = """
local answers = {}
for i, key in ipairs(KEYS) do
    local value = redis.call('GET', key)
    local answer = false
    if value == 'c2' then answer = 'completed'
    elseif value == 'd2' then answer = 'dead_lettered'
    elseif value == 'f2:' then
        if ARGV[3] ~= '1' then answer = 'deferred' end
    elseif value and value ~= ARGV[1] then
        if string.sub(value, 1, 3) == 'f2:' then answer = 'taken'
        -- geobus 0.1.0.dev0's c, d, f:<owner>: another message's (see the module's docstring)
        elseif value ~= 'c' and value ~= 'd' and string.sub(value, 1, 2) ~= 'f:' then
            return redis.error_reply('not a geobus seen-set value')
        end
    end
    if not answer then
        redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
        answer = 'claimed'
    end
    answers[i] = answer
end
return answers
"""
# KEYS the keys; ARGV[1] the ttl in ms, ARGV[1 + i] the value of the i-th key (c2, d2, f2:).
_COMPLETE = """
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[1 + i], 'PX', ARGV[1])
end
return #KEYS
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
"""
_CODE = {Claim.COMPLETED: "c2", Claim.DEAD_LETTERED: "d2", Claim.DEFERRED: "f2:"}


class RedisSeenSet:
    """A ``SeenSet`` in Redis, shared by every worker that uses the same server, db and prefix.

    Task-safe (a connection pool, on the event loop that uses it). Each method
    raises ``SeenSetError`` when Redis cannot be reached or answers an error;
    bad arguments raise ``ValueError``.
    """

    def __init__(self, url: str) -> None:
        """Reads the URL; connects only on the first call.

        Raises:
            ValueError: a malformed URL (the message hides the password).
        """
        options = _parse(url)
        self.prefix: str = options.pop("prefix")
        self._label = redact(url.split("?", 1)[0])
        self._password: str | None = options.get("password")
        self._client = redis.asyncio.Redis(
            **options,
            decode_responses=True,
            retry=Retry(NoBackoff(), 1),
        )
        self._claim = self._client.register_script(_CLAIM)
        self._complete = self._client.register_script(_COMPLETE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"RedisSeenSet({self._label!r}, prefix={self.prefix!r})"

    async def claim(self, key: Key, owner: str, lease: float) -> Claim:
        """See ``SeenSet.claim``."""
        return (await self._claims([key], owner, lease, "0"))[0]

    async def claim_many(self, keys: Sequence[Key], owner: str, lease: float) -> list[Claim]:
        """See ``BatchSeenSet.claim_many``."""
        return await self._claims(keys, owner, lease, "0")

    async def claim_deferred(self, key: Key, owner: str, lease: float) -> Claim:
        """See ``DeferringSeenSet.claim_deferred``."""
        return (await self._claims([key], owner, lease, "1"))[0]

    async def renew(self, key: Key, owner: str, lease: float) -> bool:
        """See ``SeenSet.renew``; False too once the lease has run out, even if nobody took the key."""
        check_key(key, owner)
        return bool(await self._call(self._renew, key, _holder(owner), _ms(check_seconds("lease", lease))))

    async def complete(self, key: Key, owner: str, outcome: Claim, ttl: float) -> None:
        """See ``SeenSet.complete``."""
        check_key(key, owner)
        code = _CODE[check_outcome(outcome)]
        ttl_ms = _ms(check_seconds("ttl", ttl))
        try:
            await self._client.set(self.prefix + key, code, px=ttl_ms)
        except (RedisError, OSError) as exc:
            raise self._error(exc) from exc

    async def complete_many(self, outcomes: Sequence[tuple[Key, Claim]], owner: str, ttl: float) -> None:
        """See ``BatchSeenSet.complete_many``."""
        for key, outcome in outcomes:
            check_key(key, owner)
            check_outcome(outcome)
        ttl_ms = _ms(check_seconds("ttl", ttl))
        if outcomes:
            await self._call(self._complete, [key for key, _ in outcomes], ttl_ms,
                             *(_CODE[outcome] for _, outcome in outcomes))

    async def release(self, key: Key, owner: str) -> None:
        """See ``SeenSet.release``."""
        check_key(key, owner)
        await self._call(self._release, key, _holder(owner))

    async def close(self) -> None:
        """Closes the connections; a later call would open new ones."""
        try:
            await self._client.aclose()
        except (RedisError, OSError) as exc:
            raise self._error(exc) from exc

    async def _claims(self, keys: Sequence[Key], owner: str, lease: float, deferred_too: str) -> list[Claim]:
        for key in keys:
            check_key(key, owner)
        lease_ms = _ms(check_seconds("lease", lease))
        if not keys:
            return []
        return [Claim(answer) for answer in await self._call(self._claim, keys, _holder(owner), lease_ms, deferred_too)]

    async def _call(self, script: Any, keys: str | Sequence[str], *args: str | int) -> Any:
        """``script`` on ``keys`` (one, or several), prefixed."""
        names = [self.prefix + keys] if isinstance(keys, str) else [self.prefix + key for key in keys]
        try:
            return await script(keys=names, args=list(args))
        except (RedisError, OSError) as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> SeenSetError:
        text = redact(f"{type(exc).__name__}: {exc}", known=[self._password])
        return SeenSetError(f"the seen-set at {self._label} failed: {text}")


def _holder(owner: str) -> str:
    """The value of a key ``owner`` has in flight."""
    return f"f2:{owner}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _parse(url: str) -> dict[str, Any]:
    """redis.asyncio.Redis's arguments (and ``prefix``) from the URL.

    Raises:
        ValueError: naming what is wrong, never with the password.
    """
    label = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{label!r} is not a redis URL") from None  # urlsplit's text may quote the password
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{label!r} is not a redis:// or rediss:// URL")
    if not parts.hostname:
        raise ValueError(f"{label!r} has no host: redis://[:password@]host:port/db")
    db_text = parts.path.lstrip("/") or "0"
    if not db_text.isdigit():
        raise ValueError(f"{label!r}: the database is a number (/0, /1...), got {db_text!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"prefix", "timeout"})
    if unknown:
        raise ValueError(f"{label!r}: unknown options {unknown}; known: prefix, timeout")
    prefix = query.get("prefix", [PREFIX])[-1]
    try:
        timeout = check_seconds("timeout", float(query.get("timeout", [TIMEOUT])[-1]))
    except ValueError as exc:
        raise ValueError(f"{label!r}: {exc}") from None
    return {
        "host": parts.hostname,
        "port": port,
        "db": int(db_text),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "ssl": parts.scheme == "rediss",
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "prefix": prefix,
    }
