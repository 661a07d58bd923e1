"""The benchmark commands run end to end and report every row (no timing thresholds)."""

from __future__ import annotations

import itertools
import json
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from geobus.local import DEV_KEY

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PLACEMENTS = ("out-of-process", "in-process")
STORES = ("memory", "sqlite")
APIS = ("sync", "async")
SCENARIOS = ("send 1/call", "send lists of 100", "peek-lock + complete", "receive&delete pf100")


def _run_benchmark(script: str, *args: str, timeout: float = 90.0) -> tuple[dict[str, Any], str]:
    """Runs ``benchmarks/<script>``; returns its JSON and everything it printed."""
    process = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / script), *args],
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


def _assert_no_secret(printed: str) -> None:
    assert "SharedAccessKey" not in printed
    assert "Endpoint=sb://" not in printed
    assert DEV_KEY not in printed


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# -- benchmarks/local_namespace.py --------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run() -> tuple[dict[str, Any], str]:
    return _run_benchmark("local_namespace.py", "--quick", "--messages", "50", "--json")


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
        _assert_no_secret(quick_run[1])


# -- benchmarks/replication.py ----------------------------------------------------------------

METRIC_KEYS = {"name", "unit", "geobus", "plain", "better", "plain_source", "plain_note", "extra", "ratio"}


@pytest.fixture(scope="module")
def replication_run() -> tuple[dict[str, Any], str]:
    return _run_benchmark("replication.py", "--quick", "--json", timeout=150.0)


