"""The pydantic API models: wire names, defaults, strictness, quantities, helpers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from tests.fixtures.dgd import DGD

from dgd_operator.api import models
from dgd_operator.api.models import (
    DynamoGraphDeployment,
    DynamoGraphDeploymentScalingAdapter,
    DynamoGraphDeploymentStatus,
    ExtraPodSpec,
    Multinode,
    ResourceItem,
    RestartStatus,
    ServiceSpec,
    parse_quantity,
)

pytestmark = pytest.mark.unit


def _dgd(services: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return (
        DGD("g", namespace="ns")
        .meta(uid="u-1", generation=3)
        .services(services)
        .spec(**spec)
        .build()
    )


def test_camel_case_on_the_wire_snake_case_in_python() -> None:
    dgd = DynamoGraphDeployment.model_validate(
        _dgd(
            {
                "VllmDecodeWorker": {
                    "componentType": "worker",
                    "subComponentType": "decode",
                    "envFromSecret": "hf-token",
                    "multinode": {"nodeCount": 4},
                    "volumeMounts": [{"name": "cache", "useAsCompilationCache": True}],
                    "scalingAdapter": {"enabled": True},
                }
            },
            backendFramework="vllm",
        )
    )
    worker = dgd.spec.services["VllmDecodeWorker"]
    assert worker.component_type == "worker"
    assert worker.sub_component_type == "decode"
    assert worker.env_from_secret == "hf-token"
    assert worker.volume_mounts[0].use_as_compilation_cache is True
    assert worker.scaling_adapter is not None and worker.scaling_adapter.enabled
    assert dgd.spec.backend_framework == "vllm"
    assert dgd.metadata.uid == "u-1" and dgd.metadata.generation == 3
    dumped = dgd.model_dump(by_alias=True, exclude_unset=True)
    assert dumped["spec"]["services"]["VllmDecodeWorker"]["multinode"] == {"nodeCount": 4}
    assert dumped["spec"]["backendFramework"] == "vllm"


def test_defaults_match_dynamo() -> None:
    service = ServiceSpec()
    assert service.replicas is None  # nil => 1 replica, decided by the builders
    assert service.node_count == 1 and not service.is_multinode
    assert Multinode().node_count == 2  # `multinode: {}` means two nodes
    assert ServiceSpec.model_validate({"multinode": {}}).is_multinode
    assert models.DEFAULT_SHARED_MEMORY == "8Gi"
    strategy = models.RestartStrategy()
    assert strategy.type == "Sequential" and strategy.order == []
    assert models.VolumeMount(name="v").use_as_compilation_cache is False
    assert models.ScalingAdapter().enabled is False


def test_python_construction_by_attribute_name() -> None:
    service = ServiceSpec(component_type="frontend", replicas=2, multinode=Multinode(node_count=3))
    assert service.replicas == 2 and service.node_count == 3


def test_models_are_strict_like_the_api_server() -> None:
    with pytest.raises(ValidationError):
        ServiceSpec.model_validate({"replicas": "2"})
    with pytest.raises(ValidationError):
        ServiceSpec.model_validate({"globalDynamoNamespace": "yes"})
    with pytest.raises(ValidationError):
        ResourceItem.model_validate({"gpu": 1})


def test_unknown_fields_are_ignored_by_the_model() -> None:
    service = ServiceSpec.model_validate({"pvc": {"name": "x"}, "replicas": 1})
    assert service.replicas == 1
    assert "pvc" not in service.model_dump(by_alias=True)


def test_extra_pod_spec_keeps_every_pod_spec_field() -> None:
    extra = ExtraPodSpec.model_validate(
        {
            "mainContainer": {"image": "img", "args": ["-m", "x"]},
            "terminationGracePeriodSeconds": 600,
            "volumes": [{"name": "v", "configMap": {"name": "c"}}],
        }
    )
    assert extra.main_container == {"image": "img", "args": ["-m", "x"]}
    assert extra.pod_spec() == {
        "terminationGracePeriodSeconds": 600,
        "volumes": [{"name": "v", "configMap": {"name": "c"}}],
    }
    # pod_spec() is a copy: mutating it does not change the model.
    extra.pod_spec()["hostNetwork"] = True
    assert "hostNetwork" not in extra.pod_spec()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", Decimal(4)),
        ("500m", Decimal("0.5")),
        ("40Gi", Decimal(40 * 2**30)),
        ("1.5T", Decimal("1.5e12")),
        ("1e3", Decimal(1000)),
        ("8Ki", Decimal(8192)),
        ("+2", Decimal(2)),
        (".5", Decimal("0.5")),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "4 cores", "40GB", "1.5.3", "Gi", " 4", "1e", "--1", "1ki"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


@pytest.mark.parametrize("gpu", ["0", "1", "8", "2000m", "1e1"])
def test_whole_gpu_counts(gpu: str) -> None:
    assert ResourceItem(gpu=gpu).gpu == gpu


@pytest.mark.parametrize("gpu", ["0.5", "1500m", "-1"])
def test_fractional_or_negative_gpus_are_rejected(gpu: str) -> None:
    with pytest.raises(ValidationError, match="whole number"):
        ResourceItem(gpu=gpu)


def test_quantity_fields_accept_numbers() -> None:
    assert models.SharedMemory.model_validate({"size": 1024}).size == "1024"
    assert models.PVC.model_validate({"name": "p", "size": 10}).size == "10"
    with pytest.raises(ValidationError):
        models.SharedMemory.model_validate({"size": True})


def test_status_wire_names() -> None:
    status = DynamoGraphDeploymentStatus.model_validate(
        {
            "state": "successful",
            "observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t"}],
            "services": {"decode": {"componentKind": "Deployment", "readyReplicas": 1}},
            "restart": {"observedID": "r1", "phase": "Completed", "inProgress": []},
        }
    )
    assert status.restart is not None and status.restart.observed_id == "r1"
    assert RestartStatus(observed_id="x").model_dump(by_alias=True)["observedID"] == "x"
    assert status.services["decode"].ready_replicas == 1
    with pytest.raises(ValidationError):
        DynamoGraphDeploymentStatus.model_validate({"state": "running"})


def test_scaling_adapter() -> None:
    adapter = DynamoGraphDeploymentScalingAdapter.model_validate(
        {
            "apiVersion": "nvidia.com/v1alpha1",
            "kind": "DynamoGraphDeploymentScalingAdapter",
            "metadata": {"name": "g-decode"},
            "spec": {"replicas": 3, "dgdRef": {"name": "g", "serviceName": "decode"}},
        }
    )
    assert adapter.spec.dgd_ref.service_name == "decode"
    with pytest.raises(ValidationError):
        models.ScalingAdapterSpec.model_validate({"replicas": -1, "dgdRef": {"name": "g"}})


def _all_models() -> list[type[BaseModel]]:
    return [
        value
        for value in vars(models).values()
        if isinstance(value, type)
        and issubclass(value, models.ApiModel)
        and value is not models.ApiModel
    ]


@pytest.mark.parametrize("model", _all_models(), ids=lambda m: m.__name__)
def test_every_spec_field_is_described(model: type[BaseModel]) -> None:
    # `kubectl explain` teaches from these; status and metadata helpers are exempt.
    if model.__name__ in {
        "ObjectMeta",
        "DynamoGraphDeployment",
        "DynamoGraphDeploymentScalingAdapter",
    }:
        return
    assert model.__doc__
    for name, info in model.model_fields.items():
        assert info.description, f"{model.__name__}.{name} lacks a description"
