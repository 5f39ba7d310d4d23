"""Routing policies: round-robin, random, KV-aware cost (overlap vs load)."""

from __future__ import annotations

import random

import pytest

from dgd_runtime.kv.hashing import block_hashes
from dgd_runtime.protocol import (
    KvEvent,
    ModelCard,
    PreprocessedRequest,
    SamplingOptions,
    WorkerInstance,
)
from dgd_runtime.router.policies import (
    KvPolicy,
    KvRouterConfig,
    RandomPolicy,
    RoundRobinPolicy,
    make_policy,
)

pytestmark = pytest.mark.unit

CARD = ModelCard("m", "/m", 4096, 4)


def _inst(iid: str) -> WorkerInstance:
    return WorkerInstance(
        iid, "ns", "backend", "generate", f"dgd.rq.ns.backend.generate.{iid}", CARD
    )


def _req(tokens: list[int]) -> PreprocessedRequest:
    return PreprocessedRequest("r", "m", tokens, SamplingOptions(max_tokens=4))


WORKERS = [_inst("a"), _inst("b"), _inst("c")]


def test_round_robin_cycles() -> None:
    p = RoundRobinPolicy(random.Random(1))
    picks = [p.select(_req([1]), WORKERS).instance.instance_id for _ in range(6)]
    assert sorted(picks[:3]) == ["a", "b", "c"]
    assert picks[:3] == picks[3:]


def test_random_uses_every_worker_eventually() -> None:
    p = RandomPolicy(random.Random(7))
    picks = {p.select(_req([1]), WORKERS).instance.instance_id for _ in range(60)}
    assert picks == {"a", "b", "c"}


def test_make_policy_from_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_policy("kv").name == "kv"
    assert make_policy("round-robin").name == "round-robin"
    monkeypatch.setenv("DYN_ROUTER_MODE", "random")
    assert make_policy(None).name == "random"
    assert make_policy("kv").name == "kv"  # an explicit flag wins
    monkeypatch.delenv("DYN_ROUTER_MODE")
    assert make_policy(None).name == "round-robin"
    with pytest.raises(ValueError, match="unknown router mode 'nope'"):
        make_policy("nope")


def test_kv_prefers_the_worker_with_the_prefix() -> None:
    p = KvPolicy(rng=random.Random(0))
    prompt = list(range(32))  # 8 blocks of 4
    p.kv_events("b", [KvEvent("stored", block_hashes(prompt, 4)[:6])])
    d = p.select(_req(prompt), WORKERS)
    assert d.instance.instance_id == "b"
    assert d.overlap_blocks == 6
    assert d.prefill_tokens == 32 - 24


def test_kv_load_outweighs_a_small_overlap() -> None:
    p = KvPolicy(rng=random.Random(0))
    prompt = list(range(32))
    p.kv_events("b", [KvEvent("stored", block_hashes(prompt, 4)[:1])])
    busy = [p.select(_req([100 + i] * 64), [WORKERS[1]]) for i in range(4)]  # load b: 64 blocks
    d = p.select(_req(prompt), WORKERS)
    assert d.instance.instance_id != "b"
    for decision in busy:
        p.finished(decision)
    assert p.loads["b"].active_blocks == 0
    # d's worker now expects the whole prompt (predicted cache); against the other idle one
    # b's single cached block wins again.
    others = [w for w in WORKERS if w.instance_id != d.instance.instance_id]
    assert p.select(_req(prompt), others).instance.instance_id == "b"


def test_kv_overlap_weight_zero_ignores_cache() -> None:
    p = KvPolicy(KvRouterConfig(overlap_score_weight=0.0), rng=random.Random(3))
    prompt = list(range(32))
    p.kv_events("b", [KvEvent("stored", block_hashes(prompt, 4))])
    busy_b = p.select(_req([7] * 8), [WORKERS[1]])
    assert busy_b.instance.instance_id == "b"
    assert p.select(_req(prompt), WORKERS).instance.instance_id != "b"


def test_kv_prefill_done_releases_prefill_load() -> None:
    p = KvPolicy(rng=random.Random(0))
    d = p.select(_req(list(range(40))), [WORKERS[0]])
    assert p.loads["a"].prefill_tokens == 40
    p.prefill_done(d)
    assert p.loads["a"].prefill_tokens == 0
    assert p.loads["a"].active_requests == 1
    p.finished(d)
    assert p.loads["a"].active_requests == 0


