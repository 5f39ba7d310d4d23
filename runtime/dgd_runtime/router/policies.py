"""Routing policies: pick one worker instance for a request.

``round-robin`` and ``random`` ignore the request. ``kv`` follows the shape of Dynamo's KV
router cost: for each candidate worker

    cost = overlap_score_weight * new_prefill_blocks + busy_prefill_weight * busy_prefill_blocks
           + decode_blocks + active_request_weight * running_requests * request_blocks

where ``new_prefill_blocks`` are this request's prompt blocks not in the worker's prefix
cache, ``busy_prefill_blocks`` the prefill the worker is already busy with (routed requests
whose first output has not arrived yet), and ``decode_blocks`` the KV blocks the worker would
hold with this request running: its active blocks counted once per distinct block hash
(requests sharing a system prompt share its blocks in the engine's paged cache), plus the
blocks of this request it does not hold yet.
Counting a shared prefix once per request instead made a worker serving many users of one
system prompt look busier than it is, and sent their followers away from their cache.

Distinct blocks are a poor measure of how many requests a worker serves, though: a worker
whose users share one system prompt holds few of them per request and kept attracting more.
The last term counts the requests themselves, each as ``active_request_weight`` times this
request's prompt blocks (a unit that scales with the other two terms; Dynamo 1.5+ has an
optional request count term too, in fixed block equivalents). With it the overlap
weight can be high (8: a cached block is worth eight active ones), which keeps each prefix on
few workers, while the request count keeps their share of requests even.

Like Dynamo, the busy part is scaled by the overlap weight unless ``busy_prefill_weight`` is
set. The two differ in kind: the overlap weight prices what a cache hit saves now and on every
later turn that finds the prefix there again, while queued prefill is a delay that ends within
one prefill. Weighted 8 it outweighs a conversation's cached history while it lasts, and on a
busy frontend, which learns of first outputs late, it lasts longer than the prefill: a first
turn just routed to a worker drives the next turns of conversations it caches elsewhere.
Weighted 4 in simulated time (8 seeds, 100 ms event and 50 ms response lag): hits 77.8% ->
80.7%, later turns 79.9% -> 83.0% (the ceiling is 84.1%), balance 1.027 -> 1.016. Measured
against the real frontend (weights 2 and 4, 2 runs each next to 8, load 4-10) the hits rose
less (+1.1 and +0.7 points) and the balance worsened (1.02-1.04 against 1.01-1.02 at 8, Dynamo
1.00-1.02), which the simulation does not show: weighted 8 the queued prefill is what spreads
a burst of first turns on the real system, so the default keeps it.

Beyond Dynamo's cost, a worker *running* a request with the same leading blocks is credited
with that overlap even before its KV "stored" events arrive (``predict_active_overlap``): the
blocks are being computed there, so a burst of requests with a new prefix stays together
instead of scattering while the events are in flight.

The cache view itself is predicted too (``predicted_cache_ttl_s``): the full prompt blocks of
a routed request count as cached on its worker from the moment it is routed, until the
worker's events confirm or contradict them (see :mod:`~dgd_runtime.router.prefix_index`). The
active-overlap credit above ends when the request does; without this, the next turn of a
conversation that arrives before the worker's "stored" events (a busy frontend processes them
late) finds its history nowhere and lands on any worker.

The lowest cost wins (ties broken at random); with ``temperature > 0`` a softmax over
``-cost`` is sampled instead. Load is tracked from this router's own decisions.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dgd_runtime.kv.hashing import ROOT_HASH, block_hashes, media_root
from dgd_runtime.protocol import KvEvent, PreprocessedRequest, WorkerInstance
from dgd_runtime.router.prefix_index import PrefixIndex

ROUTER_MODES = ("round-robin", "random", "kv")

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RouteDecision:
    """The chosen instance and what the router expects it to cost.

    ``block_hashes`` are the request's full prompt blocks and ``partial_blocks`` the blocks
    it occupies beyond them (a partly filled last block), both held as active load on the
    chosen worker until the request finishes.
    """

    instance: WorkerInstance
    overlap_blocks: int = 0
    prompt_blocks: int = 0
    prefill_tokens: int = 0
    prefill_done: bool = False
    block_hashes: Sequence[int] = ()
    partial_blocks: int = 0


@dataclass(slots=True)
class WorkerLoad:
    """A worker's load as seen by this router.

    Active KV blocks are counted once per distinct block hash (``active_hashes`` maps a hash to
    the number of running requests holding it), like an engine's paged cache shares them.
    """

    active_requests: int = 0
    prefill_tokens: int = 0
    active_hashes: dict[int, int] = field(default_factory=dict)
    partial_blocks: int = 0

    @property
    def active_blocks(self) -> int:
        """Distinct KV blocks of the requests running on the worker."""
        return len(self.active_hashes) + self.partial_blocks

    def hold(self, hashes: Sequence[int], partial: int) -> None:
        """A request holding ``hashes`` (+ ``partial`` unshared blocks) started."""
        active = self.active_hashes
        for h in hashes:
            active[h] = active.get(h, 0) + 1
        self.partial_blocks += partial

    def release(self, hashes: Sequence[int], partial: int) -> None:
        """A request holding ``hashes`` (+ ``partial`` unshared blocks) ended."""
        active = self.active_hashes
        for h in hashes:
            n = active.get(h, 0)
            if n > 1:
                active[h] = n - 1
            else:
                active.pop(h, None)
        self.partial_blocks = max(0, self.partial_blocks - partial)

    def new_blocks(self, hashes: Sequence[int], partial: int) -> int:
        """Blocks a request with ``hashes`` would add to this worker's active blocks."""
        active = self.active_hashes
        return sum(1 for h in hashes if h not in active) + partial

    def leading_active(self, hashes: Sequence[int]) -> int:
        """How many leading ``hashes`` running requests on this worker hold."""
        active = self.active_hashes
        n = 0
        for h in hashes:
            if h not in active:
                break
            n += 1
        return n


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
        load.hold(decision.block_hashes, decision.partial_blocks)
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
            load.release(decision.block_hashes, decision.partial_blocks)
            # Released once: a second finished() of the same decision must not release again.
            decision.block_hashes = ()
            decision.partial_blocks = 0

    def not_served(self, decision: RouteDecision) -> None:
        """The chosen worker never ran the request (unreachable, refused, lost before any
        output): release it like :meth:`finished`, and forget what it was expected to cache."""
        self.finished(decision)

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


