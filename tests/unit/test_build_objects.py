"""Builders: Deployments, Services, Ingress, RBAC, PVCs, adapters and the graph (reference §2.5, §2.8, §4.1)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.fixtures.dgd import DGD

from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.graph import build_graph, plan_graph
from dgd_operator.builders.options import BuildOptions

pytestmark = pytest.mark.unit


def make_dgd(
    services: dict[str, Any], *, annotations: dict[str, str] | None = None, **spec: Any
) -> DynamoGraphDeployment:
    return DGD("g").meta(annotations=annotations or {}).services(services).spec(**spec).model()


def objects(
    services: dict[str, Any], options: BuildOptions | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    return build_graph(make_dgd(services, **kwargs), "ns", options or BuildOptions())


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def only(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, [o["metadata"]["name"] for o in found]
    return found[0]


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param(
            {},
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            id="default",
        ),
        pytest.param(
            {"nvidia.com/deployment-strategy": "Recreate"}, {"type": "Recreate"}, id="recreate"
        ),
        pytest.param(
            {
                "nvidia.com/deployment-rolling-update-max-surge": "1",
                "nvidia.com/deployment-rolling-update-max-unavailable": "0",
            },
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            id="integers",
        ),
        pytest.param(
            {
                "nvidia.com/deployment-strategy": "RollingUpdate",
                "nvidia.com/deployment-rolling-update-max-surge": "50%",
            },
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "25%"},
            },
            id="percent",
        ),
    ],
)
def test_deployment_strategy(annotations: dict[str, str], expected: dict[str, Any]) -> None:
    deployment = only(
        objects({"w": {"componentType": "worker", "annotations": annotations}}), "Deployment"
    )
    assert deployment["spec"]["strategy"] == expected


@pytest.mark.parametrize(
    "annotations",
    [
        {"nvidia.com/deployment-strategy": "BlueGreen"},
        {"nvidia.com/deployment-rolling-update-max-surge": "lots"},
    ],
)
def test_invalid_strategy_annotation_names_the_field(annotations: dict[str, str]) -> None:
    with pytest.raises(
        BuildError, match=r"spec\.services\.w\.annotations\.nvidia\.com/deployment-"
    ):
        objects({"w": {"componentType": "worker", "annotations": annotations}})


@pytest.mark.parametrize(("replicas", "expected"), [(None, 1), (0, 0), (3, 3)])
def test_deployment_replicas_and_selector(replicas: int | None, expected: int) -> None:
    service: dict[str, Any] = {"componentType": "worker"}
    if replicas is not None:
        service["replicas"] = replicas
    deployment = only(objects({"VllmWorker": service}), "Deployment", "g-vllmworker")
    assert deployment["spec"]["replicas"] == expected
    assert deployment["spec"]["selector"] == {
        "matchLabels": {"nvidia.com/selector": "g-vllmworker"}
    }
    assert (
        deployment["spec"]["template"]["metadata"]["labels"]["nvidia.com/selector"]
        == "g-vllmworker"
    )


@pytest.mark.parametrize(
    ("component_type", "port"),
    [
        ("frontend", {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}),
        ("worker", {"name": "system", "port": 9090, "targetPort": "system", "protocol": "TCP"}),
        ("planner", {"name": "system", "port": 9090, "targetPort": "system", "protocol": "TCP"}),
        (
            "epp",
            {
                "name": "grpc",
                "port": 9002,
                "targetPort": 9002,
                "appProtocol": "http2",
                "protocol": "TCP",
            },
        ),
    ],
)
def test_component_service(component_type: str, port: dict[str, Any]) -> None:
    service = only(objects({"My.Svc": {"componentType": component_type}}), "Service")
    assert service["metadata"]["name"] == "g-my-svc"
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {
            "nvidia.com/dynamo-component-type": component_type,
            "nvidia.com/dynamo-namespace": "ns-g",
            "nvidia.com/dynamo-component": "My.Svc",
        },
        "ports": [port],
    }


@pytest.mark.parametrize(
    ("options", "annotations", "expected"),
    [
        pytest.param(
            BuildOptions(),
            {},
            ["g-frontend", "g-planner", "g-worker"],
            id="kubernetes-discovery-every-component",
        ),
        pytest.param(
            BuildOptions(discovery_backend="etcd"), {}, ["g-frontend"], id="etcd-frontend-only"
        ),
        pytest.param(
            BuildOptions(),
            {"nvidia.com/dynamo-discovery-backend": "etcd"},
            ["g-frontend"],
            id="etcd-by-annotation",
        ),
    ],
)
def test_which_components_get_services(
    options: BuildOptions, annotations: dict[str, str], expected: list[str]
) -> None:
    services = {
        "Frontend": {"componentType": "frontend"},
        "worker": {"componentType": "worker"},
        "Planner": {"componentType": "planner"},
    }
    objs = objects(services, options, annotations=annotations)
    assert [s["metadata"]["name"] for s in find(objs, "Service")] == expected


def test_discovery_rbac() -> None:
    objs = objects({"w": {"componentType": "worker"}})
    sa = only(objs, "ServiceAccount", "g-k8s-service-discovery")
    role = only(objs, "Role", "g-k8s-service-discovery-role")
    binding = only(objs, "RoleBinding", "g-k8s-service-discovery-binding")
    assert sa["metadata"]["labels"]["app.kubernetes.io/component"] == "rbac"
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("",), ("endpoints", "pods"))] == {"get", "list", "watch"}
    assert rules[(("discovery.k8s.io",), ("endpointslices",))] == {"get", "list", "watch"}
    assert {"create", "delete", "get", "list", "patch", "update", "watch"} <= rules[
        (("nvidia.com",), ("dynamoworkermetadatas",))
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "g-k8s-service-discovery-role",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "g-k8s-service-discovery", "namespace": "ns"}
    ]


def test_no_rbac_under_etcd() -> None:
    objs = objects({"w": {"componentType": "worker"}}, BuildOptions(discovery_backend="etcd"))
    assert (
        not find(objs, "ServiceAccount")
        and not find(objs, "Role")
        and not find(objs, "RoleBinding")
    )


def test_invalid_discovery_annotation() -> None:
    with pytest.raises(
        BuildError, match=r"metadata\.annotations\.nvidia\.com/dynamo-discovery-backend"
    ):
        objects({"w": {}}, annotations={"nvidia.com/dynamo-discovery-backend": "consul"})


def test_pvcs_created_only_when_asked() -> None:
    pvcs = [
        {
            "name": "made",
            "create": True,
            "size": "10Gi",
            "storageClass": "fast",
            "volumeAccessMode": "ReadWriteMany",
        },
        {"name": "existing", "create": False},
        {"name": "also-existing"},
    ]
    objs = objects({"w": {}}, pvcs=pvcs)
    claim = only(objs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "made"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "10Gi"}},
    }


def test_pvc_create_without_size_names_the_field() -> None:
    with pytest.raises(BuildError, match=r"spec\.pvcs\[0\]: create: true requires size"):
        objects(
            {"w": {}},
            pvcs=[
                {
                    "name": "p",
                    "create": True,
                    "storageClass": "s",
                    "volumeAccessMode": "ReadWriteOnce",
                }
            ],
        )


INGRESS_RULE = {
    "http": {
        "paths": [
            {
                "path": "/",
                "pathType": "Prefix",
                "backend": {"service": {"name": "g-frontend", "port": {"number": 8000}}},
            }
        ]
    }
}


@pytest.mark.parametrize(
    ("ingress", "options", "expected_spec"),
    [
        pytest.param(None, BuildOptions(), None, id="off-by-default"),
        pytest.param(
            {"enabled": True, "host": "h"}, BuildOptions(), None, id="no-class-no-ingress"
        ),
        pytest.param(
            {
                "enabled": True,
                "host": "h",
                "hostPrefix": "p-",
                "ingressControllerClassName": "nginx",
                "tls": {"secretName": "t"},
            },
            BuildOptions(),
            {
                "ingressClassName": "nginx",
                "rules": [{"host": "p-h.local", **INGRESS_RULE}],
                "tls": [{"hosts": ["p-h.local"], "secretName": "t"}],
            },
            id="service-ingress",
        ),
        pytest.param(
            None,
            BuildOptions(
                ingress_enabled=True,
                ingress_controller_class_name="nginx",
                ingress_host_suffix="example.com",
            ),
            {"ingressClassName": "nginx", "rules": [{"host": "g.example.com", **INGRESS_RULE}]},
            id="operator-default",
        ),
        pytest.param(
            {"enabled": False},
            BuildOptions(ingress_enabled=True, ingress_controller_class_name="nginx"),
            None,
            id="service-ingress-replaces-default",
        ),
    ],
)
def test_frontend_ingress(
    ingress: dict[str, Any] | None, options: BuildOptions, expected_spec: dict[str, Any] | None
) -> None:
    frontend: dict[str, Any] = {"componentType": "frontend"}
    if ingress is not None:
        frontend["ingress"] = ingress
    found = find(
        objects({"Frontend": frontend, "w": {"componentType": "worker"}}, options), "Ingress"
    )
    if expected_spec is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0]["metadata"]["name"] == "g-frontend"
        assert found[0]["spec"] == expected_spec


def test_scaling_adapter_opt_in() -> None:
    objs = objects(
        {
            "W": {"componentType": "worker", "replicas": 2, "scalingAdapter": {"enabled": True}},
            "x": {},
        }
    )
    adapter = only(objs, "DynamoGraphDeploymentScalingAdapter")
    assert adapter["metadata"]["name"] == "g-w"
    assert adapter["spec"] == {"replicas": 2, "dgdRef": {"name": "g", "serviceName": "W"}}


def test_apply_order_and_determinism() -> None:
    services = {
        "b": {"componentType": "worker"},
        "Frontend": {
            "componentType": "frontend",
            "ingress": {"enabled": True, "host": "h", "ingressControllerClassName": "c"},
        },
        "a": {"componentType": "worker", "scalingAdapter": {"enabled": True}},
    }
    pvcs = [
        {
            "name": "p",
            "create": True,
            "size": "1Gi",
            "storageClass": "s",
            "volumeAccessMode": "ReadWriteOnce",
        }
    ]
    objs = objects(services, pvcs=pvcs)
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ServiceAccount", "g-k8s-service-discovery"),
        ("Role", "g-k8s-service-discovery-role"),
        ("RoleBinding", "g-k8s-service-discovery-binding"),
        ("PersistentVolumeClaim", "p"),
        ("Service", "g-frontend"),
        ("Service", "g-a"),
        ("Service", "g-b"),
        ("Deployment", "g-frontend"),
        ("Deployment", "g-a"),
        ("Deployment", "g-b"),
        ("Ingress", "g-frontend"),
        ("DynamoGraphDeploymentScalingAdapter", "g-a"),
    ]
    assert objs == objects(services, pvcs=pvcs)


def test_restart_annotations_per_service() -> None:
    objs = build_graph(
        make_dgd({"a": {}, "b": {}}), "ns", BuildOptions(), restart_annotations={"a": "r2"}
    )
    templates = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"] for d in find(objs, "Deployment")
    }
    assert templates["g-a"]["annotations"] == {"nvidia.com/restartAt": "r2"}
    assert "annotations" not in templates["g-b"]


def test_plan_records_workload_kind_and_names() -> None:
    plan = plan_graph(
        make_dgd({"Frontend": {"componentType": "frontend"}, "W": {"componentType": "worker"}}),
        "ns",
        BuildOptions(),
    )
    assert {svc: (w.kind, w.names) for svc, w in plan.services.items()} == {
        "Frontend": ("Deployment", ("g-frontend",)),
        "W": ("Deployment", ("g-w",)),
    }


def test_backend_framework_mismatch_names_the_service() -> None:
    service = {
        "componentType": "worker",
        "extraPodSpec": {"mainContainer": {"command": ["python3", "-m", "dynamo.sglang"]}},
    }
    with pytest.raises(BuildError, match=r"spec\.services\.w: backend framework mismatch"):
        objects({"w": service}, backendFramework="vllm")
