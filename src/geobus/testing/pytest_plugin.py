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
- ``geobus_entities``: the entity definitions the namespaces above declare (None:
  none; entities are created on first use). Override it, in a ``conftest.py`` or a
  test module, to return a TOML file's path, ``EntityDefinitions`` or a mapping of
  the file's shape::

      @pytest.fixture
      def geobus_entities():
          return Path(__file__).parent / "entities.toml"

  The factory uses it unless given ``entities=`` itself.

Not loaded automatically: the plugin is registered by no entry point.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from ..local import EntityDefinitions, LocalNamespace
from ._namespaces import NamespacePair, local_pair, upstream_of
from ._proxy import FaultProxy

_Entities = str | os.PathLike[str] | EntityDefinitions | Mapping[str, Any] | None


@pytest.fixture
def geobus_entities() -> _Entities:
    """The entity definitions the namespace fixtures declare: None here; override it."""
    return None


@pytest.fixture
def geobus_namespace(geobus_entities: _Entities) -> Iterator[LocalNamespace]:
    """One local namespace with default settings and ``geobus_entities``, stopped after the test."""
    with LocalNamespace(entities=geobus_entities) as namespace:
        yield namespace


@pytest.fixture
def geobus_namespace_pair(geobus_entities: _Entities) -> Iterator[NamespacePair]:
    """Two local namespaces (``.primary``, ``.secondary``), both with ``geobus_entities``,
    stopped after the test."""
    with local_pair(entities=geobus_entities) as pair:
        yield pair


@pytest.fixture
def geobus_namespace_factory(geobus_entities: _Entities) -> Iterator[Callable[..., LocalNamespace]]:
    """Start local namespaces with any ``LocalNamespace`` options (``entities`` defaults to
    ``geobus_entities``); all stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> LocalNamespace:
            options.setdefault("entities", geobus_entities)
            return stack.enter_context(LocalNamespace(**options))

        yield start


@pytest.fixture
def geobus_fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Start ``FaultProxy`` objects in front of namespaces or ``(host, port)``; all closed after the test."""
    with contextlib.ExitStack() as stack:

        def start(target: LocalNamespace | tuple[str, int], **options: Any) -> FaultProxy:
            return stack.enter_context(FaultProxy(upstream_of(target), **options))

        yield start
