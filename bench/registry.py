"""One typed registry per kind of plugin.

A registry holds entries of a single base type. Registering an object of the wrong type, or
a name (or alias) twice, fails at once. Looking up an unknown name fails with the known names
and the nearest one. Entries may be registered lazily as ``"module:attribute"`` strings so
that listing never imports heavy code; the target is imported and type-checked on first use.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bench.errors import UnknownNameError

T = TypeVar("T")


@dataclass
class Entry:
    """One registered name. ``target`` is the object, or a ``module:attr`` string until loaded."""

    name: str
    target: Any
    summary: str = ""
    aliases: tuple[str, ...] = ()
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        return not isinstance(self.target, str)


class Registry(Generic[T]):
    """Name -> class (or factory) registry for one kind of plugin.

    ``base`` is the type every entry must be: a class that entries subclass, or, for
    ``instances=True``, a type that entries are instances of.
    """

    def __init__(self, kind: str, base: type, *, instances: bool = False) -> None:
        self.kind = kind
        self.base = base
        self.instances = instances
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    # -- registration ---------------------------------------------------------------------
    def register(
        self,
        name: str,
        target: Any = None,
        *,
        summary: str = "",
        aliases: tuple[str, ...] | list[str] = (),
        **tags: Any,
    ) -> Any:
        """Register ``target`` under ``name``; usable as a decorator when target is omitted."""
        if target is None:
            def decorator(obj: Any) -> Any:
                self.register(name, obj, summary=summary, aliases=aliases, **tags)
                return obj
            return decorator

        if not isinstance(name, str) or not name or name != name.strip() or "," in name:
            raise ValueError(f"{self.kind} name must be a non-empty string without commas, got {name!r}")
        if not isinstance(target, str):
            self._check_type(name, target)
        aliases = tuple(aliases)
        existing = self._entries.get(name)
        if existing is not None and not self._same(existing.target, target):
            raise ValueError(f"{self.kind} {name!r} is already registered (by {_describe(existing.target)})")
        for alias in aliases:
            owner = self._aliases.get(alias, alias if alias in self._entries else None)
            if owner is not None and owner != name:
                raise ValueError(f"{self.kind} alias {alias!r} is already taken by {owner!r}")
        if name in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is already an alias of {self._aliases[name]!r}")
        self._entries[name] = Entry(name, target, summary or _first_doc_line(target), aliases, dict(tags))
        for alias in aliases:
            self._aliases[alias] = name
        return target

    def _check_type(self, name: str, obj: Any) -> None:
        ok = isinstance(obj, self.base) if self.instances else isinstance(obj, type) and issubclass(obj, self.base)
        if not ok:
            what = "an instance" if self.instances else "a subclass"
            raise TypeError(f"{self.kind} {name!r} must be {what} of {self.base.__name__}, got {_describe(obj)}")

    @staticmethod
    def _same(a: Any, b: Any) -> bool:
        # Re-importing a plugin module (a second discovery pass, a reload in a notebook)
        # registers an equal object again; that is not a conflict.
        return a is b or _describe(a) == _describe(b)

    def unregister(self, name: str) -> None:
        entry = self._entries.pop(self.canonical(name))
        for alias in entry.aliases:
            self._aliases.pop(alias, None)

    # -- lookup ---------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases; unknown names fail."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise UnknownNameError(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        if not known:
            return f"unknown {self.kind} {name!r}: no {self.kind}s are registered yet"
        msg = f"unknown {self.kind} {name!r}; known: {', '.join(known)}"
        close = difflib.get_close_matches(name, known + sorted(self._aliases), n=1, cutoff=0.5)
        if close:
            msg += f"; did you mean {self._aliases.get(close[0], close[0])!r}?"
        return msg

    def entry(self, name: str) -> Entry:
        return self._entries[self.canonical(name)]

    def get(self, name: str) -> T:
        """The registered object, importing a lazy entry on first use."""
        entry = self.entry(name)
        if not entry.loaded:
            module_name, _, attr = entry.target.partition(":")
            obj = getattr(importlib.import_module(module_name), attr)
            self._check_type(entry.name, obj)
            entry.target = obj
            if not entry.summary:
                entry.summary = _first_doc_line(obj)
        return entry.target

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def list(self, pattern: str = "*", *, where: Callable[[Entry], bool] | None = None) -> list[str]:
        """Sorted names matching a shell-style wildcard (``cap*``), optionally filtered."""
        names = [n for n in sorted(self._entries) if fnmatch.fnmatchcase(n, pattern)]
        if where is not None:
            names = [n for n in names if where(self._entries[n])]
        return names


def _describe(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, type) or callable(obj):
        return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
    return f"{type(obj).__module__}:{type(obj).__qualname__} instance"


def _first_doc_line(obj: Any) -> str:
    if isinstance(obj, str):
        return ""
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""
