"""The benchmarks and `geobus bench` run end to end and report every row (no timing thresholds)."""

from __future__ import annotations

import itertools
import json
import math
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import geobus
from geobus._cli import main
from geobus._tools import bench as _bench
from geobus.local import development_key

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PLACEMENTS = ("out-of-process", "in-process")
STORES = ("memory", "sqlite")
APIS = ("sync", "async")
SCENARIOS = ("send 1/call", "send lists of 100", "peek-lock + complete", "receive&delete pf100")


def _run(command: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, str, str]:
    """Runs ``command``; its exit status, stdout and stderr."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the benchmark unwinds and stops the servers it started.
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"the benchmark did not finish in {timeout:.0f} s: {err[-2000:]}")
    return process.returncode, out, err


def _run_benchmark(script: str, *args: str, timeout: float = 90.0) -> tuple[dict[str, Any], str]:
    """Runs ``benchmarks/<script>``; returns its JSON and everything it printed."""
    status, out, err = _run([sys.executable, str(BENCHMARKS / script), *args], timeout)
    assert status == 0, err[-2000:]
    return json.loads(out), out + err


def _assert_no_secret(printed: str) -> None:
    assert "SharedAccessKey" not in printed
    assert "Endpoint=sb://" not in printed
    assert not any(development_key(n) in printed for n in (1, 2))  # each namespace's key


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

    def test_output_holds_no_connection_string_or_key(self, quick_run: tuple[dict[str, Any], str]) -> None:
        _assert_no_secret(quick_run[1])


# -- benchmarks/replication.py ----------------------------------------------------------------

METRIC_KEYS = {"name", "unit", "geobus", "plain", "better", "plain_source", "note", "extra", "ratio"}


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
            if metric["plain"] is None:  # only a plain SDK still waiting when the bench gave up
                assert metric["plain_source"] == "cut-off" and "unbounded" in metric["note"], metric
                assert metric["ratio"] is None and _positive(metric["extra"]["ratio_below"]), metric
            else:
                assert metric["plain_source"] == "measured", metric
                assert _positive(metric["plain"]), metric
                assert metric["ratio"] == pytest.approx(metric["geobus"] / metric["plain"], rel=1e-3)

    def test_only_failover_and_the_seen_set_are_left_to_it(self, replication: dict[str, Any]) -> None:
        # Sends and receives are the latency benchmark's: measured once, there.
        assert len(replication["metrics"]) == len(_rows(replication, "failover")) + len(_rows(replication, "seen-set"))
        assert set(replication["sizes"]) == {"seen_ids", "black_hole_cutoff"}

    def test_failover_is_measured_on_both_sides_for_both_faults(self, replication: dict[str, Any]) -> None:
        rows = _rows(replication, "failover")
        assert len(rows) == 2
        deadline = replication["attempt_deadline_s"]
        for row in rows:
            assert row["unit"] == "s"
            geobus_run = row["extra"]["geobus"]
            assert geobus_run["failovers"] == 1 and geobus_run["sends_after_fault"] >= 1
        refused, black_hole = rows
        # Refused: the plain SDK raised (after its retries), then sent to the secondary, in this run.
        assert refused["plain_source"] == "measured" and _positive(refused["plain"])
        assert refused["extra"]["plain"]["error"] == "ServiceBusConnectionError"
        # Black hole: the plain SDK had no answer by the cut-off; geobus's deadline bounded it.
        assert black_hole["plain"] is None and black_hole["plain_source"] == "cut-off"
        assert black_hole["extra"]["plain"]["cut_off_s"] == replication["sizes"]["black_hole_cutoff"]
        assert black_hole["extra"]["geobus"]["attempt_deadline_s"] == deadline

    def test_seen_set_is_measured_against_a_plain_set(self, replication: dict[str, Any]) -> None:
        rows = _rows(replication, "seen-set")
        assert sorted(m["unit"] for m in rows) == ["bytes", "checks/s", "ids/s"]
        assert replication["sizes"]["seen_ids"] == 100_000
        assert all(m["plain_source"] == "measured" for m in rows)

    def test_output_holds_no_connection_string_or_key(self, replication_run: tuple[dict[str, Any], str]) -> None:
        _assert_no_secret(replication_run[1])


# -- benchmarks/latency.py ----------------------------------------------------------------------

NETWORKS = ("loopback", "4ms RTT")
LATENCY_ROWS = ("{api} passive send 1/call", "{api} active send 1/call", "{api} DedupReceiver, both copies",
                "{api} {crowd}, 1 passive sender")
CROWDS = {"sync": "16 threads", "async": "64 tasks"}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_latency_benchmark_compares_each_row_at_loopback_and_at_4ms() -> None:
    result, printed = _run_benchmark("latency.py", "--quick", "--json", timeout=200)
    assert result["quick"] is True and result["rounds"] == 1 and result["one_way_s"] == 0.002
    throughput = [f"{net} " + row.format(api=api, crowd=CROWDS[api])
                  for net in NETWORKS for api in APIS for row in LATENCY_ROWS]  # fmt: skip
    names = [m["name"] for m in result["metrics"]]
    assert names == [name for row in throughput for name in (row, f"{row}, CPU")]  # a CPU row beside each
    for metric in result["metrics"]:
        assert set(metric) == METRIC_KEYS and metric["plain_source"] == "measured", metric
        assert _positive(metric["geobus"]) and _positive(metric["plain"]), metric
        assert metric["ratio"] == pytest.approx(metric["geobus"] / metric["plain"], rel=1e-3)
        cpu = metric["name"].endswith(", CPU")
        assert (metric["unit"], metric["better"]) == (("us", "lower") if cpu else (metric["unit"], "higher")), metric
    rows = _bench.table_rows("latency", result)
    assert [row["scenario"] for row in rows] == names and "latency" in _bench.BENCHMARKS
    _assert_no_secret(printed)


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


# -- benchmarks/fleet.py -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_fleet_benchmark_compares_each_shared_store_with_the_memory_fleet() -> None:
    result, printed = _run_benchmark("fleet.py", "--quick", "--json", timeout=180)
    assert result["sizes"] == {"messages": 600, "workers": 3, "handle_time_s": 0.002}
    memory = result["memory"]["msgs_per_s"]
    assert _positive(memory)
    names = [m["name"] for m in result["metrics"]]
    assert names == ["3 workers, sqlite seen-set, completed", "3 workers, redis seen-set, completed"]
    for metric in result["metrics"]:
        assert _positive(metric["geobus"]) and metric["plain"] == memory
        assert metric["ratio"] == pytest.approx(metric["geobus"] / memory, rel=1e-3)
        assert metric["note"].startswith("duplicates to handlers: 0 ")  # a shared store lets none through
    _assert_no_secret(printed)


# -- benchmarks/sessions.py --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_sessions_benchmark_compares_the_session_receiver_with_two_plain_ones() -> None:
    result, printed = _run_benchmark("sessions.py", "--quick", "--json", timeout=180)
    assert result["sizes"] == {"messages": 120, "sessions": 4} and result["quick"] is True
    assert [m["name"] for m in result["metrics"]] == [f"{api} session receive, 4 sessions" for api in APIS]
    for metric in result["metrics"]:
        assert metric["unit"] == "copies/s" and metric["better"] == "higher" and metric["plain_source"] == "measured"
        assert _positive(metric["geobus"]) and _positive(metric["plain"])
        assert metric["ratio"] == pytest.approx(metric["geobus"] / metric["plain"], rel=1e-3)
        assert metric["extra"]["copies"] == 240  # every message on both namespaces, each copy settled
    [row] = _bench.table_rows("sessions", {"metrics": result["metrics"][:1]})
    assert (row["benchmark"], row["scenario"], row["ratio"]) == ("sessions", "sync session receive, 4 sessions",
                                                                 result["metrics"][0]["ratio"])  # fmt: skip
    assert "sessions" in _bench.BENCHMARKS
    _assert_no_secret(printed)


# -- geobus bench --------------------------------------------------------------------------------

# Two of the three, to keep the run short: each is also run alone above. Named out of order:
# they run, and their rows come, in geobus bench's own order.
ONLY = ("outbox", "local_namespace")


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    # Outside the checkout: geobus bench needs the installed package, not benchmarks/.
    status, out, err = _run([sys.executable, "-m", "geobus", "bench", "--quick", "--json", "--only", *ONLY],
                            timeout=150.0, cwd=tmp_path_factory.mktemp("elsewhere"))
    assert status == 0, err[-2000:]
    return json.loads(out), out + err


@pytest.fixture
def bench(bench_run: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return bench_run[0]


@pytest.mark.slow
@pytest.mark.timeout(200)
class TestGeobusBench:
    """`geobus bench --quick --json --only ...`: one table from each benchmark's own run."""

    def test_each_benchmark_ran_once_in_order(self, bench: dict[str, Any]) -> None:
        assert [(b["name"], b["status"], b["exit_status"]) for b in bench["benchmarks"]] == [
            ("local_namespace", "ok", 0), ("outbox", "ok", 0)]
        assert bench["quick"] is True and set(bench["results"]) == {"local_namespace", "outbox"}
        assert [row["benchmark"] for row in bench["rows"]] == sorted(
            (row["benchmark"] for row in bench["rows"]), key=_bench.BENCHMARKS.index)

    def test_every_outbox_metric_is_a_row_with_the_same_runs_figures(self, bench: dict[str, Any]) -> None:
        rows = {row["scenario"]: row for row in bench["rows"] if row["benchmark"] == "outbox"}
        metrics = bench["results"]["outbox"]["metrics"]
        assert list(rows) == [m["name"] for m in metrics]
        for metric in metrics:
            row = rows[metric["name"]]
            assert (row["geobus"], row["plain"], row["unit"]) == (metric["geobus"], metric["plain"], metric["unit"])
            if metric["plain"] is None:
                assert row["ratio"] is None and row["plain_source"] is None
            else:
                assert _positive(row["ratio"]) and row["plain_source"] == "measured"
                assert row["ratio"] == pytest.approx(row["geobus"] / row["plain"], rel=1e-3)
                assert row["ratio"] == pytest.approx(metric["ratio"], rel=1e-3)

    def test_local_namespace_rows_are_the_plain_sdks_headline(self, bench: dict[str, Any]) -> None:
        rows = [row for row in bench["rows"] if row["benchmark"] == "local_namespace"]
        assert [row["scenario"] for row in rows] == [f"{api} {s}" for api in APIS for s in SCENARIOS]
        measured = {f"{r['api']} {r['scenario']}": r["msgs_per_s"]
                    for r in bench["results"]["local_namespace"]["rows"]
                    if (r["placement"], r["store"]) == ("out-of-process", "memory")}
        for row in rows:
            assert row["geobus"] is None and row["ratio"] is None
            assert row["plain"] == measured[row["scenario"]] and _positive(row["plain"])

    def test_the_machine_is_reported(self, bench: dict[str, Any]) -> None:
        machine = bench["machine"]
        assert machine["cores"] >= 1 and machine["python"] and machine["platform"]
        assert machine["azure-servicebus"] == version("azure-servicebus")
        assert machine["geobus"] == geobus.__version__

    def test_the_table_shows_every_row_and_the_machine(self, bench: dict[str, Any]) -> None:
        text = _bench.render(bench)
        assert text.startswith(f"machine: {bench['machine']['platform']}, ")
        assert f"azure-servicebus {version('azure-servicebus')}" in text and f"geobus {geobus.__version__}" in text
        lines = text.splitlines()
        for row in bench["rows"]:
            (line,) = [line for line in lines
                       if line[:16].strip() == row["benchmark"] and line[16:68].strip() == row["scenario"]]
            if row["ratio"] is not None:
                assert f" {row['ratio']:#.3g} " in line
        _assert_no_secret(text)

    def test_output_holds_no_connection_string_or_key(self, bench_run: tuple[dict[str, Any], str]) -> None:
        _assert_no_secret(bench_run[1])