DEFAULT_OVERLAP_SCORE_WEIGHT = 8.0
"""Dynamo's default is 1.0. A high weight keeps each prefix's users on the workers that cache
it; alone it costs balance, so it comes with :data:`DEFAULT_ACTIVE_REQUEST_WEIGHT`. In
simulated time (benchmarks/kv_routing_sim.py, 256 blocks per worker, 4 seeds): weight 1 and no
request term (Dynamo's cost) 76.5% prefix-cache hits, balance 1.015; weight 2 78.3%, 1.028;
weight 8 with request weight 1 80.5%, 1.011. ``DYN_KV_OVERLAP_SCORE_WEIGHT`` overrides it."""

DEFAULT_ACTIVE_REQUEST_WEIGHT = 1.0
"""Each request running on a worker costs this many times the incoming request's prompt
blocks (``DGD_ROUTER_ACTIVE_REQUEST_WEIGHT`` overrides it; 0 = Dynamo's cost)."""


DEFAULT_PREDICTED_CACHE_TTL_S = 10.0
"""How long a routed request's blocks count as cached on its worker without a "stored" event
confirming them: long enough for a request queued on a busy worker to start, short enough that
the blocks of a request that never ran do not attract its prefix for long."""


@dataclass(slots=True)
class KvRouterConfig:
    """Knobs of the KV policy (env: DYN_KV_OVERLAP_SCORE_WEIGHT, DYN_ROUTER_TEMPERATURE,
    DGD_ROUTER_PREDICT_ACTIVE_OVERLAP=0|1, DGD_ROUTER_PREDICTED_CACHE_TTL seconds, 0 = off,
    DGD_ROUTER_ACTIVE_REQUEST_WEIGHT, DGD_ROUTER_BUSY_PREFILL_WEIGHT)."""

    overlap_score_weight: float = DEFAULT_OVERLAP_SCORE_WEIGHT
    temperature: float = 0.0
    default_block_size: int = 64
    predict_active_overlap: bool = True
    predicted_cache_ttl_s: float = DEFAULT_PREDICTED_CACHE_TTL_S
    active_request_weight: float = DEFAULT_ACTIVE_REQUEST_WEIGHT
    busy_prefill_weight: float | None = None
    """Weight of a block of prefill a worker is already busy with; None: the overlap weight
    (Dynamo's cost). Lower trades balance for later-turn hits, see the module docstring."""

    @classmethod
    def from_env(cls) -> KvRouterConfig:
        """Defaults overridden by environment variables."""
        return cls(
            overlap_score_weight=float(
                os.environ.get("DYN_KV_OVERLAP_SCORE_WEIGHT", str(DEFAULT_OVERLAP_SCORE_WEIGHT))
            ),
            temperature=float(os.environ.get("DYN_ROUTER_TEMPERATURE", "0.0")),
            predict_active_overlap=os.environ.get("DGD_ROUTER_PREDICT_ACTIVE_OVERLAP", "1")
            not in ("0", "false", "no"),
            predicted_cache_ttl_s=float(
                os.environ.get("DGD_ROUTER_PREDICTED_CACHE_TTL", str(DEFAULT_PREDICTED_CACHE_TTL_S))
            ),
            active_request_weight=float(
                os.environ.get(
                    "DGD_ROUTER_ACTIVE_REQUEST_WEIGHT", str(DEFAULT_ACTIVE_REQUEST_WEIGHT)
                )
            ),
            busy_prefill_weight=(
                float(os.environ["DGD_ROUTER_BUSY_PREFILL_WEIGHT"])
                if os.environ.get("DGD_ROUTER_BUSY_PREFILL_WEIGHT")
                else None
            ),
        )


