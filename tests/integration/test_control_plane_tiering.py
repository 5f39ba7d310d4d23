"""The integration tier without binaries: it must FAIL in CI (never pass green by skipping) and
may skip locally, saying how to build them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROBE_TEST = (
    "tests/integration/test_control_plane.py::test_simulated_gpu_nodes_are_ready_and_advertise_gpus"
)


def _run_without_binaries(
    repo_root: Path, tmp_path: Path, ci: str | None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "KUBEBUILDER_ASSETS")}
    env["DGD_CACHE_DIR"] = str(tmp_path / "empty-cache")  # no binaries there
    env["TMPDIR"] = str(tmp_path)  # the inner session's temp dir is cleaned up with ours
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", PROBE_TEST],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_binaries_fail_the_tier_in_ci(repo_root: Path, tmp_path: Path) -> None:
    result = _run_without_binaries(repo_root, tmp_path, ci="true")
    assert result.returncode != 0, result.stdout
    assert "error" in result.stdout.lower()
    assert "make kube-bins" in result.stdout


def test_missing_binaries_skip_locally_with_instructions(repo_root: Path, tmp_path: Path) -> None:
    result = _run_without_binaries(repo_root, tmp_path, ci=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "make kube-bins" in result.stdout
