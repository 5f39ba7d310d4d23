"""Which worker caches which prefix: an index of chained block hashes per worker.

Because each hash already identifies its whole prefix, a flat map ``hash -> workers`` is a
radix tree with every path compressed into its leaf: a request's overlap with a worker is the
number of its leading block hashes that the worker holds, found by walking the request's
hashes and narrowing the set of workers until it empties.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dgd_runtime.protocol import KvEvent


class PrefixIndex:
    """Block-hash index of the prefix caches of many workers."""

    def __init__(self) -> None:
        """An empty index."""
        self._workers_by_hash: dict[int, set[str]] = {}
        self._hashes_by_worker: dict[str, set[int]] = {}

    def __len__(self) -> int:
        """Number of distinct cached blocks over all workers."""
        return len(self._workers_by_hash)

    def workers(self) -> list[str]:
        """Workers with at least one cached block."""
        return [w for w, hs in self._hashes_by_worker.items() if hs]

    def blocks_of(self, worker: str) -> int:
        """Number of blocks ``worker`` caches."""
        return len(self._hashes_by_worker.get(worker, ()))

    def stored(self, worker: str, hashes: Iterable[int]) -> None:
        """``worker`` now caches ``hashes``."""
        mine = self._hashes_by_worker.setdefault(worker, set())
        by_hash = self._workers_by_hash
        for h in hashes:
            if h not in mine:
                mine.add(h)
                ws = by_hash.get(h)
                if ws is None:
                    by_hash[h] = {worker}
                else:
                    ws.add(worker)

    def removed(self, worker: str, hashes: Iterable[int]) -> None:
        """``worker`` evicted ``hashes``."""
        mine = self._hashes_by_worker.get(worker)
        if not mine:
            return
        for h in hashes:
            if h in mine:
                mine.discard(h)
                self._drop(h, worker)

    def clear(self, worker: str) -> None:
        """``worker`` dropped its whole cache (it stays known)."""
        mine = self._hashes_by_worker.get(worker)
        if mine:
            for h in mine:
                self._drop(h, worker)
            mine.clear()

    def remove_worker(self, worker: str) -> None:
        """Forget ``worker`` entirely."""
        self.clear(worker)
        self._hashes_by_worker.pop(worker, None)

    def apply(self, worker: str, events: Iterable[KvEvent]) -> None:
        """Apply a batch of KV events from ``worker``."""
        for ev in events:
            if ev.kind == "stored":
                self.stored(worker, ev.block_hashes)
            elif ev.kind == "removed":
                self.removed(worker, ev.block_hashes)
            elif ev.kind == "cleared":
                self.clear(worker)

    def find_matches(self, hashes: Sequence[int]) -> dict[str, int]:
        """For each worker caching a prefix of ``hashes``: how many leading blocks it has."""
        result: dict[str, int] = {}
        active: set[str] | None = None
        by_hash = self._workers_by_hash
        for depth, h in enumerate(hashes, start=1):
            ws = by_hash.get(h)
            if not ws:
                break
            active = set(ws) if active is None else active & ws
            if not active:
                break
            for w in active:
                result[w] = depth
        return result

    def _drop(self, h: int, worker: str) -> None:
        ws = self._workers_by_hash.get(h)
        if ws is not None:
            ws.discard(worker)
            if not ws:
                del self._workers_by_hash[h]