class TestGeobusBenchErrors:
    """An unknown benchmark, a missing extra or a failed benchmark is said plainly."""

    def test_an_unknown_name_is_refused(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["bench", "--only", "outbox", "replicaton"])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert "argument --only: invalid choice: 'replicaton'" in err and "local_namespace" in err

    def test_without_the_local_extra(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.setitem(sys.modules, "proton", None)  # as if python-qpid-proton were not installed
        assert main(["bench", "--quick"]) == 2
        assert "geobus bench: this command needs the 'local' extra" in capsys.readouterr().err

    def test_a_failing_benchmark_fails_the_run(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        scripts = {"outbox": "import sys; sys.exit(3)", "replication": "print('not json')"}
        monkeypatch.setattr(_bench, "benchmark_command",
                            lambda name, quick: [sys.executable, "-c", scripts[name]])
        assert main(["bench", "--only", "replication", "outbox", "--json"]) == 1
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert [(b["name"], b["status"]) for b in report["benchmarks"]] == [
            ("replication", "its output is not JSON"), ("outbox", "exit status 3 (its error is above)")]
        assert report["rows"] == [] and report["results"] == {}
        assert "geobus bench: outbox failed: exit status 3" in captured.err


class TestCutOff:
    """A plain figure the bench did not measure is never printed: a cut-off row has none, and says why."""

    def test_a_cut_off_row_shows_no_plain_figure_and_bounds_the_ratio(self) -> None:
        black_hole = {"name": "failover, black-holed primary -> on secondary", "unit": "s", "geobus": 5.0,
                      "plain": None, "better": "lower", "plain_source": "cut-off",
                      "note": "plain: unbounded (> 20 s)", "extra": {"ratio_below": 0.25}, "ratio": None}
        rows = _bench.table_rows("replication", {"metrics": [black_hole]})
        assert rows[0]["plain"] is None and rows[0]["ratio"] is None and rows[0]["plain_source"] == "cut-off"
        machine = {"platform": "test", "implementation": "CPython", "python": "3", "cores": 2, "usable_cores": 2,
                   "azure-servicebus": "7.15.0", "python-qpid-proton": "0.40.0", "geobus": geobus.__version__}
        text = _bench.render({"machine": machine, "quick": True, "rows": rows, "elapsed_s": 1.0,
                              "benchmarks": [{"name": "replication", "status": "ok", "elapsed_s": 1.0}]})
        (line,) = [line for line in text.splitlines() if "failover, black-holed primary" in line]
        assert line.split()[-8:] == ["5.00", "-", "-", "plain:", "unbounded", "(>", "20", "s)"]
        assert "cut-off: the plain SDK was still waiting when the benchmark gave up on it" in text
