"""Shared fixtures: in-process local namespaces for the real azure-servicebus client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from geobus.local import LocalNamespace


@pytest.fixture
def namespace_factory() -> Iterator[Callable[..., LocalNamespace]]:
    """Start local namespaces with any options; every one is stopped after the test."""
    started: list[LocalNamespace] = []

    def start(**options: Any) -> LocalNamespace:
        ns = LocalNamespace(**options).start()
        started.append(ns)
        return ns

    yield start
    for ns in started:
        ns.stop()


@pytest.fixture
def namespace(namespace_factory: Callable[..., LocalNamespace]) -> LocalNamespace:
    """One local namespace with default settings."""
    return namespace_factory()