def test_kv_worker_removed_forgets_its_cache() -> None:
    p = KvPolicy(rng=random.Random(0))
    prompt = list(range(16))
    p.kv_events("a", [KvEvent("stored", block_hashes(prompt, 4))])
    p.worker_removed("a")
    assert p.index.find_matches(block_hashes(prompt, 4)) == {}


def test_kv_reset_replaces_the_view() -> None:
    p = KvPolicy(rng=random.Random(0))
    old = block_hashes(list(range(16)), 4)
    new = block_hashes(list(range(100, 116)), 4)
    p.kv_events("a", [KvEvent("stored", old)])
    p.kv_reset("a", new)
    assert p.index.find_matches(old) == {}
    assert p.index.find_matches(new) == {"a": 4}


def test_kv_temperature_samples_but_favours_low_cost() -> None:
    p = KvPolicy(KvRouterConfig(temperature=0.1, active_request_weight=0), rng=random.Random(5))
    prompt = list(range(64))
    p.kv_events("c", [KvEvent("stored", block_hashes(prompt, 4))])
    picks = [p.select(_req(prompt), WORKERS) for _ in range(50)]
    for d in picks:
        p.finished(d)
    assert sum(d.instance.instance_id == "c" for d in picks) > 25


def test_select_needs_candidates() -> None:
    with pytest.raises(ValueError):
        RoundRobinPolicy().select(_req([1]), [])


def _chosen_cost(p: KvPolicy, iid: str) -> float:
    return next(s.cost for s in p.last_scores if s.instance_id == iid)


def test_kv_counts_a_shared_prefix_once_per_worker() -> None:
    p = KvPolicy(rng=random.Random(0))
    system = list(range(24))  # 6 blocks of 4 shared by every request
    running = [p.select(_req(system + [100 + i] * 8), [WORKERS[0]]) for i in range(3)]
    # 6 shared blocks + 2 own blocks per request, not 3 x 8.
    assert p.loads["a"].active_blocks == 6 + 3 * 2
    for d in running[:2]:
        p.finished(d)
    assert p.loads["a"].active_blocks == 6 + 2
    p.finished(running[2])
    assert p.loads["a"].active_blocks == 0
    assert p.loads["a"].active_hashes == {}


def test_kv_partial_last_block_is_active_load_but_never_shared() -> None:
    p = KvPolicy(rng=random.Random(0))
    d1 = p.select(_req(list(range(10))), [WORKERS[0]])  # 2 full blocks + a partial one
    d2 = p.select(_req(list(range(10))), [WORKERS[0]])
    assert (d1.prompt_blocks, d1.partial_blocks) == (3, 1)
    assert p.loads["a"].active_blocks == 2 + 2
    p.finished(d1)
    p.finished(d2)
    assert p.loads["a"].active_blocks == 0


def test_kv_followers_of_a_shared_prefix_stay_with_its_cache() -> None:
    # Worker a caches and runs the system prompt; b is idle. A follower with the same system
    # prompt adds only its own blocks to a's active set: a costs 2 prefill + (8 + 2) decode =
    # 12 against b's 10 + 10 = 20 (overlap weight 1 and no request term: Dynamo's cost).
    # Counting the prefix once per request would make a cost 2 + (8 + 10) = 20 and lose the
    # cache to a coin flip.
    p = KvPolicy(
        KvRouterConfig(overlap_score_weight=1.0, active_request_weight=0), rng=random.Random(0)
    )
    system = list(range(32))  # 8 blocks
    p.kv_events("a", [KvEvent("stored", block_hashes(system, 4))])
    first = p.select(_req(system), WORKERS[:2])
    assert first.instance.instance_id == "a"
    p.prefill_done(first)
    follower = p.select(_req(system + [500] * 8), WORKERS[:2])
    assert follower.instance.instance_id == "a"
    assert _chosen_cost(p, "a") == 12
    assert _chosen_cost(p, "b") == 20


