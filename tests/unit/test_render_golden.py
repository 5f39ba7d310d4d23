"""`dgd render -n default` of our own graphs (tests/fixtures/graphs, recipes) and, as a peer
check, of every v1alpha1 Dynamo example, compared with committed golden files.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/unit/test_render_golden.py`
and review the diff. Every rendered core object is also checked against the Kubernetes 1.34
OpenAPI schemas in strict mode (unknown fields are errors).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests import peer_corpus
from tests.fixtures.catalog import graph_paths

from dgd_operator.cli import main

pytestmark = pytest.mark.unit

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
# Ours in golden/graphs/, Dynamo's examples (peer corpus) directly in golden/.
OWN_GOLDEN_DIR = GOLDEN_DIR / "graphs"
KUBERNETES_VERSION = "1.34.0"
EXAMPLES = [pytest.param(path, id=path.name) for path in graph_paths()] + peer_corpus.cases(
    peer_corpus.v1alpha1_example_paths()
)
# Custom resources have no schema in kubernetes-validate: ours (nvidia.com), NVIDIA's DRA ones,
# the InferencePool (checked against its CRD in test_gaie.py) and Istio's.
CUSTOM_GROUPS = (
    "nvidia.com/",
    "resource.nvidia.com/",
    "inference.networking.k8s.io/",
    "networking.istio.io/",
)


def render(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["render", "-n", "default", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@peer_corpus.peer_corpus
def test_all_examples_present() -> None:
    assert len(peer_corpus.v1alpha1_example_paths()) == peer_corpus.V1ALPHA1_COUNT


def test_every_own_graph_has_a_golden() -> None:
    """No stale golden: each file in golden/graphs/ belongs to one of our graphs."""
    assert sorted(p.name for p in OWN_GOLDEN_DIR.glob("*.yaml")) == sorted(p.name for p in graph_paths())


@pytest.mark.parametrize("example", EXAMPLES)
def test_golden(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rendered = render(example, capsys)
    golden = (GOLDEN_DIR if example.is_relative_to(peer_corpus.CORPUS_ROOT) else OWN_GOLDEN_DIR) / example.name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run with UPDATE_GOLDEN=1"
    assert rendered == golden.read_text(encoding="utf-8"), f"{example.name} changed; review and UPDATE_GOLDEN=1"


def core_objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d and not str(d["apiVersion"]).startswith(CUSTOM_GROUPS)]


@pytest.mark.parametrize("example", EXAMPLES)
def test_rendered_objects_pass_strict_kubernetes_schema(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import kubernetes_validate

    objects = core_objects(render(example, capsys))
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_strict_schema_check_catches_unknown_fields() -> None:
    import kubernetes_validate

    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
