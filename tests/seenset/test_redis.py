"""What the Redis store adds to the contract, against a real redis-server.

Its keys and values on the server, its URL, a password that never shows, and
an unreachable Redis: stopped, a closed port, a port that never answers. Also
the ``RedisServer`` test helper itself.
"""

from __future__ import annotations

import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

import redis_server as helper
from geobus._decisions.dedup import key_of
from geobus._storage.seenset import Claim, SeenSet, SeenSetError
from geobus._storage.seenset.redis import PREFIX, RedisSeenSet, _parse
from geobus.testing._redis import free_port
from redis_server import RedisServer, require_redis_server

from .conftest import LONG, redis_url

PASSWORD = "correct-horse-battery-staple-7f3a"  # a test password; must never be printed


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    """A server of the test's own, which it may stop and start (and which wants a password)."""
    require_redis_server()
    with RedisServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain redis-py client on the session's server, to look at what the store wrote."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    yield client
    await client.aclose()


class TestOnTheServer:
    """One string per typed key under the prefix: ``f2:<owner>`` with the lease as expiry, ``c2``/``d2``
    with the ttl."""

    async def test_values_and_expiries(self, redis_server: RedisServer, raw: redis.asyncio.Redis) -> None:
        store = RedisSeenSet(redis_server.url)
        try:
            key = key_of(f"test-values-{free_port()}")
            name = PREFIX + key
            assert store.prefix == PREFIX
            await store.claim(key, "worker-1", 30.0)
            assert await raw.get(name) == "f2:worker-1"
            assert 29_000 < await raw.pttl(name) <= 30_000
            await store.renew(key, "worker-1", 90.0)
            assert 89_000 < await raw.pttl(name) <= 90_000
            await store.complete(key, "worker-1", Claim.DEAD_LETTERED, 3600.0)
            assert await raw.get(name) == "d2"
            assert 3_599_000 < await raw.pttl(name) <= 3_600_000
            await store.complete(key, "worker-1", Claim.COMPLETED, 3600.0)
            assert await raw.get(name) == "c2"
            await raw.delete(name)
        finally:
            await store.close()

    async def test_keys_are_spelt_with_their_type(self, redis_server: RedisServer, raw: redis.asyncio.Redis) -> None:
        store = RedisSeenSet(redis_url(redis_server))
        try:
            for value in (42, "42", b"42", uuid.UUID(int=42)):
                await store.complete(key_of(value), "worker-1", Claim.COMPLETED, LONG)
            names = sorted(await raw.keys(store.prefix + "*"))
            assert names == sorted(store.prefix + name for name in
                                   ("i:42", "s:42", "b:3432", "u:00000000-0000-0000-0000-00000000002a"))
        finally:
            await store.close()

    @pytest.mark.parametrize("old_value", ["c", "d", "f:an-old-worker"])
    async def test_a_value_of_0_1_0_dev0_is_another_messages(
        self, redis_server: RedisServer, raw: redis.asyncio.Redis, old_value: str
    ) -> None:
        """geobus 0.1.0.dev0 kept the id "i:42" as ``<prefix>i:42``, the name of 42 now: not 42's state."""
        store = RedisSeenSet(redis_url(redis_server))
        try:
            key = key_of(42)
            await raw.set(store.prefix + key, old_value)
            assert await store.renew(key, "an-old-worker", LONG) is False
            assert await store.claim(key, "worker-1", LONG) is Claim.CLAIMED
            assert await raw.get(store.prefix + key) == "f2:worker-1"  # overwritten
            assert await store.claim(key, "worker-2", LONG) is Claim.TAKEN
        finally:
            await store.close()

    async def test_prefixes_keep_stores_apart(self, redis_server: RedisServer) -> None:
        one, two = RedisSeenSet(redis_url(redis_server)), RedisSeenSet(redis_url(redis_server))
        try:
            await one.claim("k", "a", LONG)
            assert await two.claim("k", "b", LONG) is Claim.CLAIMED
        finally:
            await one.close()
            await two.close()

    async def test_a_value_that_is_not_ours(self, redis_server: RedisServer, raw: redis.asyncio.Redis) -> None:
        url = redis_url(redis_server)
        store = RedisSeenSet(url)
        try:
            await raw.set(store.prefix + "k", "something else")
            with pytest.raises(SeenSetError, match="not a geobus seen-set value"):
                await store.claim("k", "a", LONG)
            with pytest.raises(SeenSetError, match="not a geobus seen-set value"):
                await store.claim_many(["j", "k", "l"], "a", LONG)
        finally:
            await store.close()

    async def test_a_batch_is_one_command(self, redis_server: RedisServer, raw: redis.asyncio.Redis) -> None:
        """One round trip per batch: a script call of every key (its values and expiries as the single calls')."""
        store = RedisSeenSet(redis_url(redis_server))
        try:
            await store.claim("warm-up", "a", LONG)  # loads the script
            await store.complete_many([("warm-up", Claim.COMPLETED)], "a", LONG)
            before = await raw.info("commandstats")
            keys = [f"k{i}" for i in range(50)]
            assert await store.claim_many(keys, "a", 30.0) == [Claim.CLAIMED] * 50
            await store.complete_many([(key, Claim.DEAD_LETTERED) for key in keys], "a", 3600.0)
            after = await raw.info("commandstats")
            assert _calls(after) - _calls(before) == {"evalsha": 2, "get": 50, "set": 100}  # those in the scripts
            assert await raw.get(store.prefix + "k49") == "d2"
            assert 3_599_000 < await raw.pttl(store.prefix + "k49") <= 3_600_000
        finally:
            await store.close()

    async def test_is_a_seen_set(self, redis_server: RedisServer) -> None:
        store = RedisSeenSet(redis_server.url)
        assert isinstance(store, SeenSet)
        await store.close()


