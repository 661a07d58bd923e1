"""Tests for geobus.testing: the fault proxy, the SDK helpers and the pytest plugin."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The plugin tests need ``pytester``. ``pytest_plugins = ["pytester"]`` here would
    # fail the whole run whenever this conftest is not an initial one (``pytest .``),
    # so the plugin is registered from this hook, which runs in either case.
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
