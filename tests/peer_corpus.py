"""The peer corpus: Dynamo's public DGD examples kept beside the checkout, not in it.

`$DGD_PEER_CORPUS` names the reference directory (the one holding `dgd-examples/` and
`dgd-examples-1.5/`); by default it is `../shared/reference` next to the repository. Tests that
need it skip with a reason naming the variable when it is missing, and fail under `CI=true`.
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
V1ALPHA1_DIR = "dgd-examples"
V1BETA1_DIR = "dgd-examples-1.5"


def reference_dir() -> Path:
    """The corpus root: `$DGD_PEER_CORPUS`, else `../shared/reference` beside the repository."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "reference"


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
    directory = reference_dir() / subdir
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
        return [pytest.param(None, id=f"{subdir}-missing")]
    return [pytest.param(path, id=path.stem) for path in files]


def missing(subdir: str) -> None:
    """Skip (or, under CI=true, fail) because the corpus directory is not there."""
    reason = (
        f"peer corpus {reference_dir() / subdir} not found: set {ENV_VAR} to the directory "
        f"holding {subdir}/"
    )
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)
