"""`dgd render -n default` of our own graphs (tests/fixtures/graphs, recipes) and, as a peer
check, of every v1alpha1 Dynamo example and every v1beta1 example of Dynamo 1.5
(golden/dgd-examples-1.5/), compared with committed golden files. A graph renders to the same
objects whichever API version it is written in: our v1beta1 twins (graphs/v1beta1/) against
their v1alpha1 files, and every example against its conversion to the other version.

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
from tests.fixtures.catalog import GRAPHS_DIR, graph_paths, v1beta1_graph_paths

from dgd_operator.api.conversion import convert
from dgd_operator.cli import main
from dgd_operator.commands.convert import dump

pytestmark = pytest.mark.unit

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
# Ours in golden/graphs/, Dynamo's examples (peer corpus) directly in golden/.
OWN_GOLDEN_DIR = GOLDEN_DIR / "graphs"
V1BETA1_GOLDEN_DIR = GOLDEN_DIR / peer_corpus.V1BETA1_DIR
KUBERNETES_VERSION = "1.34.0"
V1BETA1_EXAMPLES = peer_corpus.example_files(peer_corpus.V1BETA1_DIR, "nvidia.com/v1beta1")
EXAMPLES = (
    [pytest.param(path, id=path.name) for path in graph_paths()]
    + peer_corpus.cases(peer_corpus.v1alpha1_example_paths())
    + [
        pytest.param(path, id=f"1.5-{path.stem}", marks=peer_corpus.peer_corpus)
        for path in V1BETA1_EXAMPLES
    ]
)
V1BETA1_COUNT = 49
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


@peer_corpus.peer_corpus
def test_all_v1beta1_examples_present() -> None:
    if not V1BETA1_EXAMPLES:
        peer_corpus.missing(peer_corpus.V1BETA1_DIR)
    assert len(V1BETA1_EXAMPLES) == V1BETA1_COUNT


def test_every_own_graph_has_a_golden() -> None:
    """No stale golden: each file in golden/graphs/ belongs to one of our graphs."""
    assert sorted(p.name for p in OWN_GOLDEN_DIR.glob("*.yaml")) == sorted(
        p.name for p in graph_paths()
    )


@pytest.mark.parametrize("example", EXAMPLES)
def test_golden(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rendered = render(example, capsys)
    golden = _golden_dir(example) / example.name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run with UPDATE_GOLDEN=1"
    assert rendered == golden.read_text(encoding="utf-8"), (
        f"{example.name} changed; review and UPDATE_GOLDEN=1"
    )


def _golden_dir(example: Path) -> Path:
    if not example.is_relative_to(peer_corpus.CORPUS_ROOT):
        return OWN_GOLDEN_DIR
    return V1BETA1_GOLDEN_DIR if example.parent.name == peer_corpus.V1BETA1_DIR else GOLDEN_DIR


def core_objects(text: str) -> list[dict[str, Any]]:
    return [
        d
        for d in yaml.safe_load_all(text)
        if d and not str(d["apiVersion"]).startswith(CUSTOM_GROUPS)
    ]


@pytest.mark.parametrize("example", EXAMPLES)
def test_rendered_objects_pass_strict_kubernetes_schema(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import kubernetes_validate

    objects = core_objects(render(example, capsys))
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )


def test_strict_schema_check_catches_unknown_fields() -> None:
    import kubernetes_validate

    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@peer_corpus.peer_corpus
def test_every_v1beta1_golden_belongs_to_an_example() -> None:
    if not V1BETA1_EXAMPLES:
        peer_corpus.missing(peer_corpus.V1BETA1_DIR)
    assert sorted(p.name for p in V1BETA1_GOLDEN_DIR.glob("*.yaml")) == [
        p.name for p in V1BETA1_EXAMPLES
    ]


def test_every_own_graph_has_a_v1beta1_twin() -> None:
    assert [p.name for p in v1beta1_graph_paths()] == sorted(
        p.name for p in GRAPHS_DIR.glob("*.yaml")
    )


@pytest.mark.parametrize("twin", [pytest.param(p, id=p.stem) for p in v1beta1_graph_paths()])
def test_v1beta1_twin_renders_like_its_v1alpha1_graph(
    twin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = twin.read_text(encoding="utf-8")
    graphs = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "DynamoGraphDeployment"]
    assert graphs and all(d["apiVersion"] == "nvidia.com/v1beta1" for d in graphs)
    assert render(twin, capsys) == render(GRAPHS_DIR / twin.name, capsys)


@pytest.mark.parametrize("example", EXAMPLES)
def test_both_versions_render_the_same_objects(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file as written and converted to the other version (`dgd convert`) render alike."""
    documents = [
        d for d in yaml.safe_load_all(example.read_text(encoding="utf-8")) if d is not None
    ]
    versions = {d.get("apiVersion") for d in documents if d.get("kind") == "DynamoGraphDeployment"}
    [version] = versions
    other = "v1alpha1" if version == "nvidia.com/v1beta1" else "v1beta1"
    converted = tmp_path / example.name
    converted.write_text(dump([convert(d, other) for d in documents]), encoding="utf-8")
    assert render(converted, capsys) == render(example, capsys)


def test_a_file_mixing_both_versions_renders_each_document(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    alpha, beta = GRAPHS_DIR / "sglang-agg.yaml", GRAPHS_DIR / "v1beta1" / "vllm-agg-router.yaml"
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(
        alpha.read_text(encoding="utf-8") + "\n---\n" + beta.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    assert render(mixed, capsys) == render(alpha, capsys) + render(beta, capsys)
