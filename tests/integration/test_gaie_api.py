"""The Gateway API Inference Extension objects against a real API server.

The InferencePool CRD of `sigs.k8s.io/gateway-api-inference-extension` (tests/fixtures/crds)
is installed into the session's control plane; every object rendered for Dynamo's GAIE
examples and for our EPP graphs is then server-side applied with `dryRun=All` and strict field
validation, as the operator's field manager would apply it. The CRD is removed afterwards so
later tests see a cluster without the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests import peer_corpus
from tests.fixtures.catalog import load_graph
from tests.helpers import wait_for

from dgd_operator.api import constants
from dgd_operator.api.conversion import convert
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.builders.graph import plan_graph
from dgd_operator.builders.options import BuildOptions
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.rest import ApiError

pytestmark = pytest.mark.integration

CRD_FILE = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "crds"
    / "inference.networking.k8s.io_inferencepools.yaml"
)
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "dgd-operator"
GAIE_EXAMPLES = sorted(
    p
    for folder in (peer_corpus.EXAMPLES_DIR, peer_corpus.EXAMPLES_15_DIR)
    for p in folder.glob("*gaie*.yaml")
)


@pytest.fixture(scope="module")
def inference_pool_crd(control_plane: ControlPlane) -> Iterator[str]:
    """The InferencePool CRD installed and established; deleted at the end of the module."""
    crd = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    name = crd["metadata"]["name"]
    rest = control_plane.rest
    rest.post(CRD_PATH, crd)

    def established() -> bool:
        conditions = rest.get(f"{CRD_PATH}/{name}").get("status", {}).get("conditions", [])
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, timeout=60, description=f"CRD {name} established")
    # Discovery (what the operator reads to decide `inference_pool_api`) lists the resource.
    wait_for(
        lambda: any(
            r["name"] == constants.INFERENCE_POOL_PLURAL
            for r in rest.get(f"/apis/{constants.INFERENCE_POOL_GROUP_VERSION}")["resources"]
        ),
        timeout=60,
        description="inferencepools in discovery",
    )
    try:
        yield name
    finally:
        try:
            rest.delete(f"{CRD_PATH}/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise


def object_path(obj: dict[str, Any], namespace: str) -> str:
    """REST path of a namespaced object (plural = lower-case kind + s, true for every kind here)."""
    group_version = obj["apiVersion"]
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    plural = obj["kind"].lower() + "s"
    return f"{base}/namespaces/{namespace}/{plural}/{obj['metadata']['name']}"


def rendered(doc: dict[str, Any], namespace: str, options: BuildOptions) -> list[dict[str, Any]]:
    view = convert(doc, "v1alpha1") if doc["apiVersion"].endswith("/v1beta1") else doc
    return plan_graph(DynamoGraphDeployment.model_validate(view), namespace, options).objects


def graphs() -> list[Any]:
    own = [pytest.param(load_graph(stem), id=stem) for stem in ("gaie-epp", "model-sidecar")]
    peers = [
        pytest.param(
            next(d for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d),
            id=f"{p.parent.name}/{p.stem}",
            marks=peer_corpus.peer_corpus,
        )
        for p in GAIE_EXAMPLES
    ]
    return own + peers


def dry_run_apply(control_plane: ControlPlane, obj: dict[str, Any], namespace: str) -> Any:
    return control_plane.rest.request_full(
        "PATCH",
        object_path(obj, namespace),
        obj,
        params={
            "dryRun": "All",
            "fieldManager": FIELD_MANAGER,
            "fieldValidation": "Strict",
            "force": "true",
        },
        content_type=APPLY_PATCH,
    )


@pytest.mark.parametrize("doc", graphs())
def test_dry_run_apply(
    control_plane: ControlPlane, inference_pool_crd: str, namespace: str, doc: dict[str, Any]
) -> None:
    """Every rendered object is accepted as is. (A short test name: the namespace is named
    after it, and `<namespace>-<dgd>` must fit in a label value.)"""
    objects = rendered(doc, namespace, BuildOptions())
    assert any(o["kind"] == constants.INFERENCE_POOL_KIND for o in objects)
    for obj in objects:
        try:
            status, stored, warnings = dry_run_apply(control_plane, obj, namespace)
        except ApiError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} rejected: {exc.body}")
        assert status in (200, 201), obj["metadata"]["name"]
        assert not warnings, (obj["kind"], warnings)
        if obj["kind"] == constants.INFERENCE_POOL_KIND:
            # Nothing pruned or rewritten beyond the schema's defaults.
            ref = stored["spec"]["endpointPickerRef"]
            assert ref["name"] == obj["spec"]["endpointPickerRef"]["name"]
            assert ref["port"] == {"number": 9002}
            assert stored["spec"]["selector"] == obj["spec"]["selector"]
            assert stored["spec"]["targetPorts"] == [{"number": 8000}]


def test_an_invalid_pool_is_rejected(
    control_plane: ControlPlane, inference_pool_crd: str, namespace: str
) -> None:
    """The schema is really enforced: a pool without a selector cannot be created."""
    [pool] = [
        o
        for o in rendered(load_graph("gaie-epp"), namespace, BuildOptions())
        if o["kind"] == constants.INFERENCE_POOL_KIND
    ]
    del pool["spec"]["selector"]
    with pytest.raises(ApiError) as excinfo:
        dry_run_apply(control_plane, pool, namespace)
    assert excinfo.value.status == 422
