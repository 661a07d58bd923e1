"""`geobus drill`: how a run is counted (synthetic events), and real runs of a subset.

The counting tests feed a run hand-written agent events, so each rule (a duplicate,
a redelivery, a loss within or beyond the disaster bound, a restart duplicate) is
shown to change the verdict. The end-to-end tests run real scenarios: namespaces,
producer and worker in their own processes, real kill -9 and SIGSTOP.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from geobus._cli import main
from geobus._tools.drill.agent import _message, _parser
from geobus._tools.drill.harness import Agent, EventLog, Run, Settings, redact
from geobus._tools.drill.poison import MAX_DELIVERY_COUNT, POISON, REASON, WORKER_ARGS, verdict
from geobus._tools.drill.report import header, line, tally
from geobus._tools.drill.session_order import ORDER_GAP_WAIT, WAIT_SLACK, open_holdings
from geobus._tools.drill.session_order import verdict as order_verdict
from geobus._tools.ledger import Delivery, Ledger
from geobus.local import DEV_KEY, development_key


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """A run that is never started: its events are written by the test."""
    return Run("refused", "sync", "passive", Settings(workdir=tmp_path))


def _events(run: Run, *events: tuple[str, str, dict[str, Any]]) -> None:
    for t, (kind, message_id, fields) in enumerate(events):
        run.log.events.append({"e": kind, "t": float(t), "id": message_id, **fields})


def _sent(*ids: str, buffered: bool = False, failed_over: bool = False) -> list[tuple[str, str, dict[str, Any]]]:
    events: list[tuple[str, str, dict[str, Any]]] = []
    for message_id in ids:
        events.append(("attempt", message_id, {}))
        events.append(
            ("ack", message_id, {"lat": 0.01, "landed": ["primary"], "fo": failed_over, "buf": ["any"] if buffered else []})
        )
    return events


def _handled(message_id: str, life: int = 0, outcome: str = "complete") -> list[tuple[str, str, dict[str, Any]]]:
    return [("deliver", message_id, {"ns": "primary", "life": life}), (outcome, message_id, {"life": life})]


class TestLedger:
    """The one definition of a duplicate, as the demo and the drill both count it."""

    def test_a_delivery_after_a_failed_completion_is_a_redelivery(self) -> None:
        ledger = Ledger()
        assert ledger.delivered("a") is Delivery.FIRST
        ledger.settle_failed("a")
        assert ledger.delivered("a") is Delivery.REDELIVERED
        ledger.completed("a")
        assert (ledger.duplicates, ledger.deliveries, ledger.delivered_ids) == (0, 2, {"a"})

    def test_a_delivery_after_a_completion_or_while_held_is_a_duplicate(self) -> None:
        ledger = Ledger()
        ledger.delivered("a")
        assert ledger.delivered("a", life=1) is Delivery.DUPLICATE  # still in worker 0's handler
        ledger.completed("a")
        ledger.completed("a", life=1)
        assert ledger.delivered("a") is Delivery.DUPLICATE
        assert ledger.duplicates == 2

    def test_a_dead_workers_message_comes_back_as_a_redelivery(self) -> None:
        ledger = Ledger()
        ledger.delivered("a")
        ledger.died(0)
        assert ledger.delivered("a", life=1) is Delivery.REDELIVERED

    def test_a_twin_queued_at_a_restart_comes_back_once_as_a_restart_duplicate(self) -> None:
        ledger = Ledger(restart_allowed={"a"})
        ledger.delivered("a")
        ledger.completed("a")
        assert ledger.delivered("a", life=1) is Delivery.RESTART_DUPLICATE
        ledger.completed("a", life=1)
        assert ledger.delivered("a", life=2) is Delivery.DUPLICATE
        assert (ledger.counts[Delivery.RESTART_DUPLICATE], ledger.duplicates) == (1, 1)


class TestCounting:
    def test_every_message_once_is_a_clean_row(self, run: Run) -> None:
        _events(run, *_sent("a", "b"), *_handled("a"), *_handled("b"))
        row = tally(run, 1.0)
        assert (row.attempted, row.acknowledged, row.lost, row.duplicates_delivered) == (2, 2, 0, 0)
        assert row.ok, row.violations

    def test_a_message_never_delivered_is_lost(self, run: Run) -> None:
        _events(run, *_sent("a", "b"), *_handled("a"))
        row = tally(run, 1.0)
        assert row.lost == 1 and not row.ok
        assert "1 acknowledged message(s) lost" in row.violations[0]

    def test_a_delivery_after_completion_is_a_duplicate(self, run: Run) -> None:
        _events(run, *_sent("a"), *_handled("a"), *_handled("a"))
        row = tally(run, 1.0)
        assert row.duplicates_delivered == 1 and not row.ok

    def test_two_copies_in_the_handler_at_once_are_a_duplicate(self, run: Run) -> None:
        _events(run, *_sent("a"), ("deliver", "a", {"ns": "primary", "life": 0}), *_handled("a"))
        assert tally(run, 1.0).duplicates_delivered == 1

    def test_a_delivery_after_a_failed_settlement_is_a_redelivery_not_a_duplicate(self, run: Run) -> None:
        _events(run, *_sent("a"), *_handled("a", outcome="settle_failed"), *_handled("a"))
        row = tally(run, 1.0)
        assert (row.redelivered, row.duplicates_delivered) == (1, 0) and row.ok

    def test_a_dead_workers_uncompleted_message_comes_back_as_a_redelivery(self, run: Run) -> None:
        _events(
            run, *_sent("a"), ("deliver", "a", {"ns": "primary", "life": 0}), ("killed", "", {"life": 0}),
            *_handled("a", life=1),
        )  # fmt: skip
        row = tally(run, 1.0)
        assert (row.redelivered, row.duplicates_delivered) == (1, 0) and row.ok

    def test_two_live_workers_with_one_message_at_once_is_a_duplicate(self, run: Run) -> None:
        _events(
            run, *_sent("a"), ("deliver", "a", {"ns": "primary", "life": 0}),
            ("deliver", "a", {"ns": "secondary", "life": 1}),
        )  # fmt: skip
        assert tally(run, 1.0).duplicates_delivered == 1

    def test_a_passive_disaster_may_lose_only_what_the_wiped_primary_held(self, run: Run) -> None:
        _events(run, *_sent("a", "b", "c"), *_handled("a"))
        run.allowed_losses = {"b", "c"}
        row = tally(run, 1.0)
        assert (row.lost, row.loss_bound) == (2, 2) and row.ok
        assert "2≤2" in line(row)
        run.allowed_losses = {"b"}  # c was not on the primary: losing it breaks the promise
        assert not tally(run, 1.0).ok

    def test_restart_duplicates_are_counted_against_the_queued_twins(self, run: Run) -> None:
        _events(run, *_sent("a", "b"), *_handled("a"), *_handled("b"), *_handled("a", life=1))
        run.restart_bound = {"a"}
        row = tally(run, 1.0)
        assert (row.restart_duplicates, row.restart_bound, row.duplicates_delivered) == (1, 1, 0) and row.ok
        run.restart_bound = set()  # a twin that was not queued at the kill: a real duplicate
        assert tally(run, 1.0).duplicates_delivered == 1

    def test_a_poison_message_that_killed_each_worker_is_redelivered_not_duplicated(self, run: Run) -> None:
        lives = [  # each life got it, and died in its handler
            event for life in range(MAX_DELIVERY_COUNT)
            for event in (("deliver", POISON, {"ns": "primary", "life": life}), ("killed", "", {"life": life}))
        ]  # fmt: skip
        _events(run, *_sent("a", POISON), *_handled("a"), *lives)
        row = tally(run, 1.0)
        assert (row.redelivered, row.duplicates_delivered, row.lost) == (MAX_DELIVERY_COUNT - 1, 0, 0) and row.ok

    def test_a_message_nobody_sent_is_unexpected(self, run: Run) -> None:
        _events(run, *_sent("a"), *_handled("a"), *_handled("zzz"))
        row = tally(run, 1.0)
        assert row.unexpected == 1 and not row.ok

    def test_nothing_acknowledged_is_a_failed_run(self, run: Run) -> None:
        assert "nothing was acknowledged" in tally(run, 1.0).violations

    def test_buffered_and_failover_figures(self, run: Run) -> None:
        _events(run, *_sent("a", buffered=True), *_sent("b", failed_over=True), *_handled("a"), *_handled("b"))
        row = tally(run, 1.0)
        assert (row.buffered, row.failover_time) == (1, 0.01)

    def test_each_twin_may_come_back_once_after_a_restart(self, run: Run) -> None:
        _events(run, *_sent("a"), *_handled("a"), *_handled("a", life=1), *_handled("a", life=1))
        run.restart_bound = {"a"}
        row = tally(run, 1.0)
        assert (row.restart_duplicates, row.duplicates_delivered) == (1, 1) and not row.ok

    def test_only_the_scenarios_own_kill_is_an_accepted_exit(self, run: Run) -> None:
        _events(run, *_sent("a"), *_handled("a"))
        killed = SimpleNamespace(process=SimpleNamespace(returncode=-9), killed=True, overdue=False)
        run.producers.append(killed)  # type: ignore[arg-type]
        assert tally(run, 1.0).ok
        crashed = SimpleNamespace(process=SimpleNamespace(returncode=1), killed=False, overdue=False)
        run.workers.append(crashed)  # type: ignore[arg-type]
        assert "an agent exited with status 1" in tally(run, 1.0).violations
        run.workers[-1] = SimpleNamespace(process=SimpleNamespace(returncode=-9), killed=False, overdue=True)  # type: ignore[call-overload]
        assert any("did not exit within 20 s of SIGTERM" in v for v in tally(run, 1.0).violations)

    def test_the_table_has_one_cell_per_column(self, run: Run) -> None:
        _events(run, *_sent("a"), *_handled("a"))
        assert len(line(tally(run, 1.0)).split()) >= len(header().split()) - 4  # headers hold spaces


DEAD = [(POISON, REASON)]  # a dead-letter queue holding the poison, dead-lettered as it should be


class TestPoisonVerdict:
    """The poison scenario's own promises; lost and duplicated messages are the ledger's."""

    def test_the_poison_in_each_region_it_landed_in_and_nothing_else_keeps_the_promise(self) -> None:
        assert verdict({"primary"}, {"primary": DEAD, "secondary": []}, MAX_DELIVERY_COUNT, 5) == []
        both = {"primary": DEAD, "secondary": DEAD}
        assert verdict({"primary", "secondary"}, both, 2 * MAX_DELIVERY_COUNT, 5) == []

    def test_a_copy_left_out_of_a_dead_letter_queue_breaks_it(self) -> None:
        [problem] = verdict({"primary", "secondary"}, {"primary": DEAD, "secondary": []}, 3, 5)
        assert problem.startswith("the secondary's dead-letter queue holds []")

    def test_another_message_dead_lettered_with_it_breaks_it(self) -> None:
        held = {"primary": [*DEAD, ("m-11", REASON)], "secondary": []}
        [problem] = verdict({"primary"}, held, 3, 5)
        assert "m-11" in problem

    def test_a_fetched_ahead_copy_whose_twin_was_delivered_is_no_broken_promise(self) -> None:
        held = {"primary": [*DEAD, ("m-11", REASON)], "secondary": []}
        assert verdict({"primary"}, held, 3, 5, delivered={"m-11"}) == []
        [problem] = verdict({"primary"}, {"primary": [*DEAD, ("m-11", "bad json")], "secondary": []}, 3, 5, {"m-11"})
        assert "m-11" in problem  # dead-lettered by a handler, not for its delivery count

    def test_a_dead_letter_for_another_reason_breaks_it(self) -> None:
        [problem] = verdict({"primary"}, {"primary": [(POISON, "TTLExpiredException")], "secondary": []}, 3, 5)
        assert "TTLExpiredException" in problem

    def test_dead_lettered_before_its_deliveries_were_used_up_breaks_it(self) -> None:
        [problem] = verdict({"primary"}, {"primary": DEAD, "secondary": []}, MAX_DELIVERY_COUNT - 1, 5)
        assert "fewer than its" in problem

    def test_a_fleet_that_delivered_nothing_after_the_first_death_breaks_it(self) -> None:
        [problem] = verdict({"primary"}, {"primary": DEAD, "secondary": []}, 3, 0)
        assert "the fleet stopped" in problem


def _session(*steps: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Events of the session-order scenario, one per step, a second apart: ``("own", session, life)``,
    ``("deliver", id, session, seq, life)`` (producer ``p.1``; seq None: unstamped),
    ``("release", session, life, {stats})``, ``("kill", life)``."""
    events: list[dict[str, Any]] = []
    for t, (kind, *rest) in enumerate(steps):
        if kind == "own":
            events.append({"e": "owned", "t": float(t), "session": rest[0], "life": rest[1]})
        elif kind == "deliver":
            message_id, session, seq, life = rest
            events.append({"e": "deliver", "t": float(t), "id": message_id, "ns": "primary", "life": life,
                           "session": session, "producer": None if seq is None else "p.1", "seq": seq})
        elif kind == "release":
            stats = {"gaps": 0, "gap_messages": 0, "out_of_order": 0, "gap_wait_seconds": 0.0, **rest[2]}
            events.append({"e": "released", "t": float(t), "session": rest[0], "life": rest[1], "error": None, **stats})
        else:
            events.append({"e": "killed", "t": float(t), "life": rest[0]})
    return events


