"""The benchmark command runs end to end and reports every row (no timing thresholds)."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from geobus.local import DEV_KEY

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "local_namespace.py"
PLACEMENTS = ("out-of-process", "in-process")
STORES = ("memory", "sqlite")
APIS = ("sync", "async")
SCENARIOS = ("send 1/call", "send lists of 100", "peek-lock + complete", "receive&delete pf100")


def _run_benchmark(*args: str, timeout: float = 90.0) -> tuple[dict[str, Any], str]:
    """Runs the benchmark; returns its JSON and everything it printed."""
    process = subprocess.Popen(
        [sys.executable, str(BENCHMARK), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the benchmark unwinds and stops the servers it started.
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"the benchmark did not finish in {timeout:.0f} s: {err[-2000:]}")
    assert process.returncode == 0, err[-2000:]
    return json.loads(out), out + err


@pytest.fixture(scope="module")
def quick_run() -> tuple[dict[str, Any], str]:
    return _run_benchmark("--quick", "--messages", "50", "--json")


@pytest.fixture
def quick_result(quick_run: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return quick_run[0]


@pytest.mark.slow
class TestQuickRun:
    """`local_namespace.py --quick --json` measures every configuration and prints no secret."""

    def test_every_row_has_a_positive_throughput(self, quick_result: dict[str, Any]) -> None:
        rows = {(r["placement"], r["store"], r["api"], r["scenario"]): r for r in quick_result["rows"]}
        assert set(rows) == set(itertools.product(PLACEMENTS, STORES, APIS, SCENARIOS))
        for key, row in rows.items():
            assert row["messages"] > 0, key
            assert row["seconds"] > 0, key
            assert row["msgs_per_s"] > 0, key

    def test_single_sends_report_latency_percentiles(self, quick_result: dict[str, Any]) -> None:
        singles = [r for r in quick_result["rows"] if r["scenario"] == "send 1/call"]
        assert len(singles) == len(PLACEMENTS) * len(STORES) * len(APIS)
        for row in singles:
            assert 0 < row["p50_ms"] <= row["p99_ms"]

    def test_ratios_and_machine_are_reported(self, quick_result: dict[str, Any]) -> None:
        ratios = quick_result["ratios"]
        assert {"sqlite/memory, out-of-process", "in-process/out-of-process, memory"} <= set(ratios)
        assert any(name.startswith("async/sync") for name in ratios)
        assert all(value > 0 for values in ratios.values() for value in values.values())
        assert quick_result["machine"]["cores"] >= 1
        assert quick_result["reference_not_measured"]

    def test_output_holds_no_connection_string_or_key(self, quick_run: tuple[dict[str, Any], str]) -> None:
        printed = quick_run[1]
        assert "SharedAccessKey" not in printed
        assert "Endpoint=sb://" not in printed
        assert DEV_KEY not in printed
