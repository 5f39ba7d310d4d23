"""Pure helpers of benchmarks/kv_routing.py (the workload, hit rate, balance) and of
benchmarks/systems.py (metric parsing)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os

import pytest
from benchmarks.kv_routing import (
    WorkloadSpec,
    balance,
    build_conversations,
    counter_delta,
    environment,
    hit_rate,
    later_turn_ceiling,
    percentile,
    system_prompts,
    turn_messages,
)
from benchmarks.kv_routing import parse_variant as kv_parse_variant
from benchmarks.kv_routing_sim import VirtualTimeLoop, parse_variant
from benchmarks.systems import prom_samples, worker_requests

from dgd_runtime.router.policies import KvRouterConfig

pytestmark = pytest.mark.unit

SPEC = WorkloadSpec(
    seed=7,
    system_prompts=4,
    conversations=20,
    turns=3,
    system_words=10,
    user_words=5,
    assistant_words=6,
)


def test_workload_is_deterministic_per_seed() -> None:
    assert build_conversations(SPEC) == build_conversations(SPEC)
    assert system_prompts(SPEC) == system_prompts(SPEC)
    other = WorkloadSpec(**{**SPEC.__dict__, "seed": 8})
    assert build_conversations(other) != build_conversations(SPEC)


def test_workload_shape() -> None:
    systems = system_prompts(SPEC)
    convs = build_conversations(SPEC)
    assert len(systems) == 4
    # System prompts differ from their first word on (no shared first block across prompts).
    assert len({s.split(" ", 2)[:2][1] for s in systems}) == 4
    assert all(len(s.split()) == 2 + 10 for s in systems)
    assert len(convs) == 20
    assert [c.user for c in convs] == list(range(20))
    assert all(0 <= c.system < 4 for c in convs)
    assert all(len(c.user_turns) == 3 and len(c.replies) == 2 for c in convs)
    assert len({c.system for c in convs}) > 1


def test_each_turn_extends_the_previous_one() -> None:
    systems = system_prompts(SPEC)
    conv = build_conversations(SPEC)[3]
    turns = [turn_messages(conv, t, systems) for t in range(3)]
    assert turns[0] == [
        {"role": "system", "content": systems[conv.system]},
        {"role": "user", "content": conv.user_turns[0]},
    ]
    for prev, cur in itertools.pairwise(turns):
        assert cur[: len(prev)] == prev
        assert [m["role"] for m in cur[len(prev) :]] == ["assistant", "user"]
    assert turns[2][4] == {"role": "assistant", "content": conv.replies[1]}


@pytest.mark.parametrize(
    ("prompt", "cached", "expected"),
    [([100, 100], [0, 50], 0.25), ([64], [64], 1.0), ([], [], 0.0), ([10], [0], 0.0)],
)
def test_hit_rate(prompt: list[int], cached: list[int], expected: float) -> None:
    assert hit_rate(prompt, cached) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("per_worker", "expected"),
    [
        ({"a": 10, "b": 10, "c": 10, "d": 10}, 1.0),
        ({"a": 40, "b": 0, "c": 0, "d": 0}, 4.0),
        ({"a": 30, "b": 10}, 1.5),
        ({}, 0.0),
        ({"a": 0, "b": 0}, 0.0),
    ],
)
def test_balance(per_worker: dict[str, float], expected: float) -> None:
    assert balance(per_worker) == pytest.approx(expected)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0  # index round(49.5) = 50
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) == 0.0


def test_later_turn_ceiling_counts_whole_blocks_of_the_previous_prompt() -> None:
    prompts = {(0, 0): 130, (0, 1): 200, (0, 2): 300, (1, 1): 500}
    # (0,1): previous 130 -> 128 cached of 200; (0,2): previous 200 -> 192 of 300;
    # (1,1) has no previous turn recorded and is left out.
    assert later_turn_ceiling(prompts, 64) == pytest.approx((128 + 192) / 500)
    assert later_turn_ceiling({(0, 0): 100}, 64) == 0.0


PROM = """\
# HELP dynamo_component_requests_total Requests
# TYPE dynamo_component_requests_total counter
dynamo_component_requests_total{dynamo_endpoint="generate",worker_id="ab"} 12
dynamo_component_requests_total{dynamo_endpoint="worker_kv_query_source_1",worker_id="ab"} 3
dynamo_component_requests_total_created{dynamo_endpoint="generate"} 1.7e9
dynamo_component_errors_total 2
"""


def test_prom_samples_and_worker_requests() -> None:
    samples = prom_samples(PROM, "dynamo_component_requests_total")
    assert samples == [
        ({"dynamo_endpoint": "generate", "worker_id": "ab"}, 12.0),
        ({"dynamo_endpoint": "worker_kv_query_source_1", "worker_id": "ab"}, 3.0),
    ]
    assert prom_samples(PROM, "dynamo_component_errors_total") == [({}, 2.0)]
    # Dynamo's KV-query endpoint is not a routed request; ours has no endpoint label.
    assert worker_requests(PROM) == 12.0
    assert worker_requests('dynamo_component_requests_total{engine="mock"} 5.0\n') == 5.0
    assert worker_requests("") == 0.0


def test_counter_delta() -> None:
    assert counter_delta({"a": 5, "b": 1}, {"a": 9, "b": 1, "c": 4}) == {"a": 4, "b": 0, "c": 4}


def test_simulated_time_jumps_to_the_next_timer() -> None:
    async def sleepers() -> list[float]:
        loop = asyncio.get_running_loop()
        woke: list[float] = []

        async def nap(s: float) -> None:
            await asyncio.sleep(s)
            woke.append(loop.time())

        await asyncio.gather(nap(30.0), nap(5.0), nap(3600.0))
        return woke

    loop = VirtualTimeLoop()
    try:
        assert loop.run_until_complete(sleepers()) == [5.0, 30.0, 3600.0]
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("text", "name", "changes"),
    [
        ("base:", "base", {}),
        (
            "w3:overlap_score_weight=3,predict_active_overlap=0",
            "w3",
            {"overlap_score_weight": 3.0, "predict_active_overlap": False},
        ),
        ("ttl:predicted_cache_ttl_s=0", "ttl", {"predicted_cache_ttl_s": 0.0}),
        # An optional weight (None by default) is read as a number.
        ("bp4:busy_prefill_weight=4", "bp4", {"busy_prefill_weight": 4.0}),
    ],
)
def test_sim_variants_change_named_config_fields(
    text: str, name: str, changes: dict[str, object]
) -> None:
    base = KvRouterConfig()
    assert parse_variant(text, base) == (name, dataclasses.replace(base, **changes))
    with pytest.raises(SystemExit, match="unknown KvRouterConfig field 'nope'"):
        parse_variant("x:nope=1", base)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("old:DGD_ROUTER_PREDICTED_CACHE_TTL=0", ("old", {"DGD_ROUTER_PREDICTED_CACHE_TTL": "0"})),
        ("w1:A=1,B=x=y", ("w1", {"A": "1", "B": "x=y"})),
        ("plain:", ("plain", {})),
    ],
)
def test_variant_of_ours_is_a_name_and_its_environment(
    text: str, expected: tuple[str, dict[str, str]]
) -> None:
    assert kv_parse_variant(text) == expected


@pytest.mark.parametrize("text", ["ours:A=1", "dynamo:", ":A=1", "x:=1"])
def test_variant_needs_a_new_name_and_keys(text: str) -> None:
    with pytest.raises(SystemExit, match="bad --variant"):
        kv_parse_variant(text)


def test_environment_is_restored_after_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVB_SET", "before")
    monkeypatch.delenv("KVB_UNSET", raising=False)
    with environment({"KVB_SET": "inside", "KVB_UNSET": "new"}):
        assert (os.environ["KVB_SET"], os.environ["KVB_UNSET"]) == ("inside", "new")
    assert os.environ["KVB_SET"] == "before"
    assert "KVB_UNSET" not in os.environ
