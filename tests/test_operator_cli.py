"""`geobus send` / `geobus receive` against two in-process local namespaces, configured as the
library is (GEOBUS_* environment, or a TOML file); no key or signature in any output."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from geobus._cli import main
from geobus.local import DEV_KEY, LocalNamespace

pytestmark = pytest.mark.timeout(120)

Run = Callable[..., tuple[int, str, str]]


def _assert_no_secret(printed: str) -> None:
    assert DEV_KEY not in printed
    # A masked part may show its name ("SharedAccessKey=***"), never a value.
    assert not re.search(r"(?i)(SharedAccessKey|sig)=(?!\*\*\*)", printed), printed


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No GEOBUS_* variable from the outer environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("GEOBUS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _two_regions(
    start: Callable[..., LocalNamespace], env: pytest.MonkeyPatch, **options: Any
) -> tuple[LocalNamespace, LocalNamespace]:
    """Two namespaces (queues made on first use; topic ``events`` has ``audit``), named in the
    environment with short deadlines."""
    primary, secondary = (start(topics={"events": ["audit"]}, **options) for _ in range(2))
    env.setenv("GEOBUS_PRIMARY_CONNECTION_STRING", primary.connection_string)
    env.setenv("GEOBUS_SECONDARY_CONNECTION_STRING", secondary.connection_string)
    env.setenv("GEOBUS_DEADLINE_ATTEMPT", "2")
    env.setenv("GEOBUS_DEADLINE_SEND", "5")
    env.setenv("GEOBUS_DEADLINE_RECEIVE_STALL", "3")
    return primary, secondary


@pytest.fixture
def regions(
    namespace_factory: Callable[..., LocalNamespace], clean_env: pytest.MonkeyPatch
) -> tuple[LocalNamespace, LocalNamespace]:
    return _two_regions(namespace_factory, clean_env)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Runs ``geobus ARGS``; returns the exit status, stdout and stderr, having checked that
    neither holds a key or a signature."""

    def run_(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        _assert_no_secret(out + err)
        return status, out, err

    return run_


def _json(run: Run, *argv: str) -> dict[str, Any]:
    status, out, err = run(*argv, "--json")
    assert status == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


class TestRoundTrip:
    """What `geobus send` sends, `geobus receive` reads once, from the namespace that holds it."""

    def test_send_then_receive_as_text(self, regions: Any, run: Run) -> None:
        status, out, err = run("send", "orders", "--body", "hello", "--message-id", "m-1")
        assert status == 0, err
        assert out.strip() == "sent message m-1 to queue 'orders': landed on primary"
        status, out, err = run("receive", "orders", "--max", "1", "--wait", "10")
        assert status == 0, err
        assert "m-1  from primary" in out and "delivery count 0  completed" in out
        assert "5 bytes: 'hello'" in out
        assert "received 1 message(s) from queue 'orders' (completed)" in out
        status, out, _ = run("receive", "orders", "--wait", "1")
        assert status == 0 and "received 0 message(s)" in out  # it was completed

    def test_json_shapes_of_send_and_receive(self, regions: Any, run: Run) -> None:
        sent = _json(run, "send", "orders", "--count", "3", "--message-id", "b", "--subject", "greeting",
                     "--property", "tenant=contoso", "--property", "empty=", "--body", "hi")
        assert set(sent) == {"entity", "mode", "write_quorum", "messages", "summary", "error"}
        assert sent["entity"] == {"queue": "orders"} and sent["mode"] == "passive" and sent["error"] is None
        assert sent["messages"] == [
            {"message_id": f"b-{n}", "landed": ["primary"], "missed": {}, "failed_over": False, "buffered": []}
            for n in (1, 2, 3)
        ]
        assert sent["summary"] == {"requested": 3, "sent": 3, "landed": {"primary": 3}, "failed_over": 0,
                                   "buffered": 0, "partial": 0}
        got = _json(run, "receive", "orders", "--max", "3", "--wait", "10")
        assert set(got) == {"entity", "mode", "messages", "stats", "settle_failures"}
        assert sorted(m["message_id"] for m in got["messages"]) == ["b-1", "b-2", "b-3"]
        for message in got["messages"]:
            assert message["namespace"] == "primary" and message["settled"] == "completed"
            assert message["body"] == "hi" and message["body_bytes"] == 2
            assert message["subject"] == "greeting" and message["delivery_count"] == 0
            assert message["application_properties"] == {"tenant": "contoso", "empty": ""}
            assert message["enqueued_time_utc"] and message["sequence_number"] >= 1
        assert got["stats"]["copies_received"]["primary"] == 3 and got["settle_failures"] == 0
        assert got["stats"]["fetched_not_shown"] == 0

    def test_a_count_prints_one_summary_line(self, regions: Any, run: Run) -> None:
        status, out, _ = run("send", "orders", "--count", "4")
        assert status == 0
        assert out.strip() == (
            "sent 4 of 4 message(s) to queue 'orders' (passive mode): landed on primary 4; "
            "failed over 0; buffered 0; partial 0"
        )

    def test_no_complete_abandons_so_the_message_comes_back(
        self, namespace_factory: Callable[..., LocalNamespace], clean_env: pytest.MonkeyPatch, run: Run
    ) -> None:
        # A short lock: the receiver may fetch the abandoned message again before it closes,
        # and a message fetched but never handed out stays locked until its lock expires.
        _two_regions(namespace_factory, clean_env, lock_duration=2)
        assert run("send", "orders", "--message-id", "again")[0] == 0
        first = _json(run, "receive", "orders", "--max", "1", "--wait", "10", "--no-complete")
        assert [(m["message_id"], m["settled"]) for m in first["messages"]] == [("again", "abandoned")]
        second = _json(run, "receive", "orders", "--max", "1", "--wait", "15")
        assert [m["message_id"] for m in second["messages"]] == ["again"]
        assert second["messages"][0]["delivery_count"] >= 1

    def test_no_complete_shows_each_message_once_and_leaves_it_in_the_queue(
        self, namespace_factory: Callable[..., LocalNamespace], clean_env: pytest.MonkeyPatch, run: Run
    ) -> None:
        # An abandoned message is available again at once; without a stop the command would
        # show it up to --max times and run its delivery count into the dead-letter queue.
        primary, _ = _two_regions(namespace_factory, clean_env)
        for message_id in ("a", "b"):
            assert run("send", "orders", "--message-id", message_id)[0] == 0
        got = _json(run, "receive", "orders", "--max", "12", "--wait", "5", "--no-complete")
        # Both come in the first call (each namespace is asked for what the command asks for), and
        # an abandoned message is first in line again: the command stops when one comes back.
        assert [m["message_id"] for m in got["messages"]] == ["a", "b"]
        assert primary.counts() == {"orders": 2}  # nothing dead-lettered, nothing consumed

    @pytest.mark.parametrize("where", [["--subscription", "events/audit"],
                                       ["--topic", "events", "--subscription", "audit"]])
    def test_topic_and_subscription(self, regions: Any, run: Run, where: list[str]) -> None:
        sent = _json(run, "send", "--topic", "events", "--message-id", "e-1")
        assert sent["entity"] == {"topic": "events"} and sent["messages"][0]["landed"] == ["primary"]
        got = _json(run, "receive", *where, "--max", "1", "--wait", "10")
        assert got["entity"] == {"topic": "events", "subscription": "audit"}
        assert [m["message_id"] for m in got["messages"]] == ["e-1"]

    def test_body_from_a_file_and_from_stdin(
        self, regions: Any, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        body = tmp_path / "order.json"
        body.write_bytes(b'{"order": 42}')
        assert run("send", "orders", "--file", str(body), "--message-id", "f")[0] == 0
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"from stdin " * 30)))
        assert run("send", "orders", "--file", "-", "--message-id", "s")[0] == 0
        got = {m["message_id"]: m for m in _json(run, "receive", "orders", "--max", "2", "--wait", "10")["messages"]}
        assert got["f"]["body"] == '{"order": 42}'
        assert got["s"]["body_bytes"] == 330 and got["s"]["body"].endswith("…") and len(got["s"]["body"]) == 201
        status, _, err = run("send", "orders", "--file", str(tmp_path / "missing"))
        assert status == 2 and "cannot read --file" in err

    def test_active_mode_lands_on_both_and_the_twin_is_absorbed(
        self, regions: Any, run: Run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("GEOBUS_MODE", "active")
        sent = _json(run, "send", "orders", "--message-id", "twin")
        assert sorted(sent["messages"][0]["landed"]) == ["primary", "secondary"]
        # --max above what is there: the receiver reads for the whole --wait, so both copies arrive.
        got = _json(run, "receive", "orders", "--max", "5", "--wait", "4")
        assert [m["message_id"] for m in got["messages"]] == ["twin"]
        assert got["stats"]["copies_received"] == {"primary": 1, "secondary": 1}
        assert got["stats"]["duplicates_absorbed"] == 1

    def test_a_toml_file_instead_of_the_environment(
        self, namespace_factory: Callable[..., LocalNamespace], clean_env: pytest.MonkeyPatch,
        run: Run, tmp_path: Path,
    ) -> None:
        primary, secondary = namespace_factory(), namespace_factory()
        config = tmp_path / "geobus.toml"
        config.write_text(
            f'mode = "passive"\n[primary]\nconnection_string = "{primary.connection_string}"\n'
            f'[secondary]\nconnection_string = "{secondary.connection_string}"\n'
            "[deadlines]\nattempt = 2\nsend = 5\n"
        )
        clean_env.setenv("GEOBUS_OUTBOX_PTH", "ignored with --config")
        status, out, err = run("send", "orders", "--config", str(config), "--message-id", "t-1")
        assert status == 0, err
        assert "landed on primary" in out
        got = _json(run, "receive", "orders", "--config", str(config), "--max", "1", "--wait", "10")
        assert [(m["message_id"], m["namespace"]) for m in got["messages"]] == [("t-1", "primary")]


class TestOutages:
    """Send reports a failover, a buffered message, or each namespace's cause."""

    def test_primary_refused_fails_over_and_receive_gets_it_once(
        self, regions: tuple[LocalNamespace, LocalNamespace], run: Run
    ) -> None:
        primary, _ = regions
        primary.refuse()
        status, out, err = run("send", "orders", "--message-id", "fo-1")
        assert status == 0, err
        assert out.startswith("sent message fo-1 to queue 'orders': landed on secondary; failed over; "
                              "missed primary (ServiceBusConnectionError")
        assert "primary" in err and "secondary" in err  # geobus's failover warning
        got = _json(run, "receive", "orders", "--max", "5", "--wait", "3")
        assert [(m["message_id"], m["namespace"]) for m in got["messages"]] == [("fo-1", "secondary")]
        assert got["stats"]["receive_errors"]["primary"] >= 1

    def test_both_refused_without_an_outbox_exits_1_naming_both_causes(
        self, regions: tuple[LocalNamespace, LocalNamespace], run: Run
    ) -> None:
        for namespace in regions:
            namespace.refuse()
        status, out, err = run("send", "orders", "--count", "2")
        assert status == 1
        assert "sent 0 of 2 message(s)" in out
        lines = err.splitlines()
        assert "geobus send: message 1 of 2 not sent: ReplicationError: no namespace took the message" in lines
        assert any(line.startswith("geobus send:   primary: ServiceBusConnectionError") for line in lines)
        assert any(line.startswith("geobus send:   secondary: ServiceBusConnectionError") for line in lines)

    def test_receive_from_two_unreachable_namespaces_exits_1_naming_both(
        self, regions: tuple[LocalNamespace, LocalNamespace], run: Run
    ) -> None:
        for namespace in regions:
            namespace.refuse()
        status, out, err = run("receive", "orders", "--max", "1", "--wait", "2")
        assert status == 1, (out, err)
        (line,) = [line for line in err.splitlines() if "no namespace could be read" in line]
        assert "primary:" in line and "secondary:" in line

    def test_receive_with_one_namespace_unreachable_still_exits_0(
        self, regions: tuple[LocalNamespace, LocalNamespace], run: Run
    ) -> None:
        regions[0].refuse()
        status, out, err = run("receive", "orders", "--max", "1", "--wait", "2")
        assert status == 0, (out, err)
        assert "no namespace could be read" not in err

    def test_both_refused_in_json_carries_the_causes(
        self, regions: tuple[LocalNamespace, LocalNamespace], run: Run
    ) -> None:
        for namespace in regions:
            namespace.refuse()
        status, out, _ = run("send", "orders", "--json")
        assert status == 1
        error = json.loads(out)["error"]
        assert error["error"] == "ReplicationError" and set(error["causes"]) == {"primary", "secondary"}

    def test_both_refused_with_an_outbox_is_buffered(
        self, regions: tuple[LocalNamespace, LocalNamespace], run: Run, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("GEOBUS_OUTBOX_PATH", str(tmp_path / "outbox.db"))
        for namespace in regions:
            namespace.refuse()
        status, out, err = run("send", "orders", "--message-id", "kept")
        assert status == 0, err
        assert "landed nowhere yet; buffered in the outbox (lane any)" in out

    def test_a_damaged_outbox_file_is_named_and_left_alone(
        self, regions: Any, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        foreign = tmp_path / "notes.txt"
        foreign.write_bytes(b"not a database" * 100)
        monkeypatch.setenv("GEOBUS_OUTBOX_PATH", str(foreign))
        status, out, err = run("send", "orders")
        assert status == 1 and out == ""
        assert err.startswith("geobus send: OutboxError: ") and "is not a geobus outbox" in err
        assert foreign.read_bytes() == b"not a database" * 100

    def test_a_message_no_namespace_takes_is_a_clear_error(self, regions: Any, run: Run) -> None:
        status, _, err = run("send", "orders", "--message-id", "x" * 129)
        assert status == 1
        assert "not sent: ValueError: message_id cannot be longer than 128 characters" in err


class TestBadInput:
    """A bad configuration or command line: exit 2 and a message naming what is wrong, never a key."""

    @pytest.mark.parametrize("command", ["send", "receive"])
    def test_missing_secondary(self, clean_env: pytest.MonkeyPatch, run: Run, command: str) -> None:
        clean_env.setenv("GEOBUS_PRIMARY_CONNECTION_STRING",
                         f"Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey={DEV_KEY}")
        status, out, err = run(command, "orders")
        assert status == 2 and out == ""
        assert err.startswith(f"geobus {command}: configuration (the GEOBUS_* environment): secondary: needs a "
                              "connection_string, or fully_qualified_namespace with a credential")

    def test_a_misspelt_variable_is_named(self, regions: Any, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GEOBUS_OUTBOX_PTH", "/tmp/outbox.db")
        status, _, err = run("send", "orders")
        assert status == 2 and "GEOBUS_OUTBOX_PTH: unknown geobus environment variable" in err

    def test_a_bad_value_is_named(self, regions: Any, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GEOBUS_DEADLINE_ATTEMPT", "-1")
        status, _, err = run("receive", "orders")
        assert status == 2 and "deadlines.attempt: must be > 0, got -1" in err

    def test_a_malformed_connection_string_does_not_echo_its_key(
        self, regions: Any, run: Run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("GEOBUS_SECONDARY_CONNECTION_STRING", f"SharedAccessKeyName=k;SharedAccessKey={DEV_KEY}")
        status, _, err = run("send", "orders")
        assert status == 2 and "secondary.connection_string" in err

    def test_bad_toml_missing_file_and_misplaced_key(self, clean_env: Any, run: Run, tmp_path: Path) -> None:
        broken = tmp_path / "broken.toml"
        broken.write_text('mode = "passive"\n[primary\n')
        status, _, err = run("send", "orders", "--config", str(broken))
        assert status == 2 and f"configuration ({broken}): file: " in err and "is not valid TOML" in err
        status, _, err = run("receive", "orders", "--config", str(tmp_path / "nope.toml"))
        assert status == 2 and "does not exist" in err
        status, _, err = run("receive", "orders", "--config", str(tmp_path))
        assert status == 2 and f"configuration ({tmp_path}): cannot read it: " in err
        misplaced = tmp_path / "misplaced.toml"
        misplaced.write_text(f'[primary]\nconnection_strin = "Endpoint=sb://a;SharedAccessKey={DEV_KEY}"\n')
        status, _, err = run("send", "orders", "--config", str(misplaced))
        assert status == 2 and "primary.connection_strin: unknown setting" in err

    @pytest.mark.parametrize(("argv", "problem"), [
        ([], "give a QUEUE, or --subscription TOPIC/SUB, or --topic TOPIC --subscription SUB"),
        (["--topic", "events"], "--topic needs --subscription"),
        (["orders", "--subscription", "events/audit"], "a QUEUE and --subscription are exclusive"),
        (["--subscription", "audit"], "--subscription 'audit': give a QUEUE"),
        (["--subscription", "events/"], "--subscription 'events/': give a QUEUE"),
        (["--topic", "x", "--subscription", "events/audit"], "drop --topic or the 'TOPIC/' part"),
    ])
    def test_receive_needs_one_entity(self, regions: Any, run: Run, argv: list[str], problem: str) -> None:
        status, _, err = run("receive", *argv)
        assert status == 2 and err.startswith("geobus receive: ") and problem in err

    @pytest.mark.parametrize("argv", [
        ["send"],
        ["send", "orders", "--topic", "events"],
        ["send", "orders", "--property", "no-equals-sign"],
        ["send", "orders", "--count", "0"],
        ["send", "orders", "--body", "a", "--file", "b"],
        ["receive", "orders", "--wait", "0"],
    ])
    def test_usage_errors_exit_2(self, clean_env: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert "error:" in capsys.readouterr().err


def _peek(run: Run, *argv: str) -> tuple[int, list[dict[str, Any]], str]:
    """``geobus receive --peek --json ARGV``: the status, one object per stdout line, stderr."""
    status, out, err = run("receive", "--peek", "--json", *argv)
    return status, [json.loads(line) for line in out.splitlines()], err


def _send_active(run: Run, monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    """Send in active mode (a copy on each namespace), then back to the environment's passive mode."""
    monkeypatch.setenv("GEOBUS_MODE", "active")
    status, _, err = run("send", *argv)
    monkeypatch.delenv("GEOBUS_MODE")
    assert status == 0, err


class TestPeek:
    """`geobus receive --peek` browses both namespaces; nothing is locked or settled."""

    def test_queue_peek_shows_both_namespaces_with_twins_marked(
        self, regions: Any, run: Run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _send_active(run, monkeypatch, "orders", "--count", "2", "--message-id", "both", "--body", "twice")
        assert run("send", "orders", "--message-id", "alone", "--body", "once")[0] == 0  # passive: primary only
        status, out, err = run("receive", "orders", "--peek")
        assert status == 0 and err == ""
        lines = out.splitlines()
        heads = [line for line in lines if not line.startswith("    ")]
        # Namespace by namespace, each in sequence-number order; a twin says so.
        assert [h.split("  enqueued")[0] for h in heads[:-1]] == [
            "both-1  from primary  sequence 1",
            "both-2  from primary  sequence 2",
            "alone  from primary  sequence 3",
            "both-1  from secondary  sequence 1",
            "both-2  from secondary  sequence 2",
        ]
        assert [h.endswith("delivery count 0  (twin)") for h in heads[:-1]] == [True, True, False, True, True]
        assert heads[2].endswith("delivery count 0")
        assert lines[1] == "    5 bytes: 'twice'" and lines[5] == "    4 bytes: 'once'"
        assert heads[-1] == (
            "peeked 5 message(s) from queue 'orders': primary 3, secondary 2; 2 on both namespaces (twins); "
            "nothing locked or settled"
        )

    def test_json_is_one_object_per_line_with_the_receive_fields_and_twin(
        self, regions: Any, run: Run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _send_active(run, monkeypatch, "orders", "--message-id", "j", "--subject", "s",
                     "--property", "tenant=contoso", "--body", "hi")
        status, rows, err = _peek(run, "orders")
        assert status == 0 and err == ""
        received = _json(run, "receive", "orders", "--max", "1", "--wait", "10")["messages"][0]
        assert [row["namespace"] for row in rows] == ["primary", "secondary"]
        for row in rows:
            assert set(row) == set(received) | {"twin"}  # the receive fields, sequence_number among them
            assert row["message_id"] == "j" and row["twin"] is True and row["settled"] is None
            assert row["sequence_number"] == 1 and row["delivery_count"] == 0 and row["enqueued_time_utc"]
            assert row["subject"] == "s" and row["application_properties"] == {"tenant": "contoso"}
            assert row["body"] == "hi" and row["body_bytes"] == 2

    @pytest.mark.parametrize("where", [["--subscription", "events/audit"],
                                       ["--topic", "events", "--subscription", "audit"]])
    def test_subscription_peek(
        self, regions: Any, run: Run, monkeypatch: pytest.MonkeyPatch, where: list[str]
    ) -> None:
        _send_active(run, monkeypatch, "--topic", "events", "--message-id", "e-1")
        assert run("send", "--topic", "events", "--message-id", "e-2")[0] == 0
        status, rows, err = _peek(run, *where)
        assert status == 0, err
        assert [(r["namespace"], r["message_id"], r["twin"]) for r in rows] == [
            ("primary", "e-1", True), ("primary", "e-2", False), ("secondary", "e-1", True)
        ]
        status, out, _ = run("receive", *where, "--peek")
        assert status == 0 and "from subscription events/audit: primary 2, secondary 1;" in out

    def test_max_is_honoured_on_each_namespace(
        self, regions: Any, run: Run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _send_active(run, monkeypatch, "orders", "--count", "5", "--message-id", "n")
        status, rows, _ = _peek(run, "orders", "--max", "2")
        assert status == 0
        assert [(r["namespace"], r["message_id"]) for r in rows] == [
            ("primary", "n-1"), ("primary", "n-2"), ("secondary", "n-1"), ("secondary", "n-2")
        ]
        # More than there is: all of it, in order.
        status, rows, _ = _peek(run, "orders", "--max", "50")
        assert status == 0 and [r["sequence_number"] for r in rows] == [1, 2, 3, 4, 5] * 2

    def test_nothing_is_locked_or_settled(
        self, regions: tuple[LocalNamespace, LocalNamespace], run: Run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        primary, secondary = regions
        _send_active(run, monkeypatch, "orders", "--count", "3", "--message-id", "kept")
        for _ in range(2):
            status, rows, _ = _peek(run, "orders")
            assert status == 0 and len(rows) == 6
            assert all(row["delivery_count"] == 0 for row in rows)
        assert primary.counts() == {"orders": 3} and secondary.counts() == {"orders": 3}
        # Still receivable at once: a peek that had locked them would hold them for the
        # namespace's lock duration (60 s), far beyond this --wait.
        got = _json(run, "receive", "orders", "--max", "3", "--wait", "10")
        assert sorted(m["message_id"] for m in got["messages"]) == ["kept-1", "kept-2", "kept-3"]
        assert all(m["delivery_count"] == 0 for m in got["messages"])

    def test_a_refused_namespace_is_one_stderr_line_and_the_other_is_shown(
        self, regions: tuple[LocalNamespace, LocalNamespace], run: Run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        primary, _ = regions
        _send_active(run, monkeypatch, "orders", "--message-id", "seen")
        primary.refuse()
        status, out, err = run("receive", "orders", "--peek")
        assert status == 1
        assert len(err.splitlines()) == 1
        assert err.startswith("geobus receive: primary: could not peek queue 'orders': ServiceBusConnectionError")
        assert out.startswith("seen  from secondary  sequence 1")
        assert "(twin)" not in out  # its twin on primary was not seen
        assert out.splitlines()[-1].startswith("peeked 1 message(s) from queue 'orders': primary 0 (failed), secondary 1;")

    def test_a_black_holed_namespace_is_cut_off_by_the_deadline(
        self, regions: tuple[LocalNamespace, LocalNamespace], run: Run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _, secondary = regions
        _send_active(run, monkeypatch, "orders", "--message-id", "seen")
        secondary.black_hole()  # the SDK's own peek would wait on it for ever
        status, rows, err = _peek(run, "orders")
        assert status == 1
        assert err.splitlines() == [
            "geobus receive: secondary: could not peek queue 'orders': "
            "NamespaceTimeoutError: namespace 'secondary' did not answer within 2 s"  # deadlines.attempt
        ]
        assert [(r["namespace"], r["message_id"], r["twin"]) for r in rows] == [("primary", "seen", False)]

    def test_peek_with_no_complete_is_a_usage_error(
        self, clean_env: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["receive", "orders", "--peek", "--no-complete"])
        assert exited.value.code == 2
        assert "argument --no-complete: not allowed with argument --peek" in capsys.readouterr().err

    def test_help_documents_peek_and_its_exit_status(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            main(["receive", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--peek" in text and "nothing is locked or settled" in text
        assert "with --peek a namespace could not be peeked" in text and "deadlines.attempt" in text

    def test_a_bad_configuration_exits_2(self, regions: Any, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GEOBUS_DEADLINE_ATTEMPT", "-1")
        status, out, err = run("receive", "orders", "--peek")
        assert status == 2 and out == "" and "deadlines.attempt: must be > 0" in err


class TestScrubber:
    """The last line of defence: whatever an error carries, a key or signature is masked."""

    def test_configured_keys_and_key_shapes_are_masked(self) -> None:
        from geobus import ReplicationConfig
        from geobus._cli.output import Scrubber

        config = ReplicationConfig.from_connection_strings(
            f"Endpoint=sb://a.example;SharedAccessKeyName=k;SharedAccessKey={DEV_KEY}",
            "Endpoint=sb://b.example;SharedAccessKeyName=k;SharedAccessKey=c2Vjb25kLWtleQ==",
        )
        scrub = Scrubber(config)
        text = scrub(f"bare {DEV_KEY}; c2Vjb25kLWtleQ== SharedAccessKey=other;x sr=a&sig=abc%2B&se=1")
        assert text == "bare ***; *** SharedAccessKey=***;x sr=a&sig=***&se=1"
        _assert_no_secret(text)
