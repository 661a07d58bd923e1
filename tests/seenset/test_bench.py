"""benchmarks/seenset.py runs end to end and reports every row (no timing thresholds)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from geobus._tools.bench.seenset import STEPS
from redis_server import RedisServer, require_redis_server

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "seenset.py"
PASSWORD = "bench-password-5d1e"


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", *args], capture_output=True, text=True,
                          timeout=90, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout) if "--json" in args else {}, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
class TestSeenSetBenchmark:
    """Every store, every step, a positive figure and the tracker's for the ratio."""

    def test_json_has_every_row(self) -> None:
        require_redis_server()
        result, _ = _run("--json")
        assert result["stores"] == ["memory", "sqlite", "redis"] and result["skipped"] == {}
        names = {row["name"]: row for row in result["metrics"]}
        for store in result["stores"]:
            for step in STEPS:
                row = names[f"{store}: {step}"]
                assert row["unit"] in ("checks/s", "writes/s")
                for value in (row["geobus"], row["plain"], row["ratio"]):
                    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, row
            for step in STEPS[:4]:
                assert names[f"{store}: {step} p50"]["unit"] == "us"
                assert 0 < names[f"{store}: {step} p50"]["geobus"] <= names[f"{store}: {step} p99"]["geobus"]

    def test_given_redis_with_a_password_never_shows_it(self) -> None:
        require_redis_server()
        with RedisServer(password=PASSWORD) as server:
            result, printed = _run("--json", "--redis", server.url)
            assert "redis" in result["stores"]
            _, table = _run("--redis", server.url)
        assert PASSWORD not in printed + table
        assert "redis: claim new x32 tasks" in table

    def test_without_redis_server_says_so(self, tmp_path: Path) -> None:
        env = {**os.environ, "PATH": str(tmp_path)}  # no redis-server to be found
        result, printed = _run("--json", env=env)
        assert result["stores"] == ["memory", "sqlite"]
        assert "redis-server not found" in result["skipped"]["redis"]
        assert "skipping redis" in printed