@pytest.fixture
def replication(replication_run: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return replication_run[0]


def _rows(result: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [m for m in result["metrics"] if m["name"].startswith(prefix)]


@pytest.mark.slow
@pytest.mark.timeout(200)
class TestReplicationQuickRun:
    """`replication.py --quick --json` reports every comparison with sane numbers (no speed limits)."""

    def test_every_metric_is_positive_and_finite(self, replication: dict[str, Any]) -> None:
        assert replication["quick"] is True and replication["rounds"] == 1
        for metric in replication["metrics"]:
            assert set(metric) == METRIC_KEYS, metric["name"]
            assert _positive(metric["geobus"]), metric
            assert metric["better"] in ("higher", "lower"), metric
            if metric["plain"] is None:
                assert metric["plain_source"] in ("documented", "cut-off") and metric["plain_note"], metric
                assert metric["ratio"] is None, metric
            else:
                assert _positive(metric["plain"]), metric
                assert metric["ratio"] == pytest.approx(metric["geobus"] / metric["plain"], rel=1e-3)

    def test_sends_and_receives_are_compared_for_both_apis(self, replication: dict[str, Any]) -> None:
        for api in ("sync", "async"):
            for mode in ("passive", "active"):
                rows = {m["name"]: m for m in _rows(replication, f"{api} {mode} send")}
                assert len(rows) == 4, rows
                units = sorted(m["unit"] for m in rows.values())
                assert units == ["ms", "ms", "msgs/s", "msgs/s"], rows
                p50, p99 = (rows[f"{api} {mode} send 1/call {p}"] for p in ("p50", "p99"))
                assert p50["geobus"] <= p99["geobus"] and p50["plain"] <= p99["plain"]
            (receive,) = _rows(replication, f"{api} peek-lock")
            assert receive["unit"] == "copies/s"
            assert _positive(receive["extra"]["geobus_unique_msgs_per_s"])
            assert all(m["plain_source"] == "measured" for m in _rows(replication, api))

    def test_failover_is_timed_for_both_faults(self, replication: dict[str, Any]) -> None:
        rows = _rows(replication, "failover")
        assert len(rows) == 2
        deadline = replication["attempt_deadline_s"]
        for row in rows:
            assert row["unit"] == "s"
            geobus_run = row["extra"]["geobus"]
            assert geobus_run["failovers"] == 1 and geobus_run["sends_after_fault"] >= 1
            # --quick does not wait on the plain SDK: SDK_FACTS.md's figures stand in.
            assert row["plain_source"] == "documented"
        refused, black_hole = rows
        assert refused["plain"] == pytest.approx(11.2)
        assert black_hole["plain"] is None and "unbounded" in black_hole["plain_note"]
        assert black_hole["extra"]["geobus"]["attempt_deadline_s"] == deadline

    def test_seen_set_is_measured_against_a_plain_set(self, replication: dict[str, Any]) -> None:
        rows = _rows(replication, "seen-set")
        assert sorted(m["unit"] for m in rows) == ["bytes", "checks/s", "ids/s"]
        assert replication["sizes"]["seen_ids"] == 100_000
        assert all(m["plain_source"] == "measured" for m in rows)

    def test_output_holds_no_connection_string_or_key(self, replication_run: tuple[dict[str, Any], str]) -> None:
        _assert_no_secret(replication_run[1])


# -- benchmarks/outbox.py ---------------------------------------------------------------------

# Per API, the outbox rows measured against a plain sender (a ratio) and those with no plain counterpart.
COMPARED = ("buffered send 1/call", "buffered send 1/call p50", "buffered send 1/call p99",
            "buffered send lists of 100", "drain, batches of 100")
ALONE = ("first buffered send (tries both)", "heal -> outbox empty")


@pytest.fixture(scope="module")
def outbox_run() -> tuple[dict[str, Any], str]:
    # --quick takes well under 30 s; the default timeout leaves room for a busy machine.
    return _run_benchmark("outbox.py", "--quick", "--json")


@pytest.fixture
def outbox(outbox_run: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return outbox_run[0]


def _metric(result: dict[str, Any], api: str, name: str) -> dict[str, Any]:
    """The row named ``"<api> <name>"``, or that followed by a parenthesised size."""
    full = f"{api} {name}"
    rows: list[dict[str, Any]] = result["metrics"]
    (row,) = [row for row in rows if row["name"] == full or row["name"].startswith(full + " (")]
    return row


@pytest.mark.slow
class TestOutboxQuickRun:
    """`outbox.py --quick --json` measures every row, with ratios and the machine, and prints no secret."""

    def test_compared_rows_have_positive_values_and_ratios(self, outbox: dict[str, Any]) -> None:
        for api in APIS:
            for name in COMPARED:
                row = _metric(outbox, api, name)
                assert _positive(row["geobus"]), row
                assert _positive(row["plain"]), row
                assert _positive(row["ratio"]), row

    def test_rows_without_a_plain_side_have_positive_values(self, outbox: dict[str, Any]) -> None:
        for api in APIS:
            for name in ALONE:
                row = _metric(outbox, api, name)
                assert _positive(row["geobus"]), row
                assert row["plain"] is None and row["ratio"] is None, row

    def test_raw_append_rate_is_reported(self, outbox: dict[str, Any]) -> None:
        (row,) = [row for row in outbox["metrics"] if row["name"].startswith("Outbox.append")]
        assert _positive(row["geobus"]) and _positive(row["ratio"])

    def test_latency_percentiles_are_ordered(self, outbox: dict[str, Any]) -> None:
        for api in APIS:
            for who in ("geobus", "plain"):
                p50 = _metric(outbox, api, "buffered send 1/call p50")[who]
                p99 = _metric(outbox, api, "buffered send 1/call p99")[who]
                assert p50 <= p99

    def test_every_buffered_message_was_drained(self, outbox: dict[str, Any]) -> None:
        sizes = outbox["sizes"]
        assert sizes["drained"] == sizes["warm-up"] + sizes["single"] + sizes["lists"]
        for api in APIS:
            timed = _metric(outbox, api, "drain, batches of 100")["extra"]["messages_timed"]
            assert 0 < timed < sizes["drained"]  # the first batch is left out of the rate

    def test_machine_is_reported(self, outbox: dict[str, Any]) -> None:
        machine = outbox["machine"]
        assert machine["cores"] >= 1
        assert machine["python"] and machine["platform"]
        assert outbox["quick"] is True and outbox["rounds"] == 1

    def test_output_holds_no_connection_string_or_key(self, outbox_run: tuple[dict[str, Any], str]) -> None:
        _assert_no_secret(outbox_run[1])
