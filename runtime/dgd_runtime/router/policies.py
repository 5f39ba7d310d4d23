"""Routing policies: pick one worker instance for a request.

``round-robin`` and ``random`` ignore the request. ``kv`` follows the shape of Dynamo's KV
router cost: for each candidate worker

    cost = overlap_score_weight * prefill_blocks + decode_blocks

where ``prefill_blocks`` is the prompt work the worker would still have to do (prompt blocks
not in its prefix cache, plus prefill tokens it is already busy with, in blocks) and
``decode_blocks`` the KV blocks of the requests it is already running plus this one. The
lowest cost wins (ties broken at random); with ``temperature > 0`` a softmax over ``-cost``
is sampled instead. Load is tracked from this router's own decisions.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

from dgd_runtime.kv.hashing import ROOT_HASH, block_hashes, media_root
from dgd_runtime.protocol import KvEvent, PreprocessedRequest, WorkerInstance
from dgd_runtime.router.prefix_index import PrefixIndex

ROUTER_MODES = ("round-robin", "random", "kv")


@dataclass(slots=True)
class RouteDecision:
    """The chosen instance and what the router expects it to cost."""

    instance: WorkerInstance
    overlap_blocks: int = 0
    prompt_blocks: int = 0
    prefill_tokens: int = 0
    prefill_done: bool = False


@dataclass(slots=True)
class WorkerLoad:
    """A worker's load as seen by this router."""

    active_requests: int = 0
    active_blocks: int = 0
    prefill_tokens: int = 0


class RoutingPolicy:
    """Base policy: tracks per-worker load; subclasses implement :meth:`choose`."""

    name = "base"

    def __init__(self, rng: random.Random | None = None) -> None:
        """``rng`` makes random choices reproducible in tests."""
        self._rng = rng or random.Random()
        self.loads: dict[str, WorkerLoad] = {}

    def select(
        self, request: PreprocessedRequest, candidates: Sequence[WorkerInstance]
    ) -> RouteDecision:
        """Choose among ``candidates`` (non-empty) and account the request to the winner."""
        if not candidates:
            raise ValueError("no candidates")
        decision = self.choose(request, candidates)
        load = self.loads.setdefault(decision.instance.instance_id, WorkerLoad())
        load.active_requests += 1
        load.active_blocks += decision.prompt_blocks
        load.prefill_tokens += decision.prefill_tokens
        return decision

    def choose(
        self, request: PreprocessedRequest, candidates: Sequence[WorkerInstance]
    ) -> RouteDecision:
        """Policy-specific choice."""
        raise NotImplementedError

    def prefill_done(self, decision: RouteDecision) -> None:
        """The first output arrived: the worker finished this request's prefill."""
        if decision.prefill_done:
            return
        decision.prefill_done = True
        load = self.loads.get(decision.instance.instance_id)
        if load is not None:
            load.prefill_tokens = max(0, load.prefill_tokens - decision.prefill_tokens)

    def finished(self, decision: RouteDecision) -> None:
        """The request ended (any way)."""
        self.prefill_done(decision)
        load = self.loads.get(decision.instance.instance_id)
        if load is not None:
            load.active_requests = max(0, load.active_requests - 1)
            load.active_blocks = max(0, load.active_blocks - decision.prompt_blocks)

    def worker_removed(self, instance_id: str) -> None:
        """Forget a worker."""
        self.loads.pop(instance_id, None)

    def kv_events(self, instance_id: str, events: list[KvEvent]) -> None:
        """KV cache events of a worker (ignored except by the KV policy)."""

    def kv_reset(self, instance_id: str, hashes: list[int]) -> None:
        """Replace a worker's whole cache view (resync; ignored except by the KV policy)."""


class RoundRobinPolicy(RoutingPolicy):
    """Cycle through the candidates in instance-id order."""

    name = "round-robin"

    def __init__(self, rng: random.Random | None = None) -> None:
        """Start the cycle at a random position."""
        super().__init__(rng)
        self._next = self._rng.randrange(1 << 30)

    def choose(
        self, request: PreprocessedRequest, candidates: Sequence[WorkerInstance]
    ) -> RouteDecision:
        """Next candidate in turn."""
        ordered = sorted(candidates, key=lambda c: c.instance_id)
        self._next += 1
        return RouteDecision(ordered[self._next % len(ordered)])


class RandomPolicy(RoutingPolicy):
    """Uniformly random candidate."""

    name = "random"

    def choose(
        self, request: PreprocessedRequest, candidates: Sequence[WorkerInstance]
    ) -> RouteDecision:
        """A random candidate."""
        return RouteDecision(self._rng.choice(list(candidates)))