IN_ORDER = (("own", "s0", 0), ("deliver", "a", "s0", 1, 0), ("deliver", "b", "s0", 2, 0), ("release", "s0", 0, {}),
            ("own", "s0", 1), ("deliver", "c", "s0", 3, 1), ("release", "s0", 1, {}))  # fmt: skip
# s0's 2 delivered after its 3 (stranded in the region that went down, then back).
LATE = (("own", "s0", 0), ("deliver", "a", "s0", 1, 0), ("deliver", "c", "s0", 3, 0),
        ("deliver", "b", "s0", 2, 0))  # fmt: skip


class TestSessionOrderVerdict:
    """The session-order scenario's promises; lost and duplicated messages are the ledger's."""

    @pytest.mark.parametrize("mode", ["passive", "active"])
    def test_each_session_in_order_with_one_holder_at_a_time_keeps_the_promise(self, mode: str) -> None:
        judged = order_verdict(_session(*IN_ORDER), mode, ORDER_GAP_WAIT)
        assert judged.problems == [] and (judged.sessions, judged.holdings, judged.late) == (1, 2, 0)

    def test_a_redelivery_is_not_a_reordering(self) -> None:
        again = (*IN_ORDER[:3], ("deliver", "a", "s0", 1, 0), *IN_ORDER[3:])  # a's lock was lost: it came back
        assert order_verdict(_session(*again), "active", ORDER_GAP_WAIT).problems == []

    def test_a_late_message_breaks_active_mode(self) -> None:
        judged = order_verdict(_session(*LATE, ("release", "s0", 0, {"out_of_order": 1})), "active", ORDER_GAP_WAIT)
        [problem] = judged.problems
        assert judged.late == 1 and "active mode keeps the order" in problem

    def test_a_late_message_the_receiver_reported_keeps_passive_modes_promise(self) -> None:
        for stats in ({"out_of_order": 1}, {"gaps": 1, "gap_messages": 1, "gap_wait_seconds": ORDER_GAP_WAIT}):
            judged = order_verdict(_session(*LATE, ("release", "s0", 0, stats)), "passive", ORDER_GAP_WAIT)
            assert judged.problems == [] and (judged.late, judged.reported) == (1, 1)

    def test_a_late_message_nobody_reported_is_a_silent_reordering(self) -> None:
        [problem] = order_verdict(_session(*LATE, ("release", "s0", 0, {})), "passive", ORDER_GAP_WAIT).problems
        assert problem == "session s0: 1 message(s) delivered after later ones, 0 reported: a silent reordering"

    def test_a_gap_waited_beyond_the_bound_breaks_it(self) -> None:
        beyond = {"gaps": 1, "gap_wait_seconds": ORDER_GAP_WAIT + WAIT_SLACK + 0.5}
        [problem] = order_verdict(_session(*IN_ORDER[:3], ("release", "s0", 0, beyond)), "passive", ORDER_GAP_WAIT).problems
        assert "beyond the 2 s bound" in problem

    def test_two_workers_holding_one_session_at_once_break_it(self) -> None:
        both = (("own", "s0", 0), ("own", "s0", 1), ("release", "s0", 1, {}), ("release", "s0", 0, {}))
        judged = order_verdict(_session(*both), "passive", ORDER_GAP_WAIT)
        assert judged.overlaps == 1 and judged.problems == ["session s0: held by workers 0 and 1 at once"]

    def test_a_killed_workers_holding_ends_at_its_death(self) -> None:
        steps = (("own", "s0", 0), ("kill", 0), ("own", "s0", 1), ("release", "s0", 1, {}))
        assert order_verdict(_session(*steps), "passive", ORDER_GAP_WAIT).problems == []
        assert open_holdings(_session(*steps[:3])) == {("s0", 1)}

    def test_a_session_message_without_a_stamp_breaks_it(self) -> None:
        steps = (("own", "s0", 0), ("deliver", "a", "s0", None, 0), ("release", "s0", 0, {}))
        [problem] = order_verdict(_session(*steps), "active", ORDER_GAP_WAIT).problems
        assert "without an order stamp" in problem

    def test_list_names_the_scenario(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["drill", "--list"]) == 0
        assert "session-order" in capsys.readouterr().out


