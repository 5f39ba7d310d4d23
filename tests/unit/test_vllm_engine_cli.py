"""Choosing the vLLM engine where vLLM is not installed is a usage error naming the extra."""

from __future__ import annotations

import importlib.util

import pytest

from dgd_runtime.engines.registry import EngineUnavailableError, load_engine
from dgd_runtime.engines.vllm import VllmEngine
from dgd_runtime.worker.cli import main, parse_args

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is not None, reason="vLLM is installed in this venv"
    ),
]


def test_the_module_loads_without_vllm_and_is_the_registered_engine() -> None:
    assert load_engine("vllm") is VllmEngine


def test_parsing_its_flags_needs_vllm_and_says_which_extra() -> None:
    with pytest.raises(EngineUnavailableError, match=r"dgd-platform\[vllm\]"):
        parse_args(["--engine", "vllm", "--model", "/m", "--enforce-eager"])


def test_the_worker_exits_2_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--engine", "vllm", "--model", "/m"]) == 2
    assert "engine 'vllm' is not available" in capsys.readouterr().err