@dataclass(slots=True)
class KvScore:
    """One candidate's evaluation (kept for debugging and tests)."""

    instance_id: str
    overlap_blocks: int
    cost: float


@dataclass(slots=True)
class KvRouterConfig:
    """Knobs of the KV policy (env: DYN_KV_OVERLAP_SCORE_WEIGHT, DYN_ROUTER_TEMPERATURE)."""

    overlap_score_weight: float = 1.0
    temperature: float = 0.0
    default_block_size: int = 64

    @classmethod
    def from_env(cls) -> KvRouterConfig:
        """Defaults overridden by environment variables."""
        return cls(
            overlap_score_weight=float(os.environ.get("DYN_KV_OVERLAP_SCORE_WEIGHT", "1.0")),
            temperature=float(os.environ.get("DYN_ROUTER_TEMPERATURE", "0.0")),
        )


class KvPolicy(RoutingPolicy):
    """Prefix-cache-aware choice weighed against load."""

    name = "kv"

    def __init__(
        self, config: KvRouterConfig | None = None, rng: random.Random | None = None
    ) -> None:
        """Empty index; fed by :meth:`kv_events`."""
        super().__init__(rng)
        self.config = config or KvRouterConfig()
        self.index = PrefixIndex()
        self.last_scores: list[KvScore] = []

    def kv_events(self, instance_id: str, events: list[KvEvent]) -> None:
        """Apply a worker's KV events to the index."""
        self.index.apply(instance_id, events)

    def kv_reset(self, instance_id: str, hashes: list[int]) -> None:
        """Replace a worker's cache view with ``hashes``."""
        self.index.clear(instance_id)
        self.index.stored(instance_id, hashes)

    def worker_removed(self, instance_id: str) -> None:
        """Forget a worker's load and cache."""
        super().worker_removed(instance_id)
        self.index.remove_worker(instance_id)

    def choose(
        self, request: PreprocessedRequest, candidates: Sequence[WorkerInstance]
    ) -> RouteDecision:
        """Lowest cost candidate (or softmax sample with temperature)."""
        block_size = candidates[0].model.kv_block_size or self.config.default_block_size
        tokens = request.token_ids
        mm = request.mm
        root = ROOT_HASH if not mm else media_root([m.media_hash for m in mm])
        hashes = block_hashes(tokens, block_size, root)
        overlaps = self.index.find_matches(hashes) if hashes else {}
        n_tokens = len(tokens)
        prompt_blocks = -(-n_tokens // block_size)
        weight = self.config.overlap_score_weight
        scores: list[KvScore] = []
        for cand in candidates:
            iid = cand.instance_id
            overlap = overlaps.get(iid, 0)
            load = self.loads.get(iid)
            busy_prefill = load.prefill_tokens if load else 0
            busy_blocks = load.active_blocks if load else 0
            prefill_blocks = (n_tokens - overlap * block_size + busy_prefill) / block_size
            decode_blocks = busy_blocks + prompt_blocks
            scores.append(KvScore(iid, overlap, weight * prefill_blocks + decode_blocks))
        self.last_scores = scores
        best = self._pick(scores)
        chosen = next(c for c in candidates if c.instance_id == best.instance_id)
        return RouteDecision(
            chosen,
            overlap_blocks=best.overlap_blocks,
            prompt_blocks=prompt_blocks,
            prefill_tokens=max(0, n_tokens - best.overlap_blocks * block_size),
        )

    def _pick(self, scores: list[KvScore]) -> KvScore:
        temp = self.config.temperature
        if temp > 0 and len(scores) > 1:
            lo = min(s.cost for s in scores)
            spread = max(s.cost for s in scores) - lo or 1.0
            weights = [math.exp(-(s.cost - lo) / spread / temp) for s in scores]
            return self._rng.choices(scores, weights=weights)[0]
        lo = min(s.cost for s in scores)
        best = [s for s in scores if s.cost <= lo + 1e-9]
        return best[0] if len(best) == 1 else self._rng.choice(best)


def make_policy(mode: str | None = None, *, rng: random.Random | None = None) -> RoutingPolicy:
    """Policy for ``mode`` (default ``$DYN_ROUTER_MODE``, else round-robin)."""
    chosen = (mode or os.environ.get("DYN_ROUTER_MODE") or "round-robin").strip().lower()
    if chosen in ("round-robin", "round_robin", "roundrobin"):
        return RoundRobinPolicy(rng)
    if chosen == "random":
        return RandomPolicy(rng)
    if chosen == "kv":
        return KvPolicy(KvRouterConfig.from_env(), rng)
    raise ValueError(f"unknown router mode {chosen!r} (expected one of {', '.join(ROUTER_MODES)})")
