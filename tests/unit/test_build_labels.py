"""Builders: names, labels, annotations and owner references (reference §2.2-2.4)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.fixtures.dgd import DGD

from dgd_operator.api import constants
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.naming import component_name, dynamo_namespace, service_object_name
from dgd_operator.builders.context import GraphContext, ServiceContext
from dgd_operator.builders.graph import build_graph
from dgd_operator.builders.labels import component_labels, pod_annotations, pod_labels
from dgd_operator.builders.options import BuildOptions

pytestmark = pytest.mark.unit


def make_dgd(
    services: dict[str, Any],
    *,
    name: str = "g",
    annotations: dict[str, str] | None = None,
    uid: str | None = None,
    **spec: Any,
) -> DynamoGraphDeployment:
    graph = DGD(name).meta(annotations=annotations or {}, **({"uid": uid} if uid else {}))
    return graph.services(services).spec(**spec).model()


def service_ctx(
    service: dict[str, Any],
    *,
    restart_id: str | None = None,
    options: BuildOptions | None = None,
    **kwargs: Any,
) -> ServiceContext:
    dgd = make_dgd({"Svc": service}, **kwargs)
    return GraphContext(dgd, "ns", options or BuildOptions()).service("Svc", restart_id=restart_id)


@pytest.mark.parametrize(
    ("dgd_name", "service", "component", "service_object"),
    [
        ("g", "Frontend", "g-frontend", "g-frontend"),
        ("vllm-agg", "VllmDecodeWorker", "vllm-agg-vllmdecodeworker", "vllm-agg-vllmdecodeworker"),
        ("my.graph", "worker", "my.graph-worker", "my-graph-worker"),
    ],
)
def test_names(dgd_name: str, service: str, component: str, service_object: str) -> None:
    assert component_name(dgd_name, service) == component
    assert service_object_name(dgd_name, service) == service_object


@pytest.mark.parametrize(
    ("namespace", "dgd_name", "global_ns", "expected"),
    [
        ("default", "g", False, "default-g"),
        ("prod", "a.b.c", False, "prod-a-b-c"),
        ("prod", "a.b", True, "dynamo"),
    ],
)
def test_dynamo_namespace_naming(
    namespace: str, dgd_name: str, global_ns: bool, expected: str
) -> None:
    assert dynamo_namespace(namespace, dgd_name, global_namespace=global_ns) == expected


def test_pod_labels_carry_dynamo_keys() -> None:
    ctx = service_ctx({"componentType": "worker", "subComponentType": "prefill"})
    assert pod_labels(ctx) == {
        "nvidia.com/dynamo-sub-component-type": "prefill",
        "nvidia.com/metrics-enabled": "true",
        "nvidia.com/dynamo-discovery-backend": "kubernetes",
        "nvidia.com/dynamo-discovery-enabled": "true",
        "nvidia.com/dynamo-graph-deployment-name": "g",
        "nvidia.com/dynamo-component": "Svc",
        "nvidia.com/dynamo-namespace": "ns-g",
        "nvidia.com/dynamo-component-type": "worker",
        "nvidia.com/selector": "g-svc",
    }


@pytest.mark.parametrize(
    ("dgd_annotations", "service_annotations", "enabled"),
    [
        pytest.param({}, {}, True, id="default-on"),
        pytest.param({"nvidia.com/enable-metrics": "false"}, {}, False, id="dgd-disables"),
        pytest.param({"nvidia.com/enable-metrics": "FALSE"}, {}, False, id="case-insensitive"),
        pytest.param(
            {"nvidia.com/enable-metrics": "false"},
            {"nvidia.com/enable-metrics": "true"},
            True,
            id="service-wins",
        ),
        pytest.param({"nvidia.com/enable-metrics": "true"}, {}, True, id="explicit-true"),
    ],
)
def test_metrics_label(
    dgd_annotations: dict[str, str], service_annotations: dict[str, str], enabled: bool
) -> None:
    ctx = service_ctx(
        {"componentType": "worker", "annotations": service_annotations}, annotations=dgd_annotations
    )
    assert (constants.LABEL_METRICS_ENABLED in pod_labels(ctx)) is enabled


@pytest.mark.parametrize(
    ("user_labels", "extra_pod_labels", "key", "expected"),
    [
        pytest.param({"team": "a"}, {}, "team", "a", id="user-label-kept"),
        pytest.param({"team": "a"}, {"team": "b"}, "team", "b", id="extraPodMetadata-wins"),
        pytest.param(
            {constants.LABEL_GRAPH: "evil"},
            {},
            constants.LABEL_GRAPH,
            "g",
            id="graph-name-protected",
        ),
        pytest.param(
            {},
            {constants.LABEL_COMPONENT_TYPE: "x"},
            constants.LABEL_COMPONENT_TYPE,
            "worker",
            id="type-protected",
        ),
        pytest.param(
            {constants.LABEL_DYNAMO_NAMESPACE: "x"},
            {},
            constants.LABEL_DYNAMO_NAMESPACE,
            "ns-g",
            id="dynamo-ns-protected",
        ),
        pytest.param(
            {},
            {constants.LABEL_SELECTOR: "x"},
            constants.LABEL_SELECTOR,
            "g-svc",
            id="selector-protected",
        ),
        pytest.param(
            {constants.LABEL_METRICS_ENABLED: "false"},
            {},
            constants.LABEL_METRICS_ENABLED,
            "false",
            id="metrics-label-overridable",
        ),
    ],
)
def test_pod_label_precedence(
    user_labels: dict[str, str], extra_pod_labels: dict[str, str], key: str, expected: str
) -> None:
    ctx = service_ctx(
        {
            "componentType": "worker",
            "labels": user_labels,
            "extraPodMetadata": {"labels": extra_pod_labels},
        }
    )
    assert pod_labels(ctx)[key] == expected


def test_spec_labels_merge_under_service_labels() -> None:
    ctx = service_ctx(
        {"componentType": "worker", "labels": {"a": "svc"}}, labels={"a": "dgd", "b": "dgd"}
    )
    labels = component_labels(ctx)
    assert (labels["a"], labels["b"]) == ("svc", "dgd")
    assert pod_labels(ctx)["a"] == "svc"


def test_discovery_labels_absent_under_etcd() -> None:
    ctx = service_ctx({"componentType": "worker"}, options=BuildOptions(discovery_backend="etcd"))
    labels = pod_labels(ctx)
    assert (
        constants.LABEL_DISCOVERY_BACKEND not in labels
        and constants.LABEL_DISCOVERY_ENABLED not in labels
    )


@pytest.mark.parametrize(
    ("dgd_annotations", "spec_annotations", "service_annotations", "expected"),
    [
        pytest.param(
            {"nvidia.com/enable-metrics": "false", "other": "x"},
            {},
            {},
            {"nvidia.com/enable-metrics": "false"},
            id="only-the-five-are-copied",
        ),
        pytest.param(
            {"nvidia.com/vllm-distributed-executor-backend": "ray"},
            {},
            {"nvidia.com/vllm-distributed-executor-backend": "mp"},
            {"nvidia.com/vllm-distributed-executor-backend": "mp"},
            id="service-wins",
        ),
        pytest.param(
            {},
            {"a": "spec", "b": "spec"},
            {"a": "svc"},
            {"a": "svc", "b": "spec"},
            id="spec-annotations-under",
        ),
        pytest.param(
            {"nvidia.com/dynamo-operator-origin-version": "1.0.0"},
            {"nvidia.com/dynamo-operator-origin-version": "0.1"},
            {},
            {"nvidia.com/dynamo-operator-origin-version": "1.0.0"},
            id="dgd-metadata-over-spec-annotations",
        ),
    ],
)
def test_service_annotations(
    dgd_annotations: dict[str, str],
    spec_annotations: dict[str, str],
    service_annotations: dict[str, str],
    expected: dict[str, str],
) -> None:
    dgd = DynamoGraphDeployment.model_validate(
        {
            "metadata": {"name": "g", "annotations": dgd_annotations},
            "spec": {
                "annotations": spec_annotations,
                "services": {"Svc": {"annotations": service_annotations}},
            },
        }
    )
    assert GraphContext(dgd, "ns", BuildOptions()).service("Svc").annotations == expected


def test_pod_annotations_include_extra_metadata_and_restart() -> None:
    ctx = service_ctx(
        {
            "annotations": {"a": "svc"},
            "extraPodMetadata": {"annotations": {"a": "pod", "b": "pod"}},
        },
        restart_id="r1",
    )
    assert pod_annotations(ctx) == {"a": "pod", "b": "pod", "nvidia.com/restartAt": "r1"}
    assert constants.ANNOTATION_RESTART_AT not in pod_annotations(service_ctx({}))


@pytest.mark.parametrize("uid", [None, "1234-abcd"])
def test_every_child_has_graph_labels_and_owner_references(uid: str | None) -> None:
    dgd = make_dgd(
        {
            "Frontend": {"componentType": "frontend"},
            "w": {"componentType": "worker", "scalingAdapter": {"enabled": True}},
        },
        uid=uid,
        pvcs=[
            {
                "name": "p",
                "create": True,
                "size": "1Gi",
                "storageClass": "s",
                "volumeAccessMode": "ReadWriteOnce",
            }
        ],
    )
    objects = build_graph(dgd, "ns", BuildOptions())
    for obj in objects:
        metadata = obj["metadata"]
        assert metadata["namespace"] == "ns"
        assert metadata["labels"][constants.LABEL_GRAPH] == "g"
        assert metadata["labels"][constants.LABEL_MANAGED_BY] == "dgd-operator"
        if uid is None:
            assert "ownerReferences" not in metadata
        else:
            assert metadata["ownerReferences"] == [
                {
                    "apiVersion": "nvidia.com/v1alpha1",
                    "kind": "DynamoGraphDeployment",
                    "name": "g",
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