def _calls(stats: dict[str, dict[str, int]]) -> Counter[str]:
    """Calls per command, from ``INFO commandstats`` (without the INFO calls themselves)."""
    return Counter({name.removeprefix("cmdstat_"): row["calls"] for name, row in stats.items()
                    if name != "cmdstat_info"})


class TestPassword:
    """A password in the URL works and never shows: not in the repr, not in an error."""

    async def test_with_the_password(self, private_server: RedisServer) -> None:
        store = RedisSeenSet(private_server.url)
        try:
            assert await store.claim("k", "a", LONG) is Claim.CLAIMED
            assert PASSWORD not in repr(store)
            assert "***@" in repr(store)
        finally:
            await store.close()

    async def test_wrong_password(self, private_server: RedisServer) -> None:
        wrong = "not-the-" + PASSWORD
        store = RedisSeenSet(private_server.url.replace(PASSWORD, wrong))
        try:
            with pytest.raises(SeenSetError) as caught:
                await store.claim("k", "a", LONG)
        finally:
            await store.close()
        assert PASSWORD not in str(caught.value) and wrong not in str(caught.value)
        assert f"127.0.0.1:{private_server.port}" in str(caught.value)

    async def test_no_password(self, private_server: RedisServer) -> None:
        store = RedisSeenSet(private_server.url.replace(f":{PASSWORD}@", ""))
        try:
            with pytest.raises(SeenSetError, match="uthentication"):
                await store.claim("k", "a", LONG)
        finally:
            await store.close()


