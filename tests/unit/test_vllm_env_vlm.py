"""The tiny vision-language model's cache key and how the vLLM environment reports it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgd_operator.dev import vllm_env

pytestmark = pytest.mark.unit


def _builders(tmp_path: Path, vlm: str, text: str) -> tuple[Path, Path]:
    a, b = tmp_path / "tiny_vlm.py", tmp_path / "tiny_model.py"
    a.write_text(vlm)
    b.write_text(text)
    return a, b


def test_vlm_dir_is_keyed_by_both_builder_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(vllm_env, "VLM_BUILDER_SOURCES", _builders(tmp_path, "v1", "t1"))
    first = vllm_env.vlm_dir()
    assert first.parent == tmp_path / "cache" / "models"
    assert first.name.startswith("tiny-llava-")
    assert vllm_env.vlm_dir() == first  # stable for the same sources

    monkeypatch.setattr(vllm_env, "VLM_BUILDER_SOURCES", _builders(tmp_path, "v1", "t2"))
    assert vllm_env.vlm_dir() != first  # the text model's builder changed: a new model

    monkeypatch.setattr(vllm_env, "VLM_BUILDER_SOURCES", _builders(tmp_path, "v2", "t1"))
    assert vllm_env.vlm_dir() != first


def test_find_reports_the_vlm_only_once_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    monkeypatch.setenv(vllm_env.ENV_VAR_VENV, str(venv))
    monkeypatch.setenv("DGD_CACHE_DIR", str(tmp_path / "cache"))
    text = vllm_env.model_dir()
    text.mkdir(parents=True)
    (text / "DGD-MODEL.json").write_text("{}")

    found = vllm_env.find()
    assert found is not None and found.vlm is None

    vlm = vllm_env.vlm_dir()
    vlm.mkdir(parents=True)
    (vlm / "DGD-MODEL.json").write_text("{}")
    found = vllm_env.find()
    assert found is not None and found.vlm == vlm
