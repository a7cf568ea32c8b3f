"""Typed records read as lme4's named lists: :class:`NamedRecord`.

lme4 returns several results as named R lists (``devcomp``, the attributes of X); here they are
frozen dataclasses, typed and documented, that also read as those lists do: ``rec["name"]``,
``"name" in rec``, ``dict(rec)``, and equal to a dict with the same entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, cast

__all__ = ["NamedRecord"]


class NamedRecord(Mapping[str, Any]):
    """Read access by lme4's names to the fields of a frozen dataclass subclass.

    Subclasses are ``@dataclass(frozen=True, eq=False)`` (the Mapping's equality: entries equal,
    also to a dict). ``_OPTIONAL`` names fields that are entries only when not None (lme4 has no
    such name then); ``_ALIASES`` maps R names that are not Python names (``"col.dropped"``) to
    their fields.
    """

    __slots__ = ()
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    _ALIASES: ClassVar[dict[str, str]] = {}

    def _entries(self) -> list[tuple[str, str]]:
        """(R name, field name) of the entries, in field order."""
        r_name = {f: r for r, f in self._ALIASES.items()}
        # the subclasses are dataclasses; this base is not, hence the cast
        return [(r_name.get(f.name, f.name), f.name)
                for f in dataclasses.fields(cast(Any, self))
                if not (f.name in self._OPTIONAL and getattr(self, f.name) is None)]

    def __getitem__(self, key: str) -> Any:
        for r, f in self._entries():
            if r == key:
                return getattr(self, f)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter([r for r, _ in self._entries()])

    def __len__(self) -> int:
        return len(self._entries())

    def to_dict(self) -> dict[str, Any]:
        """The entries as a plain dict, by lme4's names, in lme4's order."""
        return {r: getattr(self, f) for r, f in self._entries()}
