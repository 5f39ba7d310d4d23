"""Read-only views over kopf's in-memory indexes, and a small expiring memory.

kopf keeps an index as `key -> store of values` (`kopf.Index[K, V]`), filled from the watch
streams before any handler runs. `IndexView` gives the lookups a controller needs (one value,
all values, keys) and answers "nothing" until kopf has handed the index over.

`Expiring` remembers "checked at time t" for things that are not watched: a check is trusted
for `ttl` seconds, so a deleted object is noticed by the first reconcile after that, without
a process restart and without a GET on every reconcile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class IndexView(Generic[K, V]):
    """Lookups over one `kopf.Index[K, V]` (empty until `bind`)."""

    def __init__(self) -> None:
        self._index: Mapping[K, Iterable[V]] | None = None

    @property
    def bound(self) -> bool:
        """True once kopf's index object is attached."""
        return self._index is not None

    def bind(self, index: Mapping[K, Iterable[V]] | None) -> None:
        """Attach kopf's index (the same object on every call; `None` is ignored)."""
        if index is not None:
            self._index = index

    def values(self, key: K) -> list[V]:
        """Every value stored under `key`."""
        if self._index is None or key not in self._index:
            return []
        return list(self._index[key])

    def __iter__(self) -> Iterator[K]:
        """Every key with at least one value."""
        return iter(self._index or {})

    def all_values(self) -> Iterator[V]:
        """Every value of every key."""
        for key in self:
            yield from self.values(key)


class Expiring(Generic[K]):
    """Keys remembered for `ttl` seconds (monotonic `clock` by default)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._at: dict[K, float] = {}

    def fresh(self, key: K) -> bool:
        """True when `key` was marked less than `ttl` seconds ago."""
        at = self._at.get(key)
        return at is not None and self.clock() - at < self.ttl

    def mark(self, key: K) -> None:
        """Remember `key` from now on."""
        self._at[key] = self.clock()

    def forget(self, key: K) -> None:
        """Drop `key` (the next `fresh` is False)."""
        self._at.pop(key, None)