@pytest.mark.parametrize(("predict", "expected_overlap"), [(True, 8), (False, 0)])
def test_kv_running_prefix_counts_as_overlap_before_its_events(
    predict: bool, expected_overlap: int
) -> None:
    # A request runs on a, but a's "stored" events have not arrived: with the prediction the
    # next request of that prefix sees a's overlap and follows it (a costs 0 prefill + 8 active
    # decode blocks + 0 new; b costs 8 + 8); without it both cost 16.
    p = KvPolicy(
        KvRouterConfig(
            overlap_score_weight=1.0,
            predict_active_overlap=predict,
            predicted_cache_ttl_s=0,
            active_request_weight=0,
        ),
        rng=random.Random(0),
    )
    prompt = list(range(32))
    first = p.select(_req(prompt), [WORKERS[0]])
    p.prefill_done(first)
    second = p.select(_req(prompt), WORKERS[:2])
    costs = {s.instance_id: s.cost for s in p.last_scores}
    assert next(s.overlap_blocks for s in p.last_scores if s.instance_id == "a") == (
        expected_overlap
    )
    if predict:
        assert second.instance.instance_id == "a"
        assert costs == {"a": 8, "b": 16}
    else:
        assert costs == {"a": 16, "b": 16}


def test_kv_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    default = KvRouterConfig.from_env()
    assert default == KvRouterConfig()
    assert (
        default.predict_active_overlap,
        default.overlap_score_weight,
        default.active_request_weight,
        default.predicted_cache_ttl_s,
        default.busy_prefill_weight,
    ) == (True, 8.0, 1.0, 10.0, None)
    monkeypatch.setenv("DGD_ROUTER_PREDICT_ACTIVE_OVERLAP", "0")
    monkeypatch.setenv("DYN_KV_OVERLAP_SCORE_WEIGHT", "1.0")
    monkeypatch.setenv("DGD_ROUTER_ACTIVE_REQUEST_WEIGHT", "0")
    monkeypatch.setenv("DGD_ROUTER_PREDICTED_CACHE_TTL", "0")
    monkeypatch.setenv("DGD_ROUTER_BUSY_PREFILL_WEIGHT", "1")
    changed = KvRouterConfig.from_env()
    assert (
        changed.predict_active_overlap,
        changed.overlap_score_weight,
        changed.active_request_weight,
        changed.predicted_cache_ttl_s,
        changed.busy_prefill_weight,
    ) == (False, 1.0, 0.0, 0.0, 1.0)


def turn_hashes(tokens: list[int]) -> list[int]:
    """The block hashes of ``tokens`` with the test card's block size."""
    return block_hashes(tokens, CARD.kv_block_size)


@pytest.mark.parametrize(
    ("ttl", "clock_then", "event", "expected"),
    [
        # The previous turn went to a and finished before any event of a arrived: with the
        # prediction a costs 4 prefill + (2 busy + 10 new) decode = 16 against b's 10 + 10.
        (10.0, 5.0, None, "a"),
        # Without it a looks cold and busy: 12 + 12 = 24.
        (0.0, 5.0, None, "b"),
        # An unconfirmed prediction expires.
        (10.0, 10.0, None, "b"),
        # A confirmed one does not, and a contradicted one is gone at once.
        (10.0, 10.0, "stored", "a"),
        (10.0, 5.0, "removed", "b"),
    ],
)
def test_kv_next_turn_follows_its_history_before_the_events(
    ttl: float, clock_then: float, event: str | None, expected: str
) -> None:
    now = [0.0]
    p = KvPolicy(
        KvRouterConfig(
            overlap_score_weight=1.0,
            busy_prefill_weight=1.0,
            predicted_cache_ttl_s=ttl,
            active_request_weight=0,
        ),
        rng=random.Random(0),
        clock=lambda: now[0],
    )
    history = list(range(32))  # 8 blocks of 4
    turn = p.select(_req(history), [WORKERS[0]])
    p.finished(turn)
    if event is not None:
        p.kv_events(
            "a", [KvEvent("stored" if event == "stored" else "removed", turn_hashes(history))]
        )
    p.select(_req([900] * 8), [WORKERS[0]])  # a stays busy: 2 blocks, 8 prefill tokens
    now[0] = clock_then
    follow_up = p.select(_req(history + [7] * 8), WORKERS[:2])
    assert follow_up.instance.instance_id == expected


@pytest.mark.parametrize(
    ("request_weight", "running", "cost_a"),
    [
        # a runs `running` requests of one 2-block prompt (prefill done): 2 distinct active
        # blocks whatever their number. The incoming 4-block prompt is cached nowhere: a costs
        # 4 prefill + (2 + 4) decode + request_weight * 4 blocks per running request; idle b 8.
        (0.0, 3, 10.0),
        (1.0, 1, 14.0),
        (1.0, 3, 22.0),
        (0.5, 2, 14.0),
    ],
)
def test_kv_running_requests_cost_in_units_of_the_incoming_prompt(
    request_weight: float, running: int, cost_a: float
) -> None:
    p = KvPolicy(
        KvRouterConfig(
            overlap_score_weight=1.0,
            active_request_weight=request_weight,
            predicted_cache_ttl_s=0,
        ),
        rng=random.Random(0),
    )
    for _ in range(running):
        p.prefill_done(p.select(_req([900] * 8), [WORKERS[0]]))
    p.select(_req(list(range(16))), WORKERS[:2])
    assert {s.instance_id: s.cost for s in p.last_scores} == {"a": cost_a, "b": 8.0}


