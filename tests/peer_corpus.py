"""Dynamo's own example DGDs, a peer-compatibility corpus kept outside the repository.

dgd's core tests use the project's own graphs (``tests/fixtures``). These files check that what
NVIDIA publishes for its operator also validates, renders and reconciles under dgd. They are
read from ``$DGD_PEER_CORPUS`` when set (a directory holding ``dgd-examples/`` and
``dgd-examples-1.5/``), else from ``../shared/reference/`` beside the checkout.

Tests that need the corpus carry the ``peer_corpus`` marker. When the corpus is missing the root
conftest skips them with :data:`MISSING_REASON`, or fails them under ``CI=true`` (CI must run
them). Parametrised tests get one placeholder case then, so they are reported, not silently
collected as nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ENV_VAR = "DGD_PEER_CORPUS"
REPO_ROOT = Path(__file__).resolve().parents[1]
_DEFAULT_ROOT = REPO_ROOT.parent / "shared" / "reference"
CORPUS_ROOT = Path(os.environ.get(ENV_VAR) or _DEFAULT_ROOT).resolve()
EXAMPLES_DIR = CORPUS_ROOT / "dgd-examples"
EXAMPLES_15_DIR = CORPUS_ROOT / "dgd-examples-1.5"
# dgd-examples/ holds 21 files: 20 in nvidia.com/v1alpha1 and one in v1beta1.
V1BETA1_EXAMPLES = ("examples__backends__vllm__deploy__gaie__agg.yaml",)
V1ALPHA1_COUNT = 20

MISSING_REASON = (
    f"Dynamo's example corpus (peer-compatibility check) not found at {EXAMPLES_DIR}: "
    f"set {ENV_VAR} to the directory holding dgd-examples/ (missing corpus fails under CI=true)"
)

peer_corpus = pytest.mark.peer_corpus
"""Marks a test (or a parametrised case) that reads the peer corpus."""


def present() -> bool:
    """Whether the corpus directory exists and holds YAML files."""
    return EXAMPLES_DIR.is_dir() and any(EXAMPLES_DIR.glob("*.yaml"))


def must_run() -> bool:
    """Under CI (``CI=true``) a missing corpus is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("true", "1")


def example(name: str) -> Path:
    """The path of one example file (it may not exist: guard the test with ``peer_corpus``)."""
    return EXAMPLES_DIR / name


def v1alpha1_example_paths() -> list[Path]:
    """Every nvidia.com/v1alpha1 example of dgd-examples/, sorted by name; [] without the corpus."""
    return sorted(path for path in EXAMPLES_DIR.glob("*.yaml") if path.name not in V1BETA1_EXAMPLES)


def v1beta1_example_paths() -> list[Path]:
    """The nvidia.com/v1beta1 example files of dgd-examples/; [] without the corpus."""
    return [EXAMPLES_DIR / name for name in V1BETA1_EXAMPLES if (EXAMPLES_DIR / name).exists()]


def cases(paths: list[Path]) -> list[Any]:
    """``pytest.param`` per path, each marked ``peer_corpus`` and named by its stem; without the
    corpus one placeholder case, so the skip (or the CI failure) is reported."""
    if not paths:
        return [
            pytest.param(EXAMPLES_DIR / "missing.yaml", id="peer-corpus-missing", marks=peer_corpus)
        ]
    return [pytest.param(path, id=path.stem, marks=peer_corpus) for path in paths]
