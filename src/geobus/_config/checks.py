"""How a setting is declared, checked and named: the one mechanism of every config dataclass.

A setting is a dataclass field whose metadata (``checked``, ``seconds``, ``count``,
``choice``) holds its check: a function of the setting's name (``deadlines.attempt``)
and the value given, which returns the value normalised (``"5"`` → ``5.0``,
``"ACTIVE"`` → ``ReplicationMode.ACTIVE``) or raises ``ConfigurationError`` naming the
setting::

    attempt: float = field(default=5.0, metadata=seconds())

``Checked.__post_init__`` runs every field's check in field order; ``settle`` is the
one place a frozen configuration is changed after ``__init__``.

A setting's names outside code come from its field too: its key in files and mappings
is the field name, and its part of a ``GEOBUS_*`` variable is the name in upper case,
unless the metadata says otherwise (``env_part``, ``in_files``).

Errors never quote a value that did not parse: it may be a key pasted into the wrong
field. ``describe`` says what it looks like instead; a parsed number is shown.
"""

from __future__ import annotations

import enum
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, fields
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from .._errors import ConfigurationError
from .._redact import describe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError

Check = Callable[[str, Any], Any]
"""``check(name, value)``: the value normalised, or ``ConfigurationError(name, ...)``."""

_CHECK, _ENV, _FILES, _TABLE = "check", "env", "files", "table"


def checked(
    check: Check | None = None, *, env: Any = MISSING, files: bool = True, table: type | None = None
) -> dict[str, Any]:
    """A field's metadata: its check and, where they are not the rule, its names.

    ``env`` is its part of a ``GEOBUS_*`` variable (None: no variable; unset: its name in
    upper case); ``files=False`` keeps it out of files and mappings (code only);
    ``table`` is the settings class it holds when it is a group of settings
    (``[deadlines]``), whose own fields are read in files and the environment.
    """
    metadata: dict[str, Any] = {_CHECK: check, _FILES: files, _TABLE: table}
    if env is not MISSING:
        metadata[_ENV] = env
    return metadata


def seconds(*, allow_zero: bool = False) -> dict[str, Any]:
    """A duration in seconds: > 0 (or >= 0), finite."""
    return checked(partial(positive, allow_zero=allow_zero))


def count(*, minimum: int = 1) -> dict[str, Any]:
    """A whole number >= ``minimum``."""
    return checked(partial(whole, minimum=minimum))


def choice(cls: type[enum.Enum]) -> dict[str, Any]:
    """One of ``cls``'s values, in any case."""
    return checked(partial(to_enum, cls))


def table_of(f: Field[Any]) -> type | None:
    """The settings class ``f`` holds when it is a group of settings; None for one setting."""
    cls: type | None = f.metadata.get(_TABLE)
    return cls


def env_part(f: Field[Any]) -> str | None:
    """``f``'s part of a ``GEOBUS_*`` variable: its name in upper case unless its metadata
    says otherwise; None when the environment cannot set it."""
    part: str | None = f.metadata.get(_ENV, f.name.upper())
    return part


def in_files(f: Field[Any]) -> bool:
    """Whether files and mappings may set ``f`` (some settings are for code only)."""
    return bool(f.metadata.get(_FILES, True))


def settle(obj: object, name: str, value: Any) -> None:
    """Set a field of a frozen configuration while it is being built."""
    object.__setattr__(obj, name, value)


class Checked:
    """Runs every field's check when a configuration dataclass is built, then ``_at_least``.

    ``_prefix`` starts the names in errors (``deadlines`` → ``deadlines.attempt``); it is
    also the settings' table in files. ``_at_least`` lists pairs of fields where the
    first may not be below the second (``("send", "attempt")``). A subclass with other
    rules across fields extends ``__post_init__``.
    """

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # every subclass is a dataclass
    _prefix: ClassVar[str] = ""
    _at_least: ClassVar[tuple[tuple[str, str], ...]] = ()

    def _setting_name(self, name: str) -> str:
        """How errors name the field ``name``."""
        return f"{self._prefix}.{name}" if self._prefix else name

    def __post_init__(self) -> None:
        for f in fields(self):
            check: Check | None = f.metadata.get(_CHECK)
            if check is not None:
                settle(self, f.name, check(self._setting_name(f.name), getattr(self, f.name)))
        for name, floor in self._at_least:
            if getattr(self, name) < getattr(self, floor):
                raise ConfigurationError(
                    self._setting_name(name), f"must be >= {self._setting_name(floor)} ({getattr(self, floor):g})"
                )


# -- the checks --------------------------------------------------------------------------


def to_enum(cls: type[enum.Enum], name: str, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).strip().lower())
    except ValueError:
        choices = " | ".join(str(m.value) for m in cls)
        raise ConfigurationError(name, f"must be one of {choices}, got {describe(value)}") from None


def positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool):  # float(True) is 1.0: "attempt = true" must not mean one second
        raise ConfigurationError(name, f"must be a number of seconds, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(name, f"must be a number, got {describe(value)}") from None
    if math.isnan(number) or number < 0 or (number == 0 and not allow_zero) or math.isinf(number):
        raise ConfigurationError(name, f"must be {'>= 0' if allow_zero else '> 0'}, got {number:g}")
    return number


def whole(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(name, f"must be a whole number, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(name, f"must be a whole number, got {describe(value)}") from None
    if number != float(value) or number < minimum:
        raise ConfigurationError(name, f"must be a whole number >= {minimum}, got {float(value):g}")
    return number


def flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ConfigurationError(name, f"must be true or false, got {describe(value)}")


def optional_path(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(name, f"must be a file path, got {describe(value)}")
    return value


# -- files ----------------------------------------------------------------------------------


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file's content.

    Raises:
        OSError: it cannot be read. ValueError: it is not TOML (``TOMLDecodeError``).
    """
    with Path(path).open("rb") as handle:
        return tomllib.load(handle)


def reject_unknown(prefix: str, given: Mapping[str, Any], known: set[str]) -> None:
    for key in given:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigurationError(where, f"unknown setting (known: {', '.join(sorted(known))})")
