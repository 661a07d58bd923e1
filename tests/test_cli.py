"""The `geobus` command: the demo runs, and no key reaches its output."""

from __future__ import annotations

import pytest

from geobus._cli import main
from geobus.local import DEV_KEY

pytestmark = pytest.mark.timeout(120)


class TestDemo:
    """`geobus demo` (shortened) completes through the outage with nothing lost."""

    @pytest.mark.parametrize("mode", ["passive", "active"])
    def test_demo_loses_nothing_and_prints_no_key(self, mode: str, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["demo", "--messages", "40", "--rate", "200", "--mode", mode]) == 0
        out, err = capsys.readouterr()
        assert "OK: lost 0, duplicates delivered 0" in out
        assert "acknowledged              40" in out
        if mode == "passive":
            assert "failed over to secondary" in out
        else:
            assert "duplicates absorbed" in out and "duplicates absorbed       0" not in out
        assert DEV_KEY not in out + err
        assert "SharedAccessKey=" not in out + err

    def test_too_few_messages_is_a_clear_error(self) -> None:
        with pytest.raises(SystemExit, match="--messages must be at least 10"):
            main(["demo", "--messages", "1"])
