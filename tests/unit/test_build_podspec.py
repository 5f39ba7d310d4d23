"""Builders: main container merge and pod spec rules (reference §2.6)."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.builders.container import build_main_container
from dgd_operator.builders.context import GraphContext, ServiceContext
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.options import BuildOptions, image_registry
from dgd_operator.builders.podspec import build_pod_spec

pytestmark = pytest.mark.unit


def ctx_for(
    service: dict[str, Any],
    *,
    options: BuildOptions | None = None,
    annotations: dict[str, str] | None = None,
) -> ServiceContext:
    dgd = DynamoGraphDeployment.model_validate(
        {
            "metadata": {"name": "g", "annotations": annotations or {}},
            "spec": {"services": {"svc": service}},
        }
    )
    return GraphContext(dgd, "ns", options or BuildOptions()).service("svc")


def container_of(service: dict[str, Any]) -> dict[str, Any]:
    container, _ = build_main_container(ctx_for(service))
    return container


def pod_of(service: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return build_pod_spec(ctx_for(service, **kwargs))


def main(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["containers"][-1]
    assert container["name"] == "main"
    return container


WORKER_LIVENESS = {
    "httpGet": {"path": "/live", "port": "system"},
    "periodSeconds": 5,
    "timeoutSeconds": 4,
    "failureThreshold": 1,
}


@pytest.mark.parametrize(
    ("component_type", "main_container", "field", "expected"),
    [
        pytest.param("worker", {}, "command", ["/bin/sh", "-c"], id="worker-default-command"),
        pytest.param("frontend", {}, "args", ["-m", "dynamo.frontend"], id="frontend-default-args"),
        pytest.param(
            "frontend",
            {"command": ["dynamo-frontend"]},
            "command",
            ["dynamo-frontend"],
            id="command-replaced",
        ),
        pytest.param(
            "frontend",
            {"command": ["dynamo-frontend"]},
            "args",
            ["-m", "dynamo.frontend"],
            id="args-kept-when-only-command",
        ),
        pytest.param(
            "worker",
            {"args": ["python3 -m dynamo.vllm"]},
            "command",
            ["/bin/sh", "-c"],
            id="args-only-keeps-shell",
        ),
        pytest.param("worker", {"args": ["a", "b"]}, "args", ["a", "b"], id="args-replaced"),
        pytest.param(
            "worker",
            {"ports": [{"name": "x", "containerPort": 1}]},
            "ports",
            [{"name": "x", "containerPort": 1}],
            id="ports-replaced",
        ),
        pytest.param(
            "worker",
            {"command": []},
            "command",
            ["/bin/sh", "-c"],
            id="empty-list-does-not-override",
        ),
        pytest.param(
            "worker", {"image": "img:1", "workingDir": "/w"}, "workingDir", "/w", id="scalar-set"
        ),
        pytest.param("worker", {"name": "engine"}, "name", "main", id="name-stays-main"),
        pytest.param(
            "worker",
            {"resources": {"limits": {"cpu": "1"}}},
            "resources",
            {"limits": {"cpu": "1"}},
            id="resources-from-mainContainer",
        ),
        pytest.param(
            "worker",
            {"livenessProbe": {"periodSeconds": 30}},
            "livenessProbe",
            {**WORKER_LIVENESS, "periodSeconds": 30},
            id="probe-deep-merged",
        ),
        pytest.param(
            "worker",
            {"livenessProbe": {"httpGet": {"path": "/x"}}},
            "livenessProbe",
            {**WORKER_LIVENESS, "httpGet": {"path": "/x", "port": "system"}},
            id="probe-handler-deep-merged",
        ),
        pytest.param(
            "worker",
            {"livenessProbe": {"exec": {"command": ["true"]}}},
            "livenessProbe",
            {
                "exec": {"command": ["true"]},
                "periodSeconds": 5,
                "timeoutSeconds": 4,
                "failureThreshold": 1,
            },
            id="probe-other-handler-replaces-handler-only",
        ),
        pytest.param(
            "worker",
            {"startupProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 2}},
            "startupProbe",
            {"tcpSocket": {"port": 1}, "periodSeconds": 2},
            id="startupProbe-replaced-whole",
        ),
        pytest.param(
            "frontend",
            {"startupProbe": {"httpGet": {"path": "/health", "port": 8000}}},
            "startupProbe",
            {"httpGet": {"path": "/health", "port": 8000}},
            id="startupProbe-added",
        ),
    ],
)
def test_main_container_merge(
    component_type: str, main_container: dict[str, Any], field: str, expected: Any
) -> None:
    container = container_of(
        {"componentType": component_type, "extraPodSpec": {"mainContainer": main_container}}
    )
    assert container[field] == expected


def test_main_container_env_merged_by_name() -> None:
    container = container_of(
        {
            "componentType": "worker",
            "extraPodSpec": {
                "mainContainer": {
                    "env": [
                        {"name": "DYN_SYSTEM_PORT", "value": "1"},
                        {"name": "NEW", "value": "2"},
                    ]
                }
            },
        }
    )
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert (
        env["DYN_SYSTEM_PORT"] == "1" and env["NEW"] == "2" and env["DYN_SYSTEM_ENABLED"] == "true"
    )


@pytest.mark.parametrize("probe_field", ["livenessProbe", "readinessProbe"])
def test_top_level_probe_replaces_whole(probe_field: str) -> None:
    probe = {"httpGet": {"path": "/p", "port": 9090}, "timeoutSeconds": 30}
    container = container_of(
        {
            "componentType": "worker",
            probe_field: probe,
            "extraPodSpec": {"mainContainer": {probe_field: {"periodSeconds": 99}}},
        }
    )
    assert container[probe_field] == probe


@pytest.mark.parametrize(
    ("resources", "main_resources", "expected"),
    [
        pytest.param({"limits": {"gpu": "2"}}, None, {"limits": {"nvidia.com/gpu": "2"}}, id="gpu"),
        pytest.param(
            {"limits": {"gpu": "1", "gpuType": "gpu.intel.com/xe"}},
            None,
            {"limits": {"gpu.intel.com/xe": "1"}},
            id="gpuType",
        ),
        pytest.param(
            {
                "requests": {
                    "cpu": "2",
                    "memory": "4Gi",
                    "custom": {"ephemeral-storage": "2Gi", "rdma/ib": "8"},
                }
            },
            None,
            {"requests": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "2Gi", "rdma/ib": "8"}},
            id="custom-verbatim",
        ),
        pytest.param(
            {"limits": {"cpu": "8"}},
            {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1"}},
            {"limits": {"cpu": "8", "memory": "1Gi"}, "requests": {"cpu": "1"}},
            id="dgd-overwrites-same-keys",
        ),
        pytest.param(
            {"claims": [{"name": "b"}]},
            {"claims": [{"name": "a"}]},
            {"claims": [{"name": "a"}, {"name": "b"}]},
            id="claims-appended",
        ),
    ],
)
def test_resources(
    resources: dict[str, Any], main_resources: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    main_container = {"resources": main_resources} if main_resources else {}
    container = container_of(
        {
            "componentType": "worker",
            "resources": resources,
            "extraPodSpec": {"mainContainer": main_container},
        }
    )
    assert container["resources"] == expected


def test_env_from_secret_appended() -> None:
    container = container_of(
        {
            "envFromSecret": "hf",
            "extraPodSpec": {"mainContainer": {"envFrom": [{"configMapRef": {"name": "c"}}]}},
        }
    )
    assert container["envFrom"] == [{"configMapRef": {"name": "c"}}, {"secretRef": {"name": "hf"}}]


SHM_MOUNT = {"name": "shared-memory", "mountPath": "/dev/shm"}


@pytest.mark.parametrize(
    ("service", "volume", "mounts"),
    [
        pytest.param(
            {},
            {"name": "shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
            [SHM_MOUNT],
            id="default-8Gi",
        ),
        pytest.param(
            {"sharedMemory": {"size": "80Gi"}},
            {"name": "shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": "80Gi"}},
            [SHM_MOUNT],
            id="size",
        ),
        pytest.param({"sharedMemory": {"disabled": True}}, None, None, id="disabled"),
        pytest.param(
            {
                "extraPodSpec": {
                    "volumes": [{"name": "shared-memory", "emptyDir": {}}],
                    "mainContainer": {
                        "volumeMounts": [
                            {"name": "dshm", "mountPath": "/dev/shm"},
                            {"name": "x", "mountPath": "/x"},
                        ]
                    },
                }
            },
            {"name": "shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
            [{"name": "x", "mountPath": "/x"}, SHM_MOUNT],
            id="replaces-existing",
        ),
    ],
)
def test_shared_memory(
    service: dict[str, Any], volume: dict[str, Any] | None, mounts: list[dict[str, Any]] | None
) -> None:
    pod = pod_of(service)
    shm_volumes = [v for v in pod.get("volumes", []) if v["name"] == "shared-memory"]
    assert shm_volumes == ([volume] if volume else [])
    assert main(pod).get("volumeMounts") == mounts


def test_pvc_volume_mounts() -> None:
    pod = pod_of(
        {
            "volumeMounts": [{"name": "models", "mountPoint": "/models"}],
            "sharedMemory": {"disabled": True},
        }
    )
    assert pod["volumes"] == [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}]
    assert main(pod)["volumeMounts"] == [{"name": "models", "mountPath": "/models"}]


def test_compilation_cache_without_mount_point_needs_vllm() -> None:
    with pytest.raises(BuildError, match=r"spec\.services\.svc\.volumeMounts\[0\]\.mountPoint"):
        pod_of(
            {
                "componentType": "worker",
                "volumeMounts": [{"name": "c", "useAsCompilationCache": True}],
            }
        )


@pytest.mark.parametrize(
    ("service", "options", "expected"),
    [
        pytest.param(
            {"componentType": "worker"},
            BuildOptions(),
            "g-k8s-service-discovery",
            id="discovery-sa",
        ),
        pytest.param(
            {"componentType": "worker"},
            BuildOptions(discovery_backend="etcd"),
            "default",
            id="etcd-default-sa",
        ),
        pytest.param(
            {"componentType": "planner"}, BuildOptions(), "planner-serviceaccount", id="planner"
        ),
        pytest.param(
            {"componentType": "planner"},
            BuildOptions(discovery_backend="etcd"),
            "planner-serviceaccount",
            id="planner-etcd",
        ),
        pytest.param(
            {"componentType": "worker", "extraPodSpec": {"serviceAccountName": "mine"}},
            BuildOptions(),
            "mine",
            id="user-sa-wins",
        ),
    ],
)
def test_service_account(
    service: dict[str, Any], options: BuildOptions, expected: str | None
) -> None:
    assert pod_of(service, options=options).get("serviceAccountName") == expected


@pytest.mark.parametrize(
    ("extra_pod_spec", "expected"),
    [
        pytest.param({}, {"fsGroup": 1000}, id="default-fsGroup"),
        pytest.param(
            {"securityContext": {"runAsUser": 1}}, {"runAsUser": 1}, id="user-context-no-fsGroup"
        ),
        pytest.param({"securityContext": {}}, None, id="empty-user-context-no-fsGroup"),
    ],
)
def test_security_context(extra_pod_spec: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert pod_of({"extraPodSpec": extra_pod_spec}).get("securityContext") == expected


def test_pod_defaults_and_overrides() -> None:
    pod = pod_of(
        {
            "extraPodSpec": {
                "terminationGracePeriodSeconds": 600,
                "tolerations": [],
                "nodeSelector": {"a": "b"},
            }
        }
    )
    assert pod["terminationGracePeriodSeconds"] == 600
    assert pod["restartPolicy"] == "Always"
    assert pod["nodeSelector"] == {"a": "b"}
    assert "tolerations" not in pod
    assert pod_of({})["terminationGracePeriodSeconds"] == 60


def test_main_container_after_sidecars() -> None:
    pod = pod_of(
        {
            "extraPodSpec": {
                "containers": [{"name": "side", "image": "s"}],
                "mainContainer": {"image": "m"},
            }
        }
    )
    assert [c["name"] for c in pod["containers"]] == ["side", "main"]


SECRETS = BuildOptions(
    image_pull_secrets={"nvcr.io": ("ngc", "ngc2"), "https://index.docker.io/v1/": ("hub",)}
)


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        pytest.param(
            {"extraPodSpec": {"mainContainer": {"image": "nvcr.io/nvidia/x:1"}}},
            [{"name": "ngc"}, {"name": "ngc2"}],
            id="registry-match",
        ),
        pytest.param(
            {"extraPodSpec": {"mainContainer": {"image": "ubuntu:22.04"}}},
            [{"name": "hub"}],
            id="docker-hub-short-name",
        ),
        pytest.param(
            {"extraPodSpec": {"mainContainer": {"image": "ghcr.io/x/y"}}}, None, id="no-match"
        ),
        pytest.param({}, None, id="no-image"),
        pytest.param(
            {
                "annotations": {"nvidia.com/disable-image-pull-secret-discovery": "true"},
                "extraPodSpec": {"mainContainer": {"image": "nvcr.io/x"}},
            },
            None,
            id="disabled",
        ),
        pytest.param(
            {
                "extraPodSpec": {
                    "imagePullSecrets": [{"name": "ngc"}, {"name": "own"}],
                    "mainContainer": {"image": "nvcr.io/x"},
                }
            },
            [{"name": "ngc"}, {"name": "own"}, {"name": "ngc2"}],
            id="merged-with-user-unique",
        ),
    ],
)
def test_image_pull_secrets(service: dict[str, Any], expected: list[dict[str, str]] | None) -> None:
    assert pod_of(service, options=SECRETS).get("imagePullSecrets") == expected


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("nvcr.io/nvidia/a:1", "nvcr.io"),
        ("ubuntu", "docker.io"),
        ("library/ubuntu:1", "docker.io"),
        ("localhost:5000/a", "localhost:5000"),
        ("localhost/a", "localhost"),
        ("REG.example.com/a", "reg.example.com"),
    ],
)
def test_image_registry(image: str, registry: str) -> None:
    assert image_registry(image) == registry


def test_pod_template_hooks_for_workload_builders() -> None:
    from dgd_operator.builders.podspec import build_pod_template

    seen: dict[str, Any] = {}

    def hook(
        container: dict[str, Any], spec: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        seen["containers"] = [c["name"] for c in spec.get("containers", [])]
        return {**container, "args": ["x"]}, {
            **spec,
            "initContainers": [{"name": "wait", "image": "i"}],
        }

    template = build_pod_template(
        ctx_for(
            {
                "componentType": "worker",
                "extraPodSpec": {"containers": [{"name": "side", "image": "s"}]},
            }
        ),
        extra_labels={"role": "leader"},
        extra_env=[
            {"name": "DGD_NODE_RANK", "value": "0"},
            {"name": "DYN_SYSTEM_PORT", "value": "1"},
        ],
        pod_hook=hook,
    )
    assert seen["containers"] == ["side"]  # the hook sees the pod without the main container
    assert template["metadata"]["labels"]["role"] == "leader"
    env = main(template["spec"])["env"]
    assert {"name": "DGD_NODE_RANK", "value": "0"} in env and {
        "name": "DYN_SYSTEM_PORT",
        "value": "1",
    } in env
    assert [e["name"] for e in env] == sorted(e["name"] for e in env)
    assert main(template["spec"])["args"] == ["x"]
    assert template["spec"]["initContainers"] == [{"name": "wait", "image": "i"}]
