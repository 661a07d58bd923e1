"""The public surface: each public package's literal, sorted ``__all__``, checked both ways.

A name is public when a public package lists it in ``__all__``; every such name,
and every public method and property of a public class, has a docstring. The
sync and async faces (``geobus`` and ``geobus.aio``) offer the same names, and
their clients, senders and receivers the same methods.
"""

from __future__ import annotations
import __future__

import ast
import importlib
import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import geobus
import geobus.aio

PACKAGES = ["geobus", "geobus.aio", "geobus.local", "geobus.testing"]
# The classes each face has its own (sync or async) version of; the rest are the same objects.
OWN_CLASSES = {"DedupReceiver", "DedupSessionReceiver", "GeoServiceBusClient", "ReplicatedSender"}


def literal_all(module: ModuleType) -> list[str]:
    """``module.__all__`` as its source spells it: one assignment of a list of strings."""
    tree = ast.parse(inspect.getsource(module))
    assigned = [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in _targets(node))
    ]
    assert len(assigned) == 1, f"{module.__name__}: __all__ is assigned {len(assigned)} times"
    [node] = assigned
    assert isinstance(node, ast.Assign) and isinstance(node.value, ast.List), (
        f"{module.__name__}: __all__ is not a literal list"
    )
    names = []
    for element in node.value.elts:
        assert isinstance(element, ast.Constant) and isinstance(element.value, str), (
            f"{module.__name__}: __all__ holds {ast.unparse(element)}, not a string"
        )
        names.append(element.value)
    return names


def _targets(node: ast.Assign | ast.AugAssign | ast.AnnAssign) -> list[ast.expr]:
    return list(node.targets) if isinstance(node, ast.Assign) else [node.target]


def public_names(module: ModuleType) -> set[str]:
    """What ``module`` holds under a public name, but for submodules and ``__future__`` flags."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not isinstance(value, __future__._Feature)
    }


def exported(module_name: str) -> Iterator[tuple[str, Any]]:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        yield name, getattr(module, name)


def own_doc(obj: Any) -> str:
    """``obj``'s own docstring: not one inherited, nor the signature a dataclass makes up."""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__") or ""
        return "" if doc.startswith(f"{obj.__name__}(") else doc.strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def public_members(cls: type) -> dict[str, Any]:
    """The public methods and properties ``cls`` offers, as geobus defines them (first in the MRO)."""
    members: dict[str, Any] = {}
    for klass in cls.__mro__:
        if not klass.__module__.startswith("geobus"):
            continue  # Exception's, Enum's and object's own are not ours to document
        for name, value in vars(klass).items():
            if name.startswith("_") or name in members:
                continue
            if isinstance(value, (classmethod, staticmethod)):
                value = value.__func__
            if isinstance(value, property) or inspect.isfunction(value):
                members[name] = value
    return members


class TestAll:
    """``__all__`` is literal and sorted, and says exactly what each public package offers."""

    @pytest.mark.parametrize("module_name", PACKAGES)
    def test_all_is_a_literal_sorted_list(self, module_name: str) -> None:
        module = importlib.import_module(module_name)
        names = literal_all(module)
        assert names == module.__all__
        assert names == sorted(names)
        assert len(set(names)) == len(names)

    @pytest.mark.parametrize("module_name", PACKAGES)
    def test_every_name_in_all_exists(self, module_name: str) -> None:
        module = importlib.import_module(module_name)
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing

    @pytest.mark.parametrize("module_name", PACKAGES)
    def test_every_public_name_is_in_all(self, module_name: str) -> None:
        module = importlib.import_module(module_name)
        unlisted = public_names(module) - set(module.__all__)
        assert not unlisted, f"{module_name} offers names its __all__ does not list"


class TestTwoFaces:
    """``geobus`` and ``geobus.aio``: the same names, the same objects but for their own classes."""

    def test_the_same_names_and_the_version(self) -> None:
        assert set(geobus.__all__) - set(geobus.aio.__all__) == {"__version__"}
        assert set(geobus.aio.__all__) <= set(geobus.__all__)

    def test_settings_errors_and_results_are_the_same_objects(self) -> None:
        shared = set(geobus.aio.__all__) - OWN_CLASSES
        different = [name for name in shared if getattr(geobus, name) is not getattr(geobus.aio, name)]
        assert not different

    @pytest.mark.parametrize("name", sorted(OWN_CLASSES))
    def test_sync_and_async_classes_offer_the_same_methods(self, name: str) -> None:
        sync, aio = getattr(geobus, name), getattr(geobus.aio, name)
        assert sync is not aio
        # azure-servicebus's sync receiver has next(); its aio receiver has __anext__ only.
        sync_only = {"next"} if name == "DedupReceiver" else set()
        assert set(public_members(sync)) - sync_only == set(public_members(aio))


class TestDocstrings:
    """Every public name, and every public method and property of a public class, says what it does."""

    @pytest.mark.parametrize("module_name", PACKAGES)
    def test_every_public_package_has_a_docstring(self, module_name: str) -> None:
        assert (importlib.import_module(module_name).__doc__ or "").strip()

    @pytest.mark.parametrize("module_name", PACKAGES)
    def test_every_public_class_and_function_has_one(self, module_name: str) -> None:
        undocumented = [
            name
            for name, value in exported(module_name)
            if (inspect.isclass(value) or callable(value)) and not own_doc(value)
        ]
        assert not undocumented

    @pytest.mark.parametrize("module_name", PACKAGES)
    def test_every_public_method_and_property_has_one(self, module_name: str) -> None:
        undocumented = [
            f"{name}.{member}"
            for name, value in exported(module_name)
            if inspect.isclass(value)
            for member, attribute in public_members(value).items()
            if not own_doc(attribute)
        ]
        assert not undocumented

    @pytest.mark.parametrize("module_name", PACKAGES)
    def test_every_public_constant_is_named_in_the_package_docstring(self, module_name: str) -> None:
        module = importlib.import_module(module_name)
        unnamed = [
            name
            for name, value in exported(module_name)
            if not name.startswith("__")
            and not (inspect.isclass(value) or callable(value))
            and f"``{name}``" not in (module.__doc__ or "")
        ]
        assert not unnamed
