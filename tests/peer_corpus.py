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

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

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


# --- By folder and apiVersion (the conversion and v1beta1 model tests) --------------------------
V1ALPHA1_DIR = "dgd-examples"
V1BETA1_DIR = "dgd-examples-1.5"


def dgd_documents(path: Path) -> list[dict[str, Any]]:
    """The DynamoGraphDeployment documents of one (possibly multi-document) YAML file (a copy)."""
    return copy.deepcopy(_parsed(path))


@cache
def _parsed(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        documents = list(yaml.safe_load_all(handle))
    return [
        d for d in documents if isinstance(d, dict) and d.get("kind") == "DynamoGraphDeployment"
    ]


def example_files(subdir: str, api_version: str) -> list[Path]:
    """Files of `subdir` whose DGD has `api_version`, sorted; [] when the corpus is missing."""
    directory = CORPUS_ROOT / subdir
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.glob("*.yaml")
        if any(d.get("apiVersion") == api_version for d in _parsed(path))
    )


def params(subdir: str, api_version: str) -> list[Any]:
    """pytest parameters, one per file (id = file stem); one `None` when the corpus is missing."""
    files = example_files(subdir, api_version)
    if not files:
        return [pytest.param(None, id=f"{subdir}-missing", marks=peer_corpus)]
    return [pytest.param(path, id=path.stem, marks=peer_corpus) for path in files]


def missing(subdir: str) -> None:
    """Skip (or, under CI=true, fail) because the corpus directory is not there."""
    reason = (
        f"Dynamo's example corpus (peer-compatibility check) not found at {CORPUS_ROOT / subdir}: "
        f"set {ENV_VAR} to the directory holding {subdir}/ (missing corpus fails under CI=true)"
    )
    if must_run():
        pytest.fail(reason)
    pytest.skip(reason)
