"""Shared fixtures: in-process local namespaces for the real azure-servicebus client."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from geobus.local import LocalNamespace


@pytest.fixture
def namespace_factory() -> Iterator[Callable[..., LocalNamespace]]:
    """Start local namespaces with any options; every one is stopped after the test."""
    with contextlib.ExitStack() as started:

        def start(**options: Any) -> LocalNamespace:
            ns = LocalNamespace(**options).start()
            started.callback(ns.stop)
            return ns

        yield start


@pytest.fixture
def namespace(namespace_factory: Callable[..., LocalNamespace]) -> LocalNamespace:
    """One local namespace with default settings."""
    return namespace_factory()
