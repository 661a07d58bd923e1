"""What the administration API keeps beside the broker's entities: their records, the
subscriptions' compiled rules, and what changed since the store last saved.

Plain bookkeeping, owned by the ``Broker`` (``broker.admin``) and run on its loop; the
operations themselves are ``_registry``'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._routing import CompiledRule, compile_rules


class Administered:
    """Records (``_registry.Stamp``) and rules by entity path, and their changes."""

    def __init__(self) -> None:
        # Records of entities the API made or changed; the others' are drawn from
        # their settings when asked.
        self.stamps: dict[str, Any] = {}
        # A subscription's compiled rules; absent: the true rule alone.
        self.rules: dict[str, list[CompiledRule]] = {}
        self._changed: set[str] = set()
        self._deleted: list[str] = []
        self.detach_paths: list[str] = []  # the server detaches their links

    def set_rules(self, path: str, stamp: Any, rules: list[Any]) -> None:
        """Make ``rules`` (``RuleRecord``s) subscription ``path``'s, with its ``stamp``.

        Raises:
            AdminError: a rule's filter or action does not compile (nothing changes).
        """
        compiled = compile_rules(rules)
        self.rules[path] = compiled
        self.stamps[path] = stamp
        self._changed.add(path)

    def stamped(self, path: str) -> None:
        """The record of ``path`` changed: the store saves it."""
        self._changed.add(path)

    def changed(self) -> frozenset[str]:
        """Paths whose records changed since ``take_changes``."""
        return frozenset(self._changed)

    def dead_letters_failures(self, path: str) -> bool:
        """Whether subscription ``path`` dead-letters a copy its rules failed to evaluate."""
        stamp = self.stamps.get(path)
        return stamp is None or bool(stamp.properties.get("dead_lettering_on_filter_evaluation_exceptions", True))

    def forget(self, paths: Iterable[str]) -> None:
        """Entities at ``paths`` were deleted: drop their records, tell the store and the server."""
        for path in paths:
            self.stamps.pop(path, None)
            self.rules.pop(path, None)
            self._changed.discard(path)
            self._deleted.append(path)
            self.detach_paths.append(path)

    def take_changes(self) -> tuple[dict[str, Any], list[str]]:
        """Records changed, and entities deleted, since the last call."""
        stamps = {path: self.stamps[path] for path in self._changed if path in self.stamps}
        deleted, self._deleted = self._deleted, []
        self._changed = set()
        return stamps, deleted
