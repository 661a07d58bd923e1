"""The public surface is the sorted `__all__` of each public package."""

from __future__ import annotations

import importlib

import pytest


class TestPublicNames:
    """Every name in `__all__` exists, and the list is sorted."""

    @pytest.mark.parametrize("module_name", ["geobus", "geobus.local"])
    def test_all_is_sorted_and_importable(self, module_name: str) -> None:
        module = importlib.import_module(module_name)
        names = module.__all__
        assert names == sorted(names)
        for name in names:
            assert hasattr(module, name), name
