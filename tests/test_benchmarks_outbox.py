"""The outbox benchmark runs end to end and reports every row (no timing thresholds)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from geobus.local import DEV_KEY

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "outbox.py"
APIS = ("sync", "async")
# Per API, the rows measured against a plain sender (a ratio) and those with no plain counterpart.
COMPARED = ("buffered send 1/call", "buffered send 1/call p50", "buffered send 1/call p99",
            "buffered send lists of 100", "drain, batches of 100")
ALONE = ("first buffered send (tries both)", "heal -> outbox empty")
TIMEOUT = 90.0  # --quick takes well under 30 s; the rest is room for a busy machine


def _run_benchmark(*args: str) -> tuple[dict[str, Any], str]:
    """Runs the benchmark; returns its JSON and everything it printed."""
    process = subprocess.Popen(
        [sys.executable, str(BENCHMARK), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the benchmark unwinds and stops the servers it started.
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"the benchmark did not finish in {TIMEOUT:.0f} s: {err[-2000:]}")
    assert process.returncode == 0, err[-2000:]
    return json.loads(out), out + err


@pytest.fixture(scope="module")
def quick_run() -> tuple[dict[str, Any], str]:
    return _run_benchmark("--quick", "--json")


@pytest.fixture
def quick_result(quick_run: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return quick_run[0]


def _metric(result: dict[str, Any], api: str, name: str) -> dict[str, Any]:
    """The row named ``"<api> <name>"``, or that followed by a parenthesised size."""
    full = f"{api} {name}"
    rows: list[dict[str, Any]] = result["metrics"]
    (row,) = [row for row in rows if row["name"] == full or row["name"].startswith(full + " (")]
    return row


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
class TestQuickRun:
    """`outbox.py --quick --json` measures every row, with ratios and the machine, and prints no secret."""

    def test_compared_rows_have_positive_values_and_ratios(self, quick_result: dict[str, Any]) -> None:
        for api in APIS:
            for name in COMPARED:
                row = _metric(quick_result, api, name)
                assert _positive(row["geobus"]), row
                assert _positive(row["plain"]), row
                assert _positive(row["ratio"]), row

    def test_rows_without_a_plain_side_have_positive_values(self, quick_result: dict[str, Any]) -> None:
        for api in APIS:
            for name in ALONE:
                row = _metric(quick_result, api, name)
                assert _positive(row["geobus"]), row
                assert row["plain"] is None and row["ratio"] is None, row

    def test_raw_append_rate_is_reported(self, quick_result: dict[str, Any]) -> None:
        (row,) = [row for row in quick_result["metrics"] if row["name"].startswith("Outbox.append")]
        assert _positive(row["geobus"]) and _positive(row["ratio"])

    def test_latency_percentiles_are_ordered(self, quick_result: dict[str, Any]) -> None:
        for api in APIS:
            for who in ("geobus", "plain"):
                p50 = _metric(quick_result, api, "buffered send 1/call p50")[who]
                p99 = _metric(quick_result, api, "buffered send 1/call p99")[who]
                assert p50 <= p99

    def test_every_buffered_message_was_drained(self, quick_result: dict[str, Any]) -> None:
        sizes = quick_result["sizes"]
        assert sizes["drained"] == sizes["warm-up"] + sizes["single"] + sizes["lists"]
        for api in APIS:
            timed = _metric(quick_result, api, "drain, batches of 100")["extra"]["messages_timed"]
            assert 0 < timed < sizes["drained"]  # the first batch is left out of the rate

    def test_machine_is_reported(self, quick_result: dict[str, Any]) -> None:
        machine = quick_result["machine"]
        assert machine["cores"] >= 1
        assert machine["python"] and machine["platform"]
        assert quick_result["quick"] is True and quick_result["rounds"] == 1

    def test_output_holds_no_connection_string_or_key(self, quick_run: tuple[dict[str, Any], str]) -> None:
        printed = quick_run[1]
        assert "SharedAccessKey" not in printed
        assert "Endpoint=sb://" not in printed
        assert DEV_KEY not in printed
