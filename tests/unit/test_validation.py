"""`validate_dgd`, `update_problems` and the `dgd validate` command."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests import peer_corpus
from tests.fixtures.catalog import graph_paths, load_graph
from tests.fixtures.dgd import DGD

from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation import (
    DGDValidationError,
    Problem,
    is_dgd,
    parse_dgd,
    update_problems,
    validate_dgd,
)
from dgd_operator.cli import main

pytestmark = pytest.mark.unit

Doc = dict[str, Any]


def base_dgd() -> Doc:
    """A small valid disaggregated graph."""
    graph = DGD("demo").backend("vllm").frontend().worker("decode", sub="decode").gpus(1)
    return graph.engine("vllm").build()


def _decode(doc: Doc) -> Doc:
    service: Doc = doc["spec"]["services"]["decode"]
    return service


def _set(mutate: Callable[[Doc], object]) -> Doc:
    doc = base_dgd()
    mutate(doc)
    return doc


# (id, document, expected path, fragment of the message)
INVALID: list[tuple[str, Doc, str, str]] = [
    (
        "negative-replicas",
        _set(lambda d: _decode(d).update(replicas=-1)),
        "spec.services.decode.replicas",
        "must be >= 0",
    ),
    (
        "replicas-string",
        _set(lambda d: _decode(d).update(replicas="two")),
        "spec.services.decode.replicas",
        "must be an integer",
    ),
    (
        "replicas-bool",
        _set(lambda d: _decode(d).update(replicas=True)),
        "spec.services.decode.replicas",
        "must be an integer",
    ),
    (
        "services-list",
        _set(lambda d: d["spec"].update(services=[{"name": "decode"}])),
        "spec.services",
        "must be a mapping",
    ),
    (
        "services-empty",
        _set(lambda d: d["spec"].update(services={})),
        "spec.services",
        "at least one service",
    ),
    (
        "26-services",
        _set(lambda d: d["spec"].update(services={f"svc{i}": {} for i in range(26)})),
        "spec.services",
        "at most 25 services",
    ),
    (
        "unknown-backend",
        _set(lambda d: d["spec"].update(backendFramework="tgi")),
        "spec.backendFramework",
        "'sglang', 'vllm' or 'trtllm'",
    ),
    (
        "restart-at-create",
        _set(lambda d: d["spec"].update(restart={"id": "r1"})),
        "spec.restart",
        "must be unset when the DynamoGraphDeployment is created",
    ),
    (
        "pvc-create-without-size",
        _set(
            lambda d: d["spec"].update(
                pvcs=[
                    {
                        "name": "cache",
                        "create": True,
                        "storageClass": "standard",
                        "volumeAccessMode": "ReadWriteMany",
                    }
                ]
            )
        ),
        "spec.pvcs[0].size",
        "required when create is true",
    ),
    (
        "pvc-create-without-storage-class",
        _set(lambda d: d["spec"].update(pvcs=[{"name": "c", "create": True, "size": "10Gi"}])),
        "spec.pvcs[0].storageClass",
        "required when create is true",
    ),
    (
        "pvc-without-name",
        _set(lambda d: d["spec"].update(pvcs=[{"create": False}])),
        "spec.pvcs[0].name",
        "required",
    ),
    (
        "pvc-bad-size",
        _set(lambda d: d["spec"].update(pvcs=[{"name": "c", "size": "big"}])),
        "spec.pvcs[0].size",
        "not a Kubernetes quantity",
    ),
    (
        "node-count-1",
        _set(lambda d: _decode(d).update(multinode={"nodeCount": 1})),
        "spec.services.decode.multinode.nodeCount",
        "must be >= 2",
    ),
    (
        "ingress-without-host",
        _set(lambda d: d["spec"]["services"]["Frontend"].update(ingress={"enabled": True})),
        "spec.services.Frontend.ingress.host",
        "required when ingress.enabled is true",
    ),
    (
        "volume-mount-without-mount-point",
        _set(lambda d: _decode(d).update(volumeMounts=[{"name": "cache"}])),
        "spec.services.decode.volumeMounts[0].mountPoint",
        "required unless useAsCompilationCache",
    ),
    (
        "shared-memory-disabled-with-size",
        _set(lambda d: _decode(d).update(sharedMemory={"disabled": True, "size": "1Gi"})),
        "spec.services.decode.sharedMemory.size",
        "must be unset when disabled is true",
    ),
    (
        "shared-memory-bad-size",
        _set(lambda d: _decode(d).update(sharedMemory={"size": "lots"})),
        "spec.services.decode.sharedMemory.size",
        "not a Kubernetes quantity",
    ),
    (
        "bad-cpu",
        _set(lambda d: _decode(d)["resources"].update(requests={"cpu": "4 cores"})),
        "spec.services.decode.resources.requests.cpu",
        "not a Kubernetes quantity",
    ),
    (
        "bad-memory",
        _set(lambda d: _decode(d)["resources"]["limits"].update(memory="40GB")),
        "spec.services.decode.resources.limits.memory",
        "not a Kubernetes quantity",
    ),
    (
        "fractional-gpu",
        _set(lambda d: _decode(d)["resources"]["limits"].update(gpu="0.5")),
        "spec.services.decode.resources.limits.gpu",
        "whole number",
    ),
    (
        "gpu-as-integer",
        _set(lambda d: _decode(d)["resources"]["limits"].update(gpu=1)),
        "spec.services.decode.resources.limits.gpu",
        'must be a string, got integer 1 (quote it: "1")',
    ),
    (
        "bad-custom-resource",
        _set(lambda d: _decode(d)["resources"]["limits"].update(custom={"rdma/ib": "eight"})),
        "spec.services.decode.resources.limits.custom",
        "rdma/ib",
    ),
    (
        "origin-version-not-semver",
        _set(
            lambda d: d["metadata"].update(
                annotations={"nvidia.com/dynamo-operator-origin-version": "latest"}
            )
        ),
        "metadata.annotations[nvidia.com/dynamo-operator-origin-version]",
        "semantic version",
    ),
    (
        "vllm-executor-backend",
        _set(
            lambda d: d["metadata"].update(
                annotations={"nvidia.com/vllm-distributed-executor-backend": "threads"}
            )
        ),
        "metadata.annotations[nvidia.com/vllm-distributed-executor-backend]",
        "'mp' or 'ray'",
    ),
    (
        "discovery-mode",
        _set(
            lambda d: d["metadata"].update(
                annotations={"nvidia.com/dynamo-kube-discovery-mode": "node"}
            )
        ),
        "metadata.annotations[nvidia.com/dynamo-kube-discovery-mode]",
        "'pod' or 'container'",
    ),
    (
        "topology-domain-pattern",
        _set(
            lambda d: d["spec"].update(
                topologyConstraint={"topologyProfile": "p", "packDomain": "Rack_1"}
            )
        ),
        "spec.topologyConstraint.packDomain",
        "must match",
    ),
    (
        "topology-profile-empty",
        _set(lambda d: d["spec"].update(topologyConstraint={"topologyProfile": ""})),
        "spec.topologyConstraint.topologyProfile",
        "must not be empty",
    ),
    (
        "frontend-sidecar-collision",
        _set(
            lambda d: (
                _decode(d).update(frontendSidecar={"image": "frontend:1"}),
                _decode(d)["extraPodSpec"].update(
                    containers=[{"name": "sidecar-frontend", "image": "x"}]
                ),
            )
        ),
        "spec.services.decode.frontendSidecar",
        "sidecar-frontend",
    ),
    (
        "service-name-underscore",
        _set(lambda d: d["spec"]["services"].update(my_worker={"componentType": "worker"})),
        "spec.services.my_worker",
        "letters, digits and '-'",
    ),
    (
        "child-name-too-long",
        _set(lambda d: d["metadata"].update(name="d" * 60)),
        "spec.services.decode",
        "at most 63 characters",
    ),
    (
        "multinode-statefulset-name-too-long",
        _set(
            lambda d: (
                d["metadata"].update(name="graph-" + "x" * 34),
                _decode(d).update(multinode={"nodeCount": 2}),
            )
        ),
        "spec.services.decode",
        "StatefulSet name",
    ),
    (
        "invalid-dgd-name",
        _set(lambda d: d["metadata"].update(name="My_Graph")),
        "metadata.name",
        "not a valid name",
    ),
    (
        "missing-name",
        _set(lambda d: d.update(metadata={})),
        "metadata.name",
        "required",
    ),
    (
        "missing-spec",
        _set(lambda d: d.pop("spec")),
        "spec",
        "required",
    ),
    (
        "env-without-name",
        _set(lambda d: _decode(d).update(envs=[{"value": "1"}])),
        "spec.services.decode.envs[0].name",
        "required",
    ),
    (
        "env-value-integer",
        _set(lambda d: d["spec"].update(envs=[{"name": "N", "value": 1}])),
        "spec.envs[0].value",
        "must be a string",
    ),
    (
        "model-ref-without-name",
        _set(lambda d: _decode(d).update(modelRef={"revision": "main"})),
        "spec.services.decode.modelRef.name",
        "required",
    ),
    (
        "envs-not-a-list",
        _set(lambda d: _decode(d).update(envs={"A": "1"})),
        "spec.services.decode.envs",
        "must be a list",
    ),
    (
        "container-port-string",
        _set(
            lambda d: _decode(d)["extraPodSpec"]["mainContainer"].update(
                ports=[{"containerPort": "8000"}]
            )
        ),
        "spec.services.decode.extraPodSpec.mainContainer.ports[0].containerPort",
        "must be an integer, got string '8000'",
    ),
    (
        "probe-period-string",
        _set(lambda d: _decode(d).update(livenessProbe={"periodSeconds": "5"})),
        "spec.services.decode.livenessProbe.periodSeconds",
        "must be an integer",
    ),
    (
        "probe-port-bool",
        _set(lambda d: _decode(d).update(readinessProbe={"httpGet": {"port": True}})),
        "spec.services.decode.readinessProbe.httpGet.port",
        "must be an integer or a string",
    ),
    (
        "pod-volume-without-name",
        _set(lambda d: _decode(d)["extraPodSpec"].update(volumes=[{"emptyDir": {}}])),
        "spec.services.decode.extraPodSpec.volumes[0].name",
        "required",
    ),
    (
        "tolerations-not-a-list",
        _set(lambda d: _decode(d)["extraPodSpec"].update(tolerations={"key": "gpu"})),
        "spec.services.decode.extraPodSpec.tolerations",
        "must be a list",
    ),
    (
        "container-memory-limit-not-quantity",
        _set(
            lambda d: _decode(d)["extraPodSpec"]["mainContainer"].update(
                resources={"limits": {"memory": "lots"}}
            )
        ),
        "spec.services.decode.extraPodSpec.mainContainer.resources.limits.memory",
        "not a Kubernetes quantity",
    ),
    (
        "claim-without-name",
        _set(lambda d: _decode(d)["resources"].update(claims=[{"request": "gpu"}])),
        "spec.services.decode.resources.claims[0].name",
        "required",
    ),
    (
        "sidecar-env-without-name",
        _set(
            lambda d: _decode(d).update(frontendSidecar={"image": "f:1", "envs": [{"value": "x"}]})
        ),
        "spec.services.decode.frontendSidecar.envs[0].name",
        "required",
    ),
    (
        "invalid-label-value",
        _set(lambda d: _decode(d).update(labels={"team": "ml ops"})),
        "spec.services.decode.labels.team",
        "invalid label value 'ml ops'",
    ),
    (
        "invalid-annotation-key",
        _set(lambda d: d["spec"].update(annotations={"a/b/c": "x"})),
        "spec.annotations[a/b/c]",
        "invalid key",
    ),
    (
        "service-names-differ-only-in-case",
        _set(lambda d: d["spec"]["services"].update(Decode={"componentType": "worker"})),
        "spec.services.decode",
        "collides with service 'Decode'",
    ),
    (
        "v1alpha1-body-as-v1beta1",
        _set(lambda d: d.update(apiVersion="nvidia.com/v1beta1")),
        "spec.services",
        "unknown field: v1beta1 lists components in spec.components",
    ),
    (
        "unknown-version",
        _set(lambda d: d.update(apiVersion="nvidia.com/v2")),
        "apiVersion",
        "must be nvidia.com/v1alpha1 or nvidia.com/v1beta1, got 'nvidia.com/v2'",
    ),
]


def _messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def test_base_document_is_valid() -> None:
    result = validate_dgd(base_dgd())
    assert result.errors == []
    assert result.warnings == []
    assert isinstance(result.dgd, DynamoGraphDeployment)


def test_invalid_table_is_large() -> None:
    assert len(INVALID) >= 25
    assert len({case[0] for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize(
    ("doc", "path", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_document_names_the_field(doc: Doc, path: str, fragment: str) -> None:
    result = validate_dgd(copy.deepcopy(doc))
    assert result.dgd is None
    matching = [p for p in result.errors if p.path == path]
    assert matching, f"no error at {path}: {_messages(result.errors)}"
    assert any(fragment in p.message for p in matching), _messages(result.errors)
    for problem in result.errors:
        assert "pydantic" not in problem.message
        assert "Traceback" not in problem.message
        assert "input_value" not in problem.message


@pytest.mark.parametrize(
    ("doc", "path", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_cli_reports_invalid_document(
    doc: Doc, path: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "graph.yaml"
    file.write_text(yaml.safe_dump(doc))
    assert main(["validate", str(file)]) == 1
    out, err = capsys.readouterr()
    name = doc.get("metadata", {}).get("name") or "document 1"
    assert f"{file}: {name}: {path}: " in out
    assert fragment in out
    assert "Traceback" not in out + err


def test_several_problems_are_reported_at_once() -> None:
    doc = base_dgd()
    _decode(doc).update(replicas=-1, sharedMemory={"disabled": True, "size": "1Gi"})
    doc["spec"]["restart"] = {"id": "r1"}
    paths = {p.path for p in validate_dgd(doc).errors}
    assert {
        "spec.services.decode.replicas",
        "spec.services.decode.sharedMemory.size",
        "spec.restart",
    } <= paths


def test_restart_rules_on_update() -> None:
    doc = base_dgd()
    doc["spec"]["restart"] = {"id": "r1"}
    assert validate_dgd(doc, creating=False).errors == []

    doc["spec"]["restart"] = {"id": "r1", "strategy": {"type": "Parallel", "order": ["decode"]}}
    assert _messages(validate_dgd(doc, creating=False).errors) == [
        "spec.restart.strategy.order: must not be set when strategy.type is Parallel"
    ]

    doc["spec"]["restart"]["strategy"] = {"order": ["decode", "decode", "Prefill"]}
    messages = _messages(validate_dgd(doc, creating=False).errors)
    assert any("more than once: [decode]" in m for m in messages)
    assert any("not in spec.services: [Prefill]" in m for m in messages)
    assert any("missing: [Frontend]" in m for m in messages)

    doc["spec"]["restart"] = {"id": ""}
    assert _messages(validate_dgd(doc, creating=False).errors) == [
        "spec.restart.id: must not be empty"
    ]


def test_unknown_fields_warn_and_are_pruned() -> None:
    doc = base_dgd()
    _decode(doc)["pvc"] = {"create": False, "name": "model-cache"}
    _decode(doc)["multinode"] = {"node_count": 4}
    doc["spec"]["replicas"] = 3
    result = validate_dgd(doc)
    assert result.errors == []
    warnings = {p.path: p.message for p in result.warnings}
    assert "obsolete per-service `pvc` block" in warnings["spec.services.decode.pvc"]
    assert "prune" in warnings["spec.services.decode.pvc"]
    assert "did you mean 'nodeCount'" in warnings["spec.services.decode.multinode.node_count"]
    assert "spec.replicas" in warnings
    # Pruned like the API server would: the snake_case key does not set nodeCount.
    assert result.dgd is not None
    assert result.dgd.spec.services["decode"].node_count == 2


def test_unknown_fields_inside_kubernetes_objects_warn_and_are_pruned() -> None:
    doc = base_dgd()
    _decode(doc)["extraPodSpec"]["mainContainer"]["imagePullPolicyy"] = "Always"
    _decode(doc)["extraPodSpec"]["nodeSelectr"] = {"gpu": "h100"}
    _decode(doc)["envs"] = [{"name": "A", "value": "1", "valueFromm": {}}]
    result = validate_dgd(doc)
    assert result.errors == []
    paths = sorted(p.path for p in result.warnings)
    assert paths == [
        "spec.services.decode.envs[0].valueFromm",
        "spec.services.decode.extraPodSpec.mainContainer.imagePullPolicyy",
        "spec.services.decode.extraPodSpec.nodeSelectr",
    ]
    assert result.dgd is not None
    extra = result.dgd.spec.services["decode"].extra_pod_spec
    assert extra is not None and extra.main_container is not None
    assert "imagePullPolicyy" not in extra.main_container
    assert "nodeSelectr" not in extra.pod_spec()
    assert result.dgd.spec.services["decode"].envs == [{"name": "A", "value": "1"}]


def test_deprecated_fields_warn() -> None:
    doc = base_dgd()
    _decode(doc).update(dynamoNamespace="old", autoscaling={"enabled": True, "maxReplicas": 4})
    result = validate_dgd(doc)
    assert result.errors == []
    warnings = {p.path: p.message for p in result.warnings}
    assert "deprecated and ignored" in warnings["spec.services.decode.dynamoNamespace"]
    assert "scalingAdapter" in warnings["spec.services.decode.autoscaling"]


def test_unknown_component_type_warns() -> None:
    doc = base_dgd()
    _decode(doc)["componentType"] = "wroker"
    result = validate_dgd(doc)
    assert result.errors == []
    [warning] = result.warnings
    assert warning.path == "spec.services.decode.componentType"
    assert "plain container; did you mean 'worker'?" in warning.message


def test_extra_pod_spec_fields_pass_through() -> None:
    doc = base_dgd()
    _decode(doc)["extraPodSpec"].update(
        terminationGracePeriodSeconds=600, tolerations=[], volumes=[{"name": "v", "emptyDir": {}}]
    )
    result = validate_dgd(doc)
    assert result.errors == [] and result.warnings == []
    assert result.dgd is not None
    spec = result.dgd.spec.services["decode"].extra_pod_spec
    assert spec is not None
    assert spec.pod_spec()["terminationGracePeriodSeconds"] == 600
    assert spec.main_container is not None and spec.main_container["image"].endswith("0.8.1")


def test_quantities_may_be_numbers_where_kubernetes_allows() -> None:
    doc = base_dgd()
    _decode(doc)["sharedMemory"] = {"size": 1073741824}
    doc["spec"]["pvcs"] = [
        {
            "name": "c",
            "create": True,
            "size": 10,
            "storageClass": "s",
            "volumeAccessMode": "ReadWriteOnce",
        }
    ]
    result = validate_dgd(doc)
    assert result.errors == []
    assert result.dgd is not None
    shm = result.dgd.spec.services["decode"].shared_memory
    assert shm is not None and shm.size == "1073741824"


def test_non_mapping_document() -> None:
    result = validate_dgd(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert _messages(result.errors) == ["expected a mapping, got a list"]


def test_is_dgd() -> None:
    assert is_dgd(base_dgd())
    assert is_dgd({**base_dgd(), "apiVersion": "nvidia.com/v1beta1"})
    assert not is_dgd({"apiVersion": "v1", "kind": "ConfigMap"})
    assert not is_dgd({"apiVersion": "example.com/v1", "kind": "DynamoGraphDeployment"})
    assert not is_dgd("text")


def test_parse_dgd_raises_with_problems() -> None:
    doc = base_dgd()
    _decode(doc)["replicas"] = -2
    with pytest.raises(DGDValidationError) as info:
        parse_dgd(doc)
    assert [p.path for p in info.value.problems] == ["spec.services.decode.replicas"]
    assert "spec.services.decode.replicas: must be >= 0" in str(info.value)
    assert parse_dgd(base_dgd()).metadata.name == "demo"


# --- update rules ---------------------------------------------------------------------------


def _model(mutate: Callable[[Doc], None] = lambda d: None) -> DynamoGraphDeployment:
    doc = base_dgd()
    mutate(doc)
    return parse_dgd(doc)


def test_update_without_changes_is_fine() -> None:
    assert update_problems(_model(), _model(lambda d: _decode(d).update(replicas=3))) == []


def test_update_backend_framework_is_immutable() -> None:
    def to_sglang(doc: Doc) -> None:
        # A consistent graph: the worker command must name the new framework too.
        doc["spec"]["backendFramework"] = "sglang"
        container = _decode(doc)["extraPodSpec"]["mainContainer"]
        container["args"] = [
            a.replace("dynamo.vllm", "dynamo.sglang") for a in container.get("args", [])
        ]
        container["command"] = [
            c.replace("dynamo.vllm", "dynamo.sglang") for c in container.get("command", [])
        ]

    new = _model(to_sglang)
    assert _messages(update_problems(_model(), new)) == [
        "spec.backendFramework: is immutable (was 'vllm', now 'sglang')"
    ]


def test_update_service_set_is_immutable() -> None:
    def change(doc: Doc) -> None:
        services = doc["spec"]["services"]
        services["prefill"] = services.pop("decode")

    [problem] = update_problems(_model(), _model(change))
    assert problem.path == "spec.services"
    assert problem.message.startswith("service topology is immutable")
    assert "services added: [prefill]" in problem.message
    assert "services removed: [decode]" in problem.message


def test_update_multinode_flip_is_forbidden() -> None:
    new = _model(lambda d: _decode(d).update(multinode={"nodeCount": 2}))
    assert _messages(update_problems(_model(), new)) == [
        "spec.services.decode.multinode: cannot change from single-node to multinode after creation"
    ]
    # Changing nodeCount within multinode is allowed.
    newer = _model(lambda d: _decode(d).update(multinode={"nodeCount": 4}))
    assert update_problems(new, newer) == []


def test_update_topology_constraints_are_immutable() -> None:
    graph = {"topologyProfile": "p", "packDomain": "zone"}
    new = _model(lambda d: d["spec"].update(topologyConstraint=graph))
    assert [p.path for p in update_problems(_model(), new)] == ["spec.topologyConstraint"]
    svc = _model(
        lambda d: (
            d["spec"].update(topologyConstraint=graph),
            _decode(d).update(topologyConstraint={"packDomain": "rack"}),
        )
    )
    assert [p.path for p in update_problems(new, svc)] == [
        "spec.services.decode.topologyConstraint"
    ]


def test_update_restart_blocked_during_rolling_update() -> None:
    def rolling(doc: Doc) -> None:
        doc["status"] = {"rollingUpdate": {"phase": "InProgress"}}

    new = _model(lambda d: d["spec"].update(restart={"id": "r2"}))
    assert [p.path for p in update_problems(_model(rolling), new)] == ["spec.restart.id"]
    assert update_problems(_model(), new) == []


# --- our graphs and the peer corpus (Dynamo's examples) ---------------------------------------


def _dgds(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if is_dgd(doc)]


@peer_corpus.peer_corpus
def test_example_corpus_is_present() -> None:
    assert len(peer_corpus.v1alpha1_example_paths()) == peer_corpus.V1ALPHA1_COUNT


@pytest.mark.parametrize(
    "path",
    [*graph_paths(), *peer_corpus.cases(peer_corpus.v1alpha1_example_paths())],
    ids=lambda p: p.stem,
)
def test_every_v1alpha1_graph_and_example_is_valid(path: Path) -> None:
    [doc] = _dgds(path)
    result = validate_dgd(doc)
    assert result.errors == [], _messages(result.errors)
    assert result.dgd is not None


def test_obsolete_per_service_pvc_block_warns() -> None:
    doc = load_graph("sglang-disagg")
    for service in ("decode", "prefill"):
        doc["spec"]["services"][service]["pvc"] = {"name": "weights", "mountPoint": "/weights"}
    warnings = {p.path: p.message for p in validate_dgd(doc).warnings}
    for service in ("decode", "prefill"):
        assert "API server would prune it" in warnings[f"spec.services.{service}.pvc"]


@peer_corpus.peer_corpus
def test_wideep_recipe_warns_about_obsolete_pvc_block() -> None:
    [doc] = _dgds(
        peer_corpus.example("recipes__deepseek-r1__sglang-wideep__tep8p-dep8d-disagg.yaml")
    )
    warnings = {p.path: p.message for p in validate_dgd(doc).warnings}
    for service in ("decode", "prefill"):
        assert "API server would prune it" in warnings[f"spec.services.{service}.pvc"]


@pytest.mark.parametrize("path", peer_corpus.cases(peer_corpus.v1beta1_example_paths()))
def test_v1beta1_example_is_valid_and_names_what_dgd_does_not_act_on(path: Path) -> None:
    [doc] = _dgds(path)
    result = validate_dgd(doc)
    assert result.ok and result.dgd is not None and result.hub == doc
    assert result.api_version == "nvidia.com/v1beta1"
    assert sorted(p.path for p in result.warnings) == [
        "spec.components[0].runtimeVersionOverride",
        "spec.components[1].runtimeVersionOverride",
    ]


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_accepts_every_graph_of_ours_without_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = [str(p) for p in graph_paths()]
    assert main(["validate", *paths]) == 0
    out, err = capsys.readouterr()
    assert out.count(": valid (") == len(paths)
    assert err == ""


@peer_corpus.peer_corpus
def test_cli_accepts_every_v1alpha1_example(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(p) for p in peer_corpus.v1alpha1_example_paths()]
    assert main(["validate", *paths]) == 0
    out, err = capsys.readouterr()
    assert out.count(": valid (") == peer_corpus.V1ALPHA1_COUNT
    assert "warning: " in err and "spec.services.decode.pvc" in err
    for line in err.splitlines():
        assert line.startswith("warning: ")


@peer_corpus.peer_corpus
def test_cli_v1beta1_example(capsys: pytest.CaptureFixture[str]) -> None:
    [path] = peer_corpus.v1beta1_example_paths()
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{path}: qwen: valid (2 components)"
    assert f"warning: {path}: qwen: spec.components[0].runtimeVersionOverride: " in err


def test_cli_non_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("spec: [unclosed\n")
    assert main(["validate", str(file)]) == 1
    _out, err = capsys.readouterr()
    assert err.startswith(f"{file}: not valid YAML: ")
    assert "line" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["validate", str(missing)]) == 1
    assert capsys.readouterr().err.strip() == f"{missing}: no such file"


def test_cli_file_without_dgd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "cm.yaml"
    file.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n")
    assert main(["validate", str(file)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"{file}: no DynamoGraphDeployment found (holds ConfigMap/cfg)"
    )


def test_cli_plain_text_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("just some words\n")
    assert main(["validate", str(file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{file}: no DynamoGraphDeployment found")
    assert "not a Kubernetes object" in err


def test_cli_skips_other_kinds_and_says_so_with_verbose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "multi.yaml"
    file.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n---\n" + yaml.safe_dump(base_dgd())
    )
    assert main(["validate", str(file)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{file}: demo: valid (2 services)"
    assert "skipped" not in err
    assert main(["validate", "-v", str(file)]) == 0
    assert f"{file}: skipped ConfigMap/cfg" in capsys.readouterr().err


def test_cli_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    doc = base_dgd()
    _decode(doc)["replicas"] = -1
    monkeypatch.setattr(sys, "stdin", io.StringIO(yaml.safe_dump(doc)))
    assert main(["validate", "-"]) == 1
    out = capsys.readouterr().out
    assert out.strip() == "<stdin>: demo: spec.services.decode.replicas: must be >= 0, got -1"


def test_cli_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = base_dgd()
    _decode(doc)["replicas"] = -1
    _decode(doc)["dynamoNamespace"] = "x"
    file = tmp_path / "g.yaml"
    file.write_text(yaml.safe_dump(doc))
    assert main(["validate", "--output", "json", str(file)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    [obj] = report["files"][0]["objects"]
    assert obj["name"] == "demo"
    assert obj["errors"] == [
        {"path": "spec.services.decode.replicas", "message": "must be >= 0, got -1"}
    ]
    assert obj["warnings"][0]["path"] == "spec.services.decode.dynamoNamespace"


def test_cli_subprocess_has_no_traceback(tmp_path: Path) -> None:
    doc = base_dgd()
    _decode(doc)["replicas"] = "two"
    file = tmp_path / "g.yaml"
    file.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgd_operator.cli",
            "validate",
            str(file),
            str(tmp_path / "missing.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (
        f"{file}: demo: spec.services.decode.replicas: must be an integer, got string 'two'"
        in proc.stdout
    )
    assert f"{tmp_path / 'missing.yaml'}: no such file" in proc.stderr


def test_validate_command_imports_only_stdlib() -> None:
    code = (
        "import sys; import dgd_operator.commands.validate; "
        "print(sorted(m for m in ('yaml', 'pydantic', 'kopf', 'kubernetes') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]"


def test_impossible_parallel_layout_is_rejected_with_the_gpu_arithmetic() -> None:
    def tp16(doc: Doc) -> None:
        _decode(doc)["extraPodSpec"]["mainContainer"]["args"] = ["--tensor-parallel-size", "16"]

    result = validate_dgd(_set(tp16))
    [problem] = result.errors
    assert problem.path == "spec.services.decode"
    assert "--tensor-parallel-size 16" in problem.message
    assert "1 GPUs per pod" in problem.message or "1 GPU" in problem.message


def test_dynamo_namespace_label_too_long_is_rejected_when_the_namespace_is_known() -> None:
    def long_names(doc: Doc) -> None:
        doc["metadata"]["name"] = "d" * 40
        doc["metadata"]["namespace"] = "n" * 30

    [problem] = validate_dgd(_set(long_names)).errors
    assert problem.path == "metadata.name"
    assert "nvidia.com/dynamo-namespace" in problem.message
    # Without a namespace (dgd validate on a plain file) the same name is fine.
    assert validate_dgd(_set(lambda d: d["metadata"].update(name="d" * 40))).errors == []