class TestUnreachable:
    """Every way of not reaching Redis is a SeenSetError, and a Redis back is used again."""

    @pytest.mark.timeout(30)
    async def test_stopped_then_back(self, private_server: RedisServer) -> None:
        store = RedisSeenSet(private_server.url)
        try:
            assert await store.claim("before", "a", LONG) is Claim.CLAIMED
            private_server.stop()
            for call in (store.claim("k", "a", LONG), store.renew("k", "a", LONG),
                         store.complete("k", "a", Claim.COMPLETED, LONG), store.release("k", "a")):
                with pytest.raises(SeenSetError) as caught:
                    await call
                assert PASSWORD not in str(caught.value)
                assert f"127.0.0.1:{private_server.port}" in str(caught.value)
                assert PASSWORD not in repr(caught.value.__cause__)
            private_server.start()  # the same port; nothing kept (--save '')
            assert await store.claim("before", "b", LONG) is Claim.CLAIMED  # a new connection, scripts loaded again
        finally:
            await store.close()

    @pytest.mark.timeout(30)
    async def test_closed_port(self) -> None:
        store = RedisSeenSet(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
        try:
            with pytest.raises(SeenSetError, match="ConnectionError") as caught:
                await store.claim("k", "a", LONG)
            assert PASSWORD not in str(caught.value)
        finally:
            await store.close()

    @pytest.mark.timeout(30)
    async def test_a_port_that_never_answers(self) -> None:
        """Connected, then silence (a hung Redis, a black-holing proxy): the socket timeout ends the call."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)  # the kernel accepts; nobody ever reads or writes
            port = silent.getsockname()[1]
            store = RedisSeenSet(f"redis://127.0.0.1:{port}/0?timeout=0.2")
            try:
                with pytest.raises(SeenSetError, match="Timeout"):
                    await store.claim("k", "a", LONG)
            finally:
                await store.close()


class TestUrl:
    """The URL's parts become redis-py's arguments; bad ones are a ValueError without the password."""

    def test_parts(self) -> None:
        options = _parse("rediss://app:p%40ss@cache.internal:6380/3?prefix=orders:&timeout=2.5")
        assert options == {
            "host": "cache.internal", "port": 6380, "db": 3, "username": "app", "password": "p@ss", "ssl": True,
            "socket_timeout": 2.5, "socket_connect_timeout": 2.5, "prefix": "orders:",
        }

    def test_defaults(self) -> None:
        options = _parse("redis://localhost")
        assert (options["port"], options["db"], options["password"], options["prefix"], options["ssl"],
                options["socket_timeout"]) == (6379, 0, None, PREFIX, False, 1.0)

    @pytest.mark.parametrize(("url", "words"), [
        ("redis://:hunter2@/0", "no host"),
        ("redis://:hunter2@h:99999/0", "not a redis URL"),
        ("redis://:hunter2@h/zero", "database is a number"),
        ("redis://:hunter2@h/0?db=1", r"unknown options \['db'\]"),
        ("redis://:hunter2@h/0?timeout=-1", "timeout"),
        ("redis://:hunter2@h/0?timeout=soon", "timeout"),
    ])
    def test_bad(self, url: str, words: str) -> None:
        with pytest.raises(ValueError, match=words) as caught:
            _parse(url)
        assert "hunter2" not in str(caught.value)
        assert "***@" in str(caught.value)


class TestRedisServerHelper:
    """tests/redis_server.py: a real server on a free loopback port, restartable, stopped after."""

    def test_start_stop_start_same_port(self) -> None:
        require_redis_server()
        with RedisServer() as server:
            port, url = server.port, server.url
            assert url == f"redis://127.0.0.1:{port}/0" and server.running
            server.stop()
            assert not server.running and not server._answers()
            server.start()
            assert server.port == port and server._answers()
        assert not server.running

    def test_skip_for_developers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(helper.SKIP_ENV, "1")
        with pytest.raises(pytest.skip.Exception, match=helper.SKIP_ENV):
            require_redis_server()

    def test_missing_fails_with_a_hint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(helper.SKIP_ENV, raising=False)
        monkeypatch.setattr(helper, "redis_server_binary", lambda: None)
        with pytest.raises(pytest.fail.Exception, match="apt-get install redis-server"):
            require_redis_server()

    def test_a_server_that_cannot_start_says_why(self) -> None:
        require_redis_server()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            server = RedisServer()
            server.port = taken.getsockname()[1]
            with pytest.raises(RuntimeError, match="did not start"):
                server.start()
            server.close()
            assert not server.running
