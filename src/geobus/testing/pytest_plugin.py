"""pytest fixtures for testing code that uses geobus. Opt in from your ``conftest.py``::

    pytest_plugins = ["geobus.testing.pytest_plugin"]

Every fixture is function-scoped and stops what it started at teardown:

- ``geobus_namespace``: one in-process ``LocalNamespace``.
- ``geobus_namespace_pair``: a ``NamespacePair`` (``.primary``, ``.secondary``,
  ``.config(**options)`` for a ``ReplicationConfig``), each namespace with its own
  development key, as ``local_pair`` gives.
- ``geobus_namespace_factory``: ``factory(**LocalNamespace options)`` -> a started namespace.
- ``geobus_fault_proxy``: ``factory(namespace_or_address, **FaultProxy options)`` ->
  a started ``FaultProxy`` in front of it.

Not loaded automatically: the plugin is registered by no entry point.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..local import LocalNamespace
from ._namespaces import NamespacePair, local_pair, upstream_of
from ._proxy import FaultProxy


@pytest.fixture
def geobus_namespace() -> Iterator[LocalNamespace]:
    """One local namespace with default settings, stopped after the test."""
    with LocalNamespace() as namespace:
        yield namespace


@pytest.fixture
def geobus_namespace_pair() -> Iterator[NamespacePair]:
    """Two local namespaces (``.primary``, ``.secondary``), stopped after the test."""
    with local_pair() as pair:
        yield pair


@pytest.fixture
def geobus_namespace_factory() -> Iterator[Callable[..., LocalNamespace]]:
    """Start local namespaces with any ``LocalNamespace`` options; all stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> LocalNamespace:
            return stack.enter_context(LocalNamespace(**options))

        yield start


@pytest.fixture
def geobus_fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Start ``FaultProxy`` objects in front of namespaces or ``(host, port)``; all closed after the test."""
    with contextlib.ExitStack() as stack:

        def start(target: LocalNamespace | tuple[str, int], **options: Any) -> FaultProxy:
            return stack.enter_context(FaultProxy(upstream_of(target), **options))

        yield start