class TestHarness:
    def test_a_line_cut_by_kill_9_is_read_once_it_is_whole(self, tmp_path: Path) -> None:
        path = tmp_path / "events.jsonl"
        log = EventLog()
        log.watch(path)
        path.write_bytes(b'{"e": "ack", "t": 1.0, "id": "a"}\n{"e": "ack", "t": 2.0, "i')
        assert [e["id"] for e in log.poll()] == ["a"]
        with path.open("ab") as stream:
            stream.write(b'd": "b"}\n')
        assert [e["id"] for e in log.poll()] == ["b"]
        assert [e["id"] for e in log.events] == ["a", "b"]

    def test_a_kept_directory_used_again_starts_empty(self, tmp_path: Path) -> None:
        first = Run("refused", "sync", "passive", Settings(workdir=tmp_path))
        (first.dir / "worker-0.jsonl").write_text('{"e": "deliver", "t": 1.0, "id": "old", "life": 0}\n')
        again = Run("refused", "sync", "passive", Settings(workdir=tmp_path))
        assert again.dir == first.dir and list(again.dir.iterdir()) == []


    def test_a_paused_agent_stops_on_sigterm_without_being_overdue(self, tmp_path: Path) -> None:
        agent = Agent([sys.executable, "-c", "import time; time.sleep(120)"], dict(os.environ), tmp_path / "agent.log")
        assert agent.pause()  # stopped, as the fleet scenario leaves a worker it then fails to kill
        agent.terminate(timeout=10.0)
        assert not agent.running and not agent.overdue and agent.process.returncode == -signal.SIGTERM

    def test_held_by_is_what_receive_calls_returned_less_what_was_settled(self, run: Run) -> None:
        run.log.events += [
            {"e": "batch", "t": 0.0, "ids": ["a", "b", "c"], "life": 0},
            {"e": "batch", "t": 0.1, "ids": ["x"], "life": 1},
            {"e": "deliver", "t": 0.2, "id": "a", "life": 0},
            {"e": "complete", "t": 0.3, "id": "a", "life": 0},
            {"e": "settle_failed", "t": 0.4, "id": "b", "life": 0},
            {"e": "batch", "t": 0.5, "ids": ["b", "d"], "life": 0},  # b came round again
        ]
        assert run.held_by(0) == {"b", "c", "d"} and run.held_by(1) == {"x"}


