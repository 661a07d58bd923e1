"""The `geobus` command: the demo runs, and no key reaches its output."""

from __future__ import annotations

import pytest

from geobus._cli import main
from geobus.local import DEV_KEY

pytestmark = pytest.mark.timeout(120)


class TestDemo:
    """`geobus demo` (shortened) completes through the outage with nothing lost."""

    def test_demo_loses_nothing_and_prints_no_key(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["demo", "--messages", "30"]) == 0
        out, err = capsys.readouterr()
        assert "acknowledged 30, lost 0" in out
        assert "failed over to the secondary" in out
        assert DEV_KEY not in out + err
        assert "SharedAccessKey=" not in out + err

    def test_too_few_messages_is_a_clear_error(self) -> None:
        with pytest.raises(SystemExit, match="--messages must be at least 3"):
            main(["demo", "--messages", "1"])
