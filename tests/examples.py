"""Where the real Dynamo DGD examples live, for tests that want them.

The examples sit outside the repository, in `shared/reference/dgd-examples/` beside the
checkout (locally `/work/shared`, in CI `../shared` next to the clone).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = (REPO_ROOT.parent / "shared" / "reference" / "dgd-examples").resolve()
V1BETA1_EXAMPLES = ("examples__backends__vllm__deploy__gaie__agg.yaml",)


def v1alpha1_example_paths() -> list[Path]:
    """Every nvidia.com/v1alpha1 example file, sorted by name (the v1beta1 one left out)."""
    return sorted(path for path in EXAMPLES_DIR.glob("*.yaml") if path.name not in V1BETA1_EXAMPLES)


def v1beta1_example_paths() -> list[Path]:
    """The nvidia.com/v1beta1 example files."""
    return [EXAMPLES_DIR / name for name in V1BETA1_EXAMPLES if (EXAMPLES_DIR / name).exists()]