class TestAgent:
    def test_the_same_seed_gives_the_same_messages(self) -> None:
        import random

        args = _parser().parse_args(["producer", "--api", "sync", "--events", "x", "--queue", "q", "--seed", "9"])
        first = [str(_message(args, i, random.Random("9-0"))) for i in range(5)]
        again = [str(_message(args, i, random.Random("9-0"))) for i in range(5)]
        other = [str(_message(args, i, random.Random("10-0"))) for i in range(5)]
        assert first == again != other

    def test_a_poison_worker_takes_one_message_at_a_time(self) -> None:
        # A batch handed out with the poison dies with it at every death: its messages would be lost.
        args = _parser().parse_args(["worker", "--api", "async", "--events", "x", "--queue", "q", *WORKER_ARGS])
        assert (args.batch, args.prefetch, args.poison) == (1, 1, POISON)
        assert _parser().parse_args(["worker", "--api", "sync", "--events", "x", "--queue", "q"]).batch == 20

    def test_redact_hides_keys_and_signatures(self) -> None:
        text = f"Endpoint=sb://h/;SharedAccessKeyName=k;SharedAccessKey={DEV_KEY} sig=abc%2Bdef&se=1"
        assert DEV_KEY not in redact(text) and "abc%2Bdef" not in redact(text)


