"""The v1beta1 models: strictness, wire names, schema rules, and Dynamo's 49 public examples."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from tests import peer_corpus

from dgd_operator.api import v1beta1
from dgd_operator.api.v1beta1 import (
    ComponentSpec,
    DynamoGraphDeployment,
    DynamoGraphDeploymentScalingAdapter,
    DynamoWorkerMetadata,
    GraphStatus,
)

pytestmark = pytest.mark.unit

IMG = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.5.0"


def _component(**fields: Any) -> dict[str, Any]:
    return {
        "name": "VllmWorker",
        "type": "worker",
        "podTemplate": {"spec": {"containers": [{"name": "main", "image": IMG}]}},
        **fields,
    }


def _dgd(*components: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "g", "namespace": "ns"},
        "spec": {"components": list(components or [_component()]), **spec},
    }


def _error_paths(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as info:
        DynamoGraphDeployment.model_validate(data)
    return [tuple(error["loc"]) for error in info.value.errors()]


def test_fields_users_write_are_accepted_with_camel_case_names() -> None:
    grove = {
        "apiVersion": "grove.io/v1alpha1",
        "value": {"topologyConstraint": {"packDomain": "rack"}},
    }
    dgd = DynamoGraphDeployment.model_validate(
        _dgd(
            _component(
                replicas=2,
                minAvailable=1,
                runtimeVersionOverride="1.5.0",
                providerOverride=grove,
                multinode={
                    "nodeCount": 2,
                    "leader": {"providerOverride": grove},
                    "worker": {"providerOverride": grove},
                },
                sharedMemorySize="16Gi",
                scalingAdapter={},
                compilationCache={"pvcName": "cc"},
                frontendSidecar="sidecar-frontend",
                modelRef={"name": "Qwen/Qwen3-0.6B"},
                topologyConstraint={"packDomain": "rack"},
                experimental={
                    "gpuMemoryService": {},
                    "failover": {"mode": "IntraPod"},
                    "grove": {"forceScalingGroup": True},
                    "checkpoint": {"enabled": True, "startupPolicy": "WaitForCheckpoint"},
                },
            ),
            {"name": "Epp", "type": "epp", "eppConfig": {"config": {"plugins": []}}},
            backendFramework="vllm",
            env=[{"name": "HF_HOME", "value": "/m"}],
            topologyConstraint={"clusterTopologyName": "gb200", "packDomain": "zone"},
            experimental={"kvTransferPolicy": {"labelKey": "example.com/rack", "domain": "rack"}},
            restart={"id": "r1", "strategy": {"type": "Parallel"}},
            priorityClassName="high",
        )
    )
    worker = dgd.spec.components[0] if dgd.spec.components else None
    assert worker is not None and worker.multinode is not None
    assert (
        worker.multinode.leader is not None
        and worker.multinode.leader.provider_override is not None
    )
    assert worker.scaling_adapter is not None and worker.shared_memory_size == "16Gi"
    assert worker.experimental is not None and worker.experimental.gpu_memory_service is not None
    assert worker.experimental.gpu_memory_service.mode == "IntraPod"  # the CRD default
    assert worker.experimental.checkpoint is not None
    assert worker.experimental.checkpoint.target_container_name == "main"
    dumped = dgd.model_dump(by_alias=True, exclude_unset=True)
    assert dumped["spec"]["components"][0]["scalingAdapter"] == {}
    assert dumped["spec"]["experimental"]["kvTransferPolicy"] == {
        "labelKey": "example.com/rack",
        "domain": "rack",
    }


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (_dgd(_component(bogus=1)), ("spec", "components", 0, "bogus")),
        (_dgd(services={}), ("spec", "services")),
        (
            _dgd(_component(experimental={"gpuMemoryService": {"enabled": True}})),
            ("spec", "components", 0, "experimental", "gpuMemoryService", "enabled"),
        ),
        (
            _dgd(_component(scalingAdapter={"enabled": True})),
            ("spec", "components", 0, "scalingAdapter", "enabled"),
        ),
        ({**_dgd(), "status": {"state": "pending", "services": {}}}, ("status", "services")),
    ],
    ids=["component", "spec", "experimental", "scalingAdapter", "status"],
)
def test_unknown_keys_are_refused_with_their_path(
    data: dict[str, Any], path: tuple[Any, ...]
) -> None:
    assert path in _error_paths(data)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"replicas": "2"}, ("spec", "components", 0, "replicas")),
        ({"replicas": -1}, ("spec", "components", 0, "replicas")),
        ({"type": "router"}, ("spec", "components", 0, "type")),
        ({"name": "bad_name"}, ("spec", "components", 0, "name")),
        ({"runtimeVersionOverride": "1.5"}, ("spec", "components", 0, "runtimeVersionOverride")),
        ({"sharedMemorySize": "lots"}, ("spec", "components", 0, "sharedMemorySize")),
        ({"multinode": {"nodeCount": 1}}, ("spec", "components", 0, "multinode", "nodeCount")),
        ({"minAvailable": 0}, ("spec", "components", 0, "minAvailable")),
        (
            {"experimental": {"failover": {"numShadows": 2}}},
            ("spec", "components", 0, "experimental", "failover", "numShadows"),
        ),
        (
            {"experimental": {"gpuMemoryService": {"mode": "intraPod"}}},
            ("spec", "components", 0, "experimental", "gpuMemoryService", "mode"),
        ),
        (
            {"compilationCache": {"pvcName": ""}},
            ("spec", "components", 0, "compilationCache", "pvcName"),
        ),
    ],
    ids=[
        "replicas-string",
        "replicas-negative",
        "type-enum",
        "name-pattern",
        "runtime-version-pattern",
        "quantity",
        "node-count",
        "min-available-minimum",
        "num-shadows-maximum",
        "gms-mode-case",
        "pvc-name-required",
    ],
)
def test_schema_types_enums_and_patterns(fields: dict[str, Any], path: tuple[Any, ...]) -> None:
    assert path in _error_paths(_dgd(_component(**fields)))


def test_quantities_may_be_yaml_numbers() -> None:
    component = ComponentSpec.model_validate(_component(sharedMemorySize=0))
    assert component.shared_memory_size == "0"


@pytest.mark.parametrize(
    "data",
    [
        _dgd(_component(eppConfig={"config": {}})),
        _dgd(_component(type="epp", eppConfig={"config": {}, "configMapRef": {"name": "c"}})),
        _dgd(_component(type="epp", eppConfig={})),
        _dgd(_component(replicas=1, minAvailable=2)),
        _dgd(_component(name="Worker"), _component(name="worker")),
        _dgd(
            _component(name="a", type="epp", eppConfig={"config": {}}),
            _component(name="b", type="epp", eppConfig={"config": {}}),
        ),
        _dgd(experimental={"kvTransferPolicy": {"domain": "rack"}}),
        _dgd(
            experimental={
                "kvTransferPolicy": {"domain": "rack", "labelKey": "k", "enforcement": "preferred"}
            }
        ),
        _dgd(
            experimental={
                "kvTransferPolicy": {"domain": "rack", "labelKey": "k", "preferredWeight": 0.5}
            }
        ),
        _dgd(
            _component(
                experimental={
                    "gpuMemoryService": {"mode": "InterPod", "extraClientContainers": ["side"]}
                }
            )
        ),
        _dgd(
            _component(
                experimental={
                    "gpuMemoryService": {"mode": "InterPod", "extraClientPods": [{"name": "p"}]}
                }
            )
        ),
        _dgd(
            _component(
                experimental={"checkpoint": {"enabled": True, "checkpointRef": "c", "job": {}}}
            )
        ),
    ],
    ids=[
        "eppConfig-only-for-epp",
        "eppConfig-both",
        "eppConfig-neither",
        "minAvailable-above-replicas",
        "names-unique-case-insensitively",
        "at-most-one-epp",
        "kvTransferPolicy-needs-one-source",
        "preferred-needs-weight",
        "weight-only-when-preferred",
        "extraClientContainers-only-intra-pod",
        "extraClientPods-reserved",
        "checkpoint-job-or-ref",
    ],
)
def test_cel_rules_are_checked_offline(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DynamoGraphDeployment.model_validate(data)


def test_min_available_is_not_checked_when_scaled_to_zero() -> None:
    ComponentSpec.model_validate(_component(replicas=0, minAvailable=2))
    ComponentSpec.model_validate(_component(minAvailable=1))  # absent replicas count as 1


def test_status_in_the_shape_dynamos_tools_read() -> None:
    status = GraphStatus.model_validate(
        {
            "state": "successful",
            "observedGeneration": 2,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "all_resources_are_ready"}
            ],
            "components": {
                "VllmWorker": {
                    "componentKind": "Deployment",
                    "componentNames": ["g-vllmworker-1a2b3c4d"],
                    "runtimeNamespace": "ns-g-1a2b3c4d",
                    "replicas": 1,
                    "updatedReplicas": 1,
                    "readyReplicas": 1,
                    "availableReplicas": 1,
                }
            },
            "rollingUpdate": {"phase": "Completed", "updatedComponents": ["VllmWorker"]},
            "restart": {"observedID": "r1", "phase": "Completed"},
            "checkpoints": {"VllmWorker": {"checkpointID": "x", "ready": True}},
            "placement": {"score": 0.5, "state": "Reported"},
        }
    )
    assert status.components is not None
    assert status.components["VllmWorker"].runtime_namespace == "ns-g-1a2b3c4d"
    assert GraphStatus.model_validate({}).state == "initializing"
    dumped = status.model_dump(by_alias=True, exclude_unset=True)
    assert dumped["restart"]["observedID"] == "r1"
    assert dumped["checkpoints"]["VllmWorker"]["checkpointID"] == "x"
    with pytest.raises(ValidationError):
        GraphStatus.model_validate(
            {"components": {"W": {"componentKind": "Deployment", "replicas": 1}}}
        )


def test_scaling_adapter_names_a_component() -> None:
    adapter = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": "g-vllmworker"},
        "spec": {"replicas": 3, "dgdRef": {"name": "g", "componentName": "VllmWorker"}},
        "status": {"replicas": 3, "selector": "a=b"},
    }
    assert (
        DynamoGraphDeploymentScalingAdapter.model_validate(adapter).spec.dgd_ref.component_name
        == "VllmWorker"
    )
    legacy = copy.deepcopy(adapter)
    legacy["spec"]["dgdRef"] = {"name": "g", "serviceName": "VllmWorker"}
    with pytest.raises(ValidationError):
        DynamoGraphDeploymentScalingAdapter.model_validate(legacy)


def test_worker_metadata_keeps_the_runtime_data_opaque() -> None:
    data = {"endpoints": {"ns/c/e/1f": {"type": "Endpoint"}}, "model_cards": None}
    dwm = DynamoWorkerMetadata.model_validate(
        {
            "apiVersion": "nvidia.com/v1alpha1",
            "kind": "DynamoWorkerMetadata",
            "metadata": {"name": "pod-0"},
            "spec": {"data": data},
        }
    )
    assert dwm.spec.data == data
    with pytest.raises(ValidationError):
        DynamoWorkerMetadata.model_validate({"metadata": {"name": "p"}, "spec": {}})


def _models() -> dict[str, type[BaseModel]]:
    return {
        name: value
        for name, value in vars(v1beta1).items()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == v1beta1.__name__
    }


def _wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_schema_data_names_real_models_and_fields() -> None:
    models = _models()
    for key in v1beta1.CEL_RULES:
        model_name, _, field = key.partition(".")
        assert model_name in models, key
        assert not field or field in _wire_names(models[model_name]), key
    for model_name, field in v1beta1.EMBEDDED_FIELDS:
        assert field in _wire_names(models[model_name]), (model_name, field)


def test_every_field_has_a_description() -> None:
    missing = [
        f"{name}.{field}"
        for name, model in _models().items()
        for field, info in model.model_fields.items()
        if not info.description
    ]
    assert missing == []


@pytest.mark.parametrize("path", peer_corpus.params(peer_corpus.V1BETA1_DIR, "nvidia.com/v1beta1"))
def test_dynamo_example_is_accepted(path: Path | None) -> None:
    if path is None:
        peer_corpus.missing(peer_corpus.V1BETA1_DIR)
        return
    for document in peer_corpus.dgd_documents(path):
        DynamoGraphDeployment.model_validate(document)


def test_v1beta1_corpus_has_49_files() -> None:
    files = peer_corpus.example_files(peer_corpus.V1BETA1_DIR, "nvidia.com/v1beta1")
    if not files:
        peer_corpus.missing(peer_corpus.V1BETA1_DIR)
    assert len(files) == 49
