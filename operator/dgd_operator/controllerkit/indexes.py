"""In-memory indexes of watched objects, and a small expiring memory.

An `Index` keeps `key -> values` filled from informer events (`controllerkit.informer`); it
gives the lookups a controller needs (the values of one key, all values, keys).

`Expiring` remembers "checked at time t" for things that are not watched: a check is trusted
for `ttl` seconds, so a deleted object is noticed by the first reconcile after that, without
a process restart and without a GET on every reconcile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Index(Generic[K, V]):
    """Values grouped by key, each stored under the uid of the object it came from.

    Filled from informer events (`put` on ADDED/MODIFIED, `discard` on DELETED); an object
    that moves to another key (a label changed) leaves its old key. All operations are O(1)
    in the number of stored objects (reads copy only the values of one key).
    """

    def __init__(self) -> None:
        self._by_key: dict[K, dict[str, V]] = {}
        self._key_of: dict[str, K] = {}

    def put(self, uid: str, key: K | None, value: V) -> None:
        """Store `value` for the object `uid` under `key` (None: the object is not indexed)."""
        old = self._key_of.get(uid)
        if old is not None and old != key:
            self.discard(uid)
        if key is None:
            return
        self._by_key.setdefault(key, {})[uid] = value
        self._key_of[uid] = key

    def get(self, uid: str) -> V | None:
        """The value stored for the object `uid` (None: not stored)."""
        key = self._key_of.get(uid)
        return None if key is None else self._by_key[key].get(uid)

    def discard(self, uid: str) -> None:
        """Forget the object `uid` (wherever it was stored)."""
        key = self._key_of.pop(uid, None)
        if key is None:
            return
        values = self._by_key.get(key)
        if values is not None:
            values.pop(uid, None)
            if not values:
                del self._by_key[key]

    def values(self, key: K) -> list[V]:
        """Every value stored under `key`."""
        return list(self._by_key.get(key, {}).values())

    def __iter__(self) -> Iterator[K]:
        """Every key with at least one value."""
        return iter(list(self._by_key))

    def __len__(self) -> int:
        """Number of stored objects."""
        return len(self._key_of)

    def all_values(self) -> Iterator[V]:
        """Every value of every key."""
        for values in list(self._by_key.values()):
            yield from list(values.values())


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
