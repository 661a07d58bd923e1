"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest

from geobus._engine import receiver as receiver_module


@pytest.fixture
def quick_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver's pumps and keeper tick in tens of milliseconds instead of a second."""
    monkeypatch.setattr(receiver_module, "_POLL_WAIT", 0.05)
    monkeypatch.setattr(receiver_module, "_KEEPER_INTERVAL", 0.02)
