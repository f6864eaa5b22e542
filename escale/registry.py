"""One name -> entry registry for counters, latency backends and datasets (no torch import here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from escale.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name; registering a name twice, or asking for an unknown one, raises ``RegistryError``.

    ``kind`` names the registry in duplicate errors (``"counter"``); ``prefix`` starts lookup errors,
    which list the available names: ``"--counter: "`` gives "--counter: 'x' is unknown (available: ...)".
    """

    def __init__(self, kind: str, prefix: str) -> None:
        self.kind, self.prefix = kind, prefix
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if not name or name in self._entries:
            raise RegistryError(f"{self.kind}: {name!r} is already registered or empty "
                                f"(registered: {', '.join(self._entries)})")
        self._entries[name] = entry
        return entry

    def decorator(self, attr: str = "name") -> Callable[[T], T]:
        """A class decorator registering a class under its ``attr`` attribute."""
        return lambda cls: self.add(getattr(cls, attr), cls)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise RegistryError(f"{self.prefix}{name!r} is unknown (available: {', '.join(self._entries)})")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):  # noqa: ANN201 - dict items view
        return self._entries.items()