@pytest.mark.parametrize(("request_weight", "stay"), [(0.0, 10), (1.0, 6)])
def test_kv_users_of_a_cached_prompt_spill_over_by_request_count(
    request_weight: float, stay: int
) -> None:
    # a caches an 8-block system prompt; each user adds 2 blocks of its own. At overlap weight
    # 8, a costs 16 prefill + (10 + 2k) decode with k users running there, idle b 80 + 10: by
    # distinct blocks alone a stays cheaper for 32 users; counting each running user as 10
    # blocks (the request term) sends the 7th user to b.
    p = KvPolicy(
        KvRouterConfig(
            overlap_score_weight=8.0,
            active_request_weight=request_weight,
            predicted_cache_ttl_s=0,
        ),
        rng=random.Random(0),
    )
    system = list(range(32))
    p.kv_events("a", [KvEvent("stored", turn_hashes(system))])
    picks = []
    for user in range(10):
        d = p.select(_req(system + [100 + user] * 8), WORKERS[:2])
        p.prefill_done(d)
        picks.append(d.instance.instance_id)
    assert picks[:stay] == ["a"] * stay
    assert "a" not in picks[stay : stay + 1]


@pytest.mark.parametrize(
    ("outcome", "reported", "overlap_after"),
    [
        # Served: its blocks stay predicted on a until events confirm them.
        ("finished", False, 8),
        # Refused or unreachable: a will not cache them, so nothing points there.
        ("not_served", False, 0),
        # What a's own events reported stays: only the prediction goes.
        ("not_served", True, 8),
    ],
)
def test_kv_a_request_that_never_ran_leaves_no_prediction(
    outcome: str, reported: bool, overlap_after: int
) -> None:
    p = KvPolicy(rng=random.Random(0))
    prompt = list(range(32))
    if reported:
        p.kv_events("a", [KvEvent("stored", turn_hashes(prompt))])
    d = p.select(_req(prompt), [WORKERS[0]])
    getattr(p, outcome)(d)
    assert p.index.find_matches(turn_hashes(prompt)).get("a", 0) == overlap_after
    assert (p.loads["a"].active_requests, p.loads["a"].active_blocks) == (0, 0)


@pytest.mark.parametrize(
    ("busy_weight", "first_output_seen", "expected", "cost_a"),
    [
        # a caches a conversation's 8-block history and a new 8-block first turn was just
        # routed there (its prefill not reported done); b is idle. The next turn (10 blocks)
        # costs on a 8 * 2 new prefill + busy_weight * 8 busy + (8 + 10) decode + 10 for the
        # running request; on b 8 * 10 + 10 = 90. Weighted like a cache miss (8, Dynamo's
        # scaling) the other request's short-lived prefill drives the turn off its history.
        (8.0, False, "b", 108.0),
        (None, False, "b", 108.0),  # the default: the overlap weight, as Dynamo scales it
        (2.0, False, "a", 60.0),
        (0.0, False, "a", 44.0),
        # Once its first output arrived the prefill costs nothing whatever the weight.
        (8.0, True, "a", 44.0),
    ],
)
def test_kv_busy_prefill_is_a_load_not_a_cache_miss(
    busy_weight: float | None, first_output_seen: bool, expected: str, cost_a: float
) -> None:
    p = KvPolicy(
        KvRouterConfig(
            overlap_score_weight=8.0, busy_prefill_weight=busy_weight, predicted_cache_ttl_s=0
        ),
        rng=random.Random(0),
    )
    history = list(range(32))
    p.kv_events("a", [KvEvent("stored", turn_hashes(history))])
    first_turn = p.select(_req([900 + i for i in range(32)]), [WORKERS[0]])
    if first_output_seen:
        p.prefill_done(first_turn)
    next_turn = p.select(_req(history + [7] * 8), WORKERS[:2])
    assert next_turn.instance.instance_id == expected
    assert {s.instance_id: s.cost for s in p.last_scores} == {"a": cost_a, "b": 90.0}
