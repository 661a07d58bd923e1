"""A real ``redis-server`` for tests: on 127.0.0.1, a free port, a temp dir, nothing saved.

    with RedisServer() as server:          # started; stopped (by its own pid) after
        store = RedisSeenSet(server.url)
        server.stop()                      # an outage...
        server.start()                     # ...and the same server back on the same port

``require_redis_server()`` is what a test calls first: it fails with an
installation hint when the Debian package ``redis-server`` is missing (CI's
``.ci/run`` installs it), or skips when ``GEOBUS_SKIP_REDIS=1`` (for developers
without it). tests/ is on sys.path (pytest's rootdir conftest), so any test can
``from redis_server import RedisServer, require_redis_server``.
"""

from __future__ import annotations

import os

import pytest

from geobus.testing import RedisServer, redis_server_binary

SKIP_ENV = "GEOBUS_SKIP_REDIS"
__all__ = ["RedisServer", "require_redis_server"]


def require_redis_server() -> str:
    """The path of ``redis-server``; otherwise skips (``GEOBUS_SKIP_REDIS=1``) or fails the test."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: tests that need a real redis-server are skipped")
    binary = redis_server_binary()
    if binary is None:
        pytest.fail(
            "redis-server is not installed: apt-get install redis-server (CI's .ci/run installs it), "
            f"or set {SKIP_ENV}=1 to skip the tests that need it",
            pytrace=False,
        )
    return binary
