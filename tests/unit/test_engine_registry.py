"""Engine registry and the worker's two-pass command line: the engine owns its options."""

from __future__ import annotations

import pytest

from dgd_runtime.engines import registry
from dgd_runtime.engines.base import (
    Engine,
    EngineLimits,
    KvEventSource,
    ModelInfo,
    PublishesLoadMetrics,
)
from dgd_runtime.engines.mock import VLLM_METRIC_NAMES, MockEngine
from dgd_runtime.engines.registry import (
    EngineUnavailableError,
    UnknownEngineError,
    load_engine,
)
from dgd_runtime.protocol import ModelCard
from dgd_runtime.worker.cli import main, parse_args
from dgd_runtime.worker.service import card_with_limits

pytestmark = pytest.mark.unit

MODEL = ModelInfo(path="/m", context_length=2048, vocab_size=500, eos_token_ids=(2,))


def test_mock_is_registered_and_builds_an_engine_with_its_capabilities() -> None:
    spec = load_engine("mock")
    assert spec is MockEngine
    args, chosen = parse_args(
        ["--model-path", "/m", "--block-size", "16", "--max-model-len", "999"]
    )
    assert chosen is MockEngine
    engine = chosen.from_cli(args, MODEL)
    assert isinstance(engine, Engine)
    assert isinstance(engine, KvEventSource)
    assert isinstance(engine, PublishesLoadMetrics)
    assert engine.metric_names == VLLM_METRIC_NAMES
    assert engine.limits() == EngineLimits(
        context_length=999, kv_block_size=16, total_kv_blocks=16384, max_num_seqs=256
    )


def test_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(UnknownEngineError, match=r"unknown engine 'nope'; known engines: mock"):
        load_engine("nope")


def test_engine_whose_module_is_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.ENGINES, "vllm", "dgd_runtime.engines.not_there:X")
    with pytest.raises(EngineUnavailableError, match=r"dgd-platform\[vllm\]"):
        load_engine("vllm")


def test_worker_cli_refuses_unknown_engine_before_other_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --model-path is missing too: the engine is the problem reported, with exit code 2.
    assert main(["--engine", "nope"]) == 2
    assert "unknown engine 'nope'" in capsys.readouterr().err


def test_engine_options_exist_only_for_the_chosen_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    class Bare:
        """An engine spec adding no options."""

        @staticmethod
        def add_cli_arguments(parser: object) -> None:
            """Nothing to add."""

        @staticmethod
        def from_cli(args: object, model: ModelInfo) -> MockEngine:
            """Unused here."""
            raise AssertionError

    monkeypatch.setitem(registry.ENGINES, "bare", f"{__name__}:BARE")
    monkeypatch.setitem(globals(), "BARE", Bare)
    with pytest.raises(SystemExit):
        parse_args(["--engine", "bare", "--model-path", "/m", "--speedup-ratio", "2"])
    args, spec = parse_args(["--engine", "bare", "--model-path", "/m"])
    assert spec is Bare and not hasattr(args, "speedup_ratio")


def test_registered_card_carries_the_engine_limits() -> None:
    card = ModelCard("m", "/m", 4096, 0, extra={"engine": "mock"})
    limits = EngineLimits(context_length=1024, kv_block_size=32, total_kv_blocks=7, max_num_seqs=3)
    assert card_with_limits(card, limits) == ModelCard(
        "m", "/m", 1024, 32, extra={"engine": "mock", "total_kv_blocks": 7, "max_num_seqs": 3}
    )
