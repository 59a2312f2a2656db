"""Name -> factory registries, so a new network, dataset or noise mode is one module.

Every plug-in module registers itself with a decorator where it is defined; the package's
``__init__`` imports all of its submodules (``import_submodules``) so nothing else needs a
list of names.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories with a helpful error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **info: Any) -> Callable[[T], T]:
        """Decorator; ``info`` holds what callers may ask about the entry without building it
        (for a data set: how its classes are listed)."""

        def decorator(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            self._info[name] = dict(info)
            return item

        return decorator

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register throwaway plug-ins clean up with it)."""
        self._items.pop(name, None)
        self._info.pop(name, None)

    def info(self, name: str) -> dict[str, Any]:
        self.get(name)  # unknown name: the helpful KeyError
        return self._info[name]

    def items(self) -> list[tuple[str, T]]:
        """Entries in registration order (where order matters, e.g. generated data)."""
        return list(self._items.items())

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_submodules(package_name: str, package_path: list[str]) -> None:
    """Import every module of a package so that their registrations run."""
    for info in pkgutil.iter_modules(package_path):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
