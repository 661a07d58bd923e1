"""The `geobus` command: the demo runs (no key reaches its output); the outbox tool."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage

from geobus import OutboxPolicy
from geobus._cli import main
from geobus._storage.outbox import Outbox
from geobus.local import DEV_KEY, development_key

pytestmark = pytest.mark.timeout(120)


class TestDemo:
    """`geobus demo` (shortened) completes through the outage with nothing lost."""

    @pytest.mark.parametrize("mode", ["passive", "active"])
    def test_demo_loses_nothing_and_prints_no_key(self, mode: str, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["demo", "--messages", "40", "--rate", "200", "--mode", mode]) == 0
        out, err = capsys.readouterr()
        assert "OK: lost 0, duplicates delivered 0" in out
        assert "acknowledged              40" in out
        traffic = out.split("traffic (who stored each acknowledged message, in order):")[1]
        if mode == "passive":
            assert "failed over to secondary" in out
            assert "failover time             " in out and "failover time             -" not in out
            assert " secondary " in traffic  # the outage's stretch went to the secondary
        else:
            assert "duplicates absorbed" in out and "duplicates absorbed       0" not in out
            assert "primary+secondary" in traffic
        assert not any(development_key(n) in out + err for n in (1, 2))  # each namespace's key
        assert "SharedAccessKey=" not in out + err

    def test_too_few_messages_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["demo", "--messages", "1"])
        assert exited.value.code == 2
        assert "argument --messages: must be at least 10, got 1" in capsys.readouterr().err


class TestOutbox:
    """`geobus outbox PATH`: lanes and dead letters of a producer's outbox; retry and purge."""

    @pytest.fixture
    def outbox_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "outbox.db"
        outbox = Outbox(OutboxPolicy(path=str(path)))
        outbox.append("queue:orders", ["any"], [ServiceBusMessage("a", message_id="o-1"), ServiceBusMessage("b", message_id="o-2")])
        outbox.append("queue:orders", ["secondary"], [ServiceBusMessage("c", message_id="o-3")])
        outbox.dead_letter([1], "refused by the namespace: MessageSizeExceededError: too large")
        outbox.close()
        return path

    def test_show_reports_depth_lanes_and_dead_letters(self, outbox_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["outbox", str(outbox_file), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["depth"] == 2
        assert {(lane["lane"], lane["depth"]) for lane in report["lanes"]} == {("any", 1), ("secondary", 1)}
        assert [(d["message_id"], d["reason"]) for d in report["dead_letters"]] == [
            ("o-1", "refused by the namespace: MessageSizeExceededError: too large")
        ]
        assert main(["outbox", str(outbox_file)]) == 0
        text = capsys.readouterr().out
        assert "2 message(s) waiting" in text and "o-1" in text and "MessageSizeExceededError" in text

    def test_retry_moves_dead_letters_back_to_their_lane(self, outbox_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["outbox", str(outbox_file), "--retry", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["retried"] == 1 and report["dead_letters"] == []
        reopened = Outbox(OutboxPolicy(path=str(outbox_file)))
        try:
            assert [entry.message_id for entry in reopened.head("queue:orders", "any", 10)] == ["o-2", "o-1"]
        finally:
            reopened.close()

    def test_purge_by_id_deletes_only_that_dead_letter(self, outbox_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["outbox", str(outbox_file), "--purge", "999", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["purged"] == 0
        assert main(["outbox", str(outbox_file), "--purge", "1", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["purged"] == 1 and report["dead_letters"] == [] and report["depth"] == 2

    def test_a_missing_or_foreign_file_is_a_clear_error_and_is_not_created(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        missing = tmp_path / "nope.db"
        assert main(["outbox", str(missing)]) == 1
        assert "does not exist" in capsys.readouterr().err and not missing.exists()
        foreign = tmp_path / "notes.txt"
        foreign.write_bytes(b"not a database" * 100)
        assert main(["outbox", str(foreign)]) == 1
        assert "is not a geobus outbox" in capsys.readouterr().err
        assert foreign.read_bytes() == b"not a database" * 100

    def test_a_dead_letter_reason_is_printed_redacted(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "outbox.db"
        outbox = Outbox(OutboxPolicy(path=str(path)))
        outbox.append("queue:orders", ["any"], [ServiceBusMessage("a", message_id="o-1")])
        outbox.dead_letter([1], f"ServiceBusError: Endpoint=sb://h/;SharedAccessKey={DEV_KEY} via rediss://u:hunter22hunter@cache:6380")
        outbox.close()
        for argv in ([], ["--json"]):
            assert main(["outbox", str(path), *argv]) == 0
            out = capsys.readouterr().out
            assert "SharedAccessKey=***" in out and "rediss://***@cache:6380" in out
            assert DEV_KEY not in out and "hunter22" not in out


class TestConvention:
    """Every command ends the same way: the status of ``geobus._cli``'s docstring, the reason on stderr."""

    @pytest.fixture
    def command(self, monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[object], int]], None]:
        """Stands ``run`` in for the outbox command's own."""
        import geobus._cli.outbox

        def use(run: Callable[[object], int]) -> None:
            monkeypatch.setattr(geobus._cli.outbox, "run", run)

        return use

    def test_a_usage_error_exits_2_said_once(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["local", "--namespaces", "0"]) == 2
        out = capsys.readouterr()
        assert out.err == "geobus local: --namespaces must be at least 1\n"
        assert out.out == ""  # nothing was served

    def test_an_interrupt_exits_130(
        self, command: Callable[[Callable[[object], int]], None], capsys: pytest.CaptureFixture[str]
    ) -> None:
        def run(args: object) -> int:
            raise KeyboardInterrupt

        command(run)
        assert main(["outbox", "x.db"]) == 130
        assert capsys.readouterr().err == "geobus outbox: interrupted\n"

    def test_a_command_whose_module_needs_the_missing_extra_exits_2(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for name in [name for name in sys.modules if name == "geobus.local" or name.startswith("geobus.local.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "proton", None)  # as if python-qpid-proton were not installed
        assert main(["local"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("geobus local: this command needs the 'local' extra (python-qpid-proton)")
        assert "pip install 'geobus[local]'" in err


class TestCrash:
    """What no command caught is still printed through the redactor."""

    def test_a_traceback_is_redacted(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        import geobus._cli.outbox

        def crash(args: object) -> int:
            raise RuntimeError(f"store contoso.redis.cache.windows.net:6380,password={DEV_KEY},ssl=True")

        monkeypatch.setattr(geobus._cli.outbox, "run", crash)
        assert main(["outbox", "x.db"]) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and "RuntimeError" in err and "password=***" in err
        assert DEV_KEY not in err