class TestCommand:
    def test_list_names_every_scenario(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["drill", "--list"]) == 0
        out = capsys.readouterr().out
        for name in ("refused", "black-hole", "frozen", "outage", "disaster", "flapping", "both-down",
                     "producer-killed", "worker-killed", "worker-restart", "fleet", "latency", "poison"):  # fmt: skip
            assert name in out

    @pytest.mark.parametrize(("argv", "problem"), [
        (["--messages", "5"], "argument --messages: must be at least 40, got 5"),
        (["--rate", "0"], "argument --rate: must be a number > 0, got 0"),
        (["--scenario", "meteor"], "argument --scenario: invalid choice: 'meteor'"),
    ])  # fmt: skip
    def test_bad_arguments_are_usage_errors(
        self, argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["drill", *argv])
        assert exited.value.code == 2 and problem in capsys.readouterr().err


def _dead_letter_lists(judged: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The two dead-letter queues' contents, as the poison scenario's timeline entry prints them."""
    primary = judged.split("primary ", 1)[1].split(", secondary ", 1)[0]
    secondary = judged.split(", secondary ", 1)[1].split("; ", 1)[0]
    return ast.literal_eval(primary), ast.literal_eval(secondary)


def _drill(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["drill", "--messages", "60", "--seed", "7", "--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out), out + err


@pytest.mark.slow
@pytest.mark.timeout(240)
class TestRuns:
    """Real runs: each scenario's promise holds, and nothing secret is printed."""

    @pytest.mark.parametrize(
        ("scenario", "api", "mode"),
        [
            ("black-hole", "sync", "passive"),
            ("frozen", "async", "active"),
            ("producer-killed", "async", "passive"),
            ("worker-restart", "sync", "active"),
        ],
    )
    def test_nothing_lost_nothing_duplicated(
        self, scenario: str, api: str, mode: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, report, printed = _drill(capsys, "--scenario", scenario, "--api", api, "--mode", mode)
        [row] = report["rows"]
        assert code == 0, row
        assert row["attempted"] == 60
        # kill -9 may catch one send in flight: attempted, never acknowledged, so not counted.
        assert row["acknowledged"] >= (59 if scenario == "producer-killed" else 60)
        assert (row["lost"], row["duplicates_delivered"], row["unexpected"]) == (0, 0, 0)
        if scenario == "black-hole":
            assert row["failover_time"] is not None  # passive moved to the secondary
        if scenario == "producer-killed":
            assert row["buffered"] >= 20  # the dead producer's outbox held these; the next one sent them
        if mode == "active":
            assert row["duplicates_absorbed"] >= 1  # every message had a twin
        if scenario == "worker-restart":  # a SQLite seen-set: the new worker remembers the old one's
            [kill] = [entry for entry in row["timeline"] if "worker killed" in entry]
            twins = int(kill.split("; ")[1].split()[0])  # completed twins still queued at the kill
            assert row["restart_bound"] == 0 and row["restart_duplicates"] == 0  # none allowed, none came
            assert row["duplicates_absorbed"] >= twins  # each was settled without a handler
        assert not any(development_key(n) in printed for n in (1, 2)) and "SharedAccessKey=" not in printed

    def test_passive_disaster_loses_at_most_what_the_primary_held(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, report, _ = _drill(capsys, "--scenario", "disaster", "--api", "sync", "--mode", "passive")
        [row] = report["rows"]
        assert code == 0, row
        assert row["loss_bound"] is not None and row["lost"] <= row["loss_bound"]
        assert row["duplicates_delivered"] == 0

    def test_worker_killed_messages_come_back(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, report, _ = _drill(capsys, "--scenario", "worker-killed", "--api", "async", "--mode", "active")
        [row] = report["rows"]
        assert code == 0, row
        assert row["lost"] == 0 and row["duplicates_delivered"] == 0
        assert row["restart_duplicates"] <= row["restart_bound"]
        [kill] = [entry for entry in row["timeline"] if "worker killed" in entry]
        holding = int(kill.split("holding ")[1].split()[0])
        assert row["redelivered"] >= min(holding, 1)  # what the dead worker held came back

    @pytest.mark.parametrize(("api", "mode"), [("async", "active")])
    def test_poison_is_dead_lettered_in_each_region_and_the_rest_delivered_once(
        self, api: str, mode: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, report, _ = _drill(capsys, "--scenario", "poison", "--api", api, "--mode", mode)
        [row] = report["rows"]
        assert code == 0, row
        assert (row["lost"], row["duplicates_delivered"], row["unexpected"]) == (0, 0, 0)
        assert row["redelivered"] >= MAX_DELIVERY_COUNT - 1  # each new worker got the poison again
        [judged] = [entry for entry in row["timeline"] if "dead-lettered after" in entry]
        primary, secondary = _dead_letter_lists(judged)
        # Beside the poison, only a copy fetched ahead whose twin reached a handler (the ledger says none was lost).
        assert (POISON, REASON) in primary and ((POISON, REASON) in secondary) == (mode == "active")

    # Passive mode: the harder case (gaps waited for, stranded messages late and reported).
    @pytest.mark.parametrize(("api", "mode"), [("sync", "passive")])
    def test_session_order_holds_through_a_primary_killed_mid_session(
        self, api: str, mode: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, report, printed = _drill(capsys, "--scenario", "session-order", "--api", api, "--mode", mode)
        [row] = report["rows"]
        assert code == 0, row
        assert (row["lost"], row["duplicates_delivered"], row["unexpected"], row["acknowledged"]) == (0, 0, 0, 60)
        [judged] = [entry for entry in row["timeline"] if "session order" in entry]
        assert "6 sessions" in judged and "0 overlapping holding(s)" in judged
        assert not any(development_key(n) in printed for n in (1, 2)) and "SharedAccessKey=" not in printed
