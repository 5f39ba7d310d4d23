"""Which worker caches which prefix: an index of chained block hashes per worker.

Because each hash already identifies its whole prefix, a flat map ``hash -> workers`` is a
radix tree with every path compressed into its leaf: a request's overlap with a worker is the
number of its leading block hashes that the worker holds, found by walking the request's
hashes and narrowing the set of workers until it empties.

Besides what the workers' KV events reported, the index holds *predicted* blocks: the blocks a
request routed to a worker will cache there, recorded at routing time with an expiry. Events
correct them: "stored" turns a prediction into a reported block, "removed" and "cleared" drop
both. A prediction no event confirms (the request never ran) expires. So the next turn of a
conversation, or the next user of a new system prompt, finds its prefix where the previous
request went even while that worker's events are still in flight (a busy machine delays them
by up to seconds).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from dgd_runtime.protocol import KvEvent


class PrefixIndex:
    """Block-hash index of the prefix caches of many workers."""

    def __init__(self) -> None:
        """An empty index."""
        self._workers_by_hash: dict[int, set[str]] = {}
        self._hashes_by_worker: dict[str, set[int]] = {}
        # Predictions: hash -> {worker: expiry}, and the same entries in expiry order (an entry
        # whose expiry changed or that was dropped is skipped when its turn comes).
        self._predicted: dict[int, dict[str, float]] = {}
        self._expiries: deque[tuple[float, int, str]] = deque()

    def __len__(self) -> int:
        """Number of distinct cached blocks over all workers."""
        return len(self._workers_by_hash)

    def workers(self) -> list[str]:
        """Workers with at least one cached block."""
        return [w for w, hs in self._hashes_by_worker.items() if hs]

    def blocks_of(self, worker: str) -> int:
        """Number of blocks ``worker`` caches."""
        return len(self._hashes_by_worker.get(worker, ()))

    def predicted(self, worker: str) -> int:
        """Number of blocks predicted on ``worker`` that no event confirmed yet."""
        return sum(1 for ws in self._predicted.values() if worker in ws)

    def predict(self, worker: str, hashes: Iterable[int], expires: float) -> None:
        """``worker`` is about to cache ``hashes`` (until ``expires`` unless an event says so).

        Expiries must not decrease from one call to the next (one clock, one time-to-live).
        """
        reported = self._hashes_by_worker.get(worker, ())
        predicted = self._predicted
        expiries = self._expiries
        for h in hashes:
            if h in reported:
                continue
            ws = predicted.get(h)
            if ws is None:
                predicted[h] = {worker: expires}
            else:
                ws[worker] = expires
            expiries.append((expires, h, worker))

    def unpredict(self, worker: str, hashes: Iterable[int]) -> None:
        """``worker`` will not cache ``hashes`` after all (its request did not run there)."""
        for h in hashes:
            self._unpredict(h, worker)

    def expire(self, now: float) -> None:
        """Drop predictions whose expiry is ``now`` or earlier."""
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            expires, h, worker = expiries.popleft()
            ws = self._predicted.get(h)
            if ws is not None and ws.get(worker) == expires:
                self._unpredict(h, worker)

    def stored(self, worker: str, hashes: Iterable[int]) -> None:
        """``worker`` now caches ``hashes``."""
        mine = self._hashes_by_worker.setdefault(worker, set())
        by_hash = self._workers_by_hash
        predicted = self._predicted
        for h in hashes:
            if h in predicted:
                self._unpredict(h, worker)
            if h not in mine:
                mine.add(h)
                ws = by_hash.get(h)
                if ws is None:
                    by_hash[h] = {worker}
                else:
                    ws.add(worker)

    def removed(self, worker: str, hashes: Iterable[int]) -> None:
        """``worker`` evicted ``hashes``."""
        predicted = self._predicted
        mine = self._hashes_by_worker.get(worker)
        for h in hashes:
            if h in predicted:
                self._unpredict(h, worker)
            if mine and h in mine:
                mine.discard(h)
                self._drop(h, worker)

    def clear(self, worker: str) -> None:
        """``worker`` dropped its whole cache (it stays known).

        Predictions stay: they are blocks of requests the worker has not started yet, which it
        will cache whatever it dropped before.
        """
        mine = self._hashes_by_worker.get(worker)
        if mine:
            for h in mine:
                self._drop(h, worker)
            mine.clear()

    def remove_worker(self, worker: str) -> None:
        """Forget ``worker`` entirely."""
        self.clear(worker)
        for h in [h for h, ws in self._predicted.items() if worker in ws]:
            self._unpredict(h, worker)
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
        """For each worker caching a prefix of ``hashes``: how many leading blocks it has
        (reported or predicted)."""
        result: dict[str, int] = {}
        active: set[str] | None = None
        by_hash = self._workers_by_hash
        predicted = self._predicted
        for depth, h in enumerate(hashes, start=1):
            ws = by_hash.get(h)
            guessed = predicted.get(h)
            if guessed:
                ws = ws | guessed.keys() if ws else set(guessed)
            if not ws:
                break
            active = set(ws) if active is None else active & ws
            if not active:
                break
            for w in active:
                result[w] = depth
        return result

    def _unpredict(self, h: int, worker: str) -> None:
        ws = self._predicted.get(h)
        if ws is not None:
            ws.pop(worker, None)
            if not ws:
                del self._predicted[h]

    def _drop(self, h: int, worker: str) -> None:
        ws = self._workers_by_hash.get(h)
        if ws is not None:
            ws.discard(worker)
            if not ws:
                del self._workers_by_hash[h]