class KvPolicy(RoutingPolicy):
    """Prefix-cache-aware choice weighed against load."""

    name = "kv"

    def __init__(
        self,
        config: KvRouterConfig | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Empty index; fed by :meth:`kv_events`. ``clock`` (seconds) times predictions."""
        super().__init__(rng)
        self.config = config or KvRouterConfig()
        self.index = PrefixIndex()
        self.last_scores: list[KvScore] = []
        self._clock = clock

    def kv_events(self, instance_id: str, events: list[KvEvent]) -> None:
        """Apply a worker's KV events to the index."""
        self.index.apply(instance_id, events)

    def kv_reset(self, instance_id: str, hashes: list[int]) -> None:
        """Replace a worker's cache view with ``hashes``."""
        self.index.clear(instance_id)
        self.index.stored(instance_id, hashes)

    def not_served(self, decision: RouteDecision) -> None:
        """Drop the blocks predicted from ``decision``, then release it."""
        self.index.unpredict(decision.instance.instance_id, decision.block_hashes)
        super().not_served(decision)

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
        index = self.index
        ttl = self.config.predicted_cache_ttl_s
        now = self._clock() if ttl > 0 else 0.0
        if ttl > 0:
            index.expire(now)
        overlaps = index.find_matches(hashes) if hashes else {}
        n_tokens = len(tokens)
        prompt_blocks = -(-n_tokens // block_size)
        partial = prompt_blocks - len(hashes)
        weight = self.config.overlap_score_weight
        busy_weight = self.config.busy_prefill_weight
        if busy_weight is None:
            busy_weight = weight
        per_request = self.config.active_request_weight * prompt_blocks
        predict = self.config.predict_active_overlap
        scores: list[KvScore] = []
        for cand in candidates:
            iid = cand.instance_id
            overlap = overlaps.get(iid, 0)
            load = self.loads.get(iid)
            if load is None:
                busy_prefill = running = 0
                decode_blocks = prompt_blocks
            else:
                busy_prefill = load.prefill_tokens
                running = load.active_requests
                decode_blocks = load.active_blocks + load.new_blocks(hashes, partial)
                if predict and hashes:
                    overlap = max(overlap, load.leading_active(hashes))
            cost = (
                weight * (n_tokens - overlap * block_size) / block_size
                + busy_weight * busy_prefill / block_size
                + decode_blocks
                + per_request * running
            )
            scores.append(KvScore(iid, overlap, cost))
        self.last_scores = scores
        best = self._pick(scores)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "kv route: %s (prompt %d blocks)",
                ", ".join(
                    f"{s.instance_id} overlap={s.overlap_blocks} cost={s.cost:.1f}" for s in scores
                ),
                prompt_blocks,
            )
        chosen = next(c for c in candidates if c.instance_id == best.instance_id)
        if ttl > 0 and hashes:
            index.predict(chosen.instance_id, hashes, now + ttl)
        return RouteDecision(
            chosen,
            overlap_blocks=best.overlap_blocks,
            prompt_blocks=prompt_blocks,
            prefill_tokens=max(0, n_tokens - best.overlap_blocks * block_size),
            block_hashes=hashes,
            partial_blocks=partial,
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
