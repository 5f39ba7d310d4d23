"""Builders: container environment (reference §2.6 steps 3 and 8, §2.7)."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.builders.container import build_main_container
from dgd_operator.builders.context import GraphContext
from dgd_operator.builders.options import BuildOptions

pytestmark = pytest.mark.unit


def main_env(
    service: dict[str, Any],
    *,
    envs: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    options: BuildOptions | None = None,
    dgd_name: str = "g",
    backend: str | None = None,
) -> dict[str, Any]:
    """Env of the main container of service `svc`, by name."""
    spec: dict[str, Any] = {"services": {"svc": service}, "envs": envs or []}
    if backend:
        spec["backendFramework"] = backend
    dgd = DynamoGraphDeployment.model_validate(
        {"metadata": {"name": dgd_name, "annotations": annotations or {}}, "spec": spec}
    )
    ctx = GraphContext(dgd, "ns", options or BuildOptions()).service("svc")
    container, _ = build_main_container(ctx)
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


def var(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


@pytest.mark.parametrize(
    ("service", "dgd_envs", "options", "expected"),
    [
        pytest.param(
            {"componentType": "worker"},
            [var("X", "dgd")],
            None,
            "dgd",
            id="dgd-envs-reach-every-service",
        ),
        pytest.param(
            {"componentType": "worker", "envs": [var("X", "svc")]},
            [var("X", "dgd")],
            None,
            "svc",
            id="service-envs-win-over-dgd-envs",
        ),
        pytest.param(
            {
                "envs": [var("X", "svc")],
                "extraPodSpec": {"mainContainer": {"env": [var("X", "main")]}},
            },
            [],
            None,
            "svc",
            id="service-envs-win-over-mainContainer-env",
        ),
        pytest.param(
            {"extraPodSpec": {"mainContainer": {"env": [var("X", "main")]}}},
            [var("X", "dgd")],
            None,
            "dgd",
            id="dgd-envs-win-over-mainContainer-env",
        ),
        pytest.param(
            {"extraPodSpec": {"mainContainer": {"env": [var("X", "main")]}}},
            [],
            None,
            "main",
            id="mainContainer-env-kept",
        ),
        pytest.param(
            {"componentType": "worker", "envs": [var("NATS_SERVER", "nats://mine")]},
            [],
            BuildOptions(nats_address="nats://operator"),
            "nats://mine",
            id="user-wins-over-infrastructure-env",
        ),
    ],
)
def test_env_precedence(
    service: dict[str, Any],
    dgd_envs: list[dict[str, Any]],
    options: BuildOptions | None,
    expected: str,
) -> None:
    env = main_env(service, envs=dgd_envs, options=options)
    name = "NATS_SERVER" if options else "X"
    assert env[name] == expected


@pytest.mark.parametrize(
    ("service", "name", "expected"),
    [
        pytest.param(
            {"componentType": "worker", "envs": [var("DYN_SYSTEM_PORT", "7777")]},
            "DYN_SYSTEM_PORT",
            "7777",
            id="service-overrides-component-default",
        ),
        pytest.param(
            {
                "componentType": "worker",
                "extraPodSpec": {"mainContainer": {"env": [var("DYN_NAMESPACE", "mine")]}},
            },
            "DYN_NAMESPACE",
            "mine",
            id="mainContainer-overrides-common-env",
        ),
    ],
)
def test_user_env_overrides_operator_defaults(
    service: dict[str, Any], name: str, expected: str
) -> None:
    assert main_env(service)[name] == expected


def test_env_is_sorted_by_name_after_every_merge() -> None:
    env = main_env(
        {
            "componentType": "worker",
            "envs": [var("ZZZ", "1"), var("AAA", "2")],
            "extraPodSpec": {"mainContainer": {"env": [var("MMM", "3")]}},
        },
        envs=[var("BBB", "4")],
        options=BuildOptions(nats_address="nats://n"),
    )
    assert list(env) == sorted(env)
    assert {"AAA", "BBB", "MMM", "ZZZ", "NATS_SERVER"} <= set(env)


@pytest.mark.parametrize(
    ("options", "present", "absent"),
    [
        pytest.param(
            BuildOptions(),
            set(),
            {"NATS_SERVER", "ETCD_ENDPOINTS", "MODEL_EXPRESS_URL", "PROMETHEUS_ENDPOINT"},
            id="none-configured",
        ),
        pytest.param(
            BuildOptions(nats_address="nats://n:4222"),
            {"NATS_SERVER"},
            {"ETCD_ENDPOINTS"},
            id="nats-only",
        ),
        pytest.param(
            BuildOptions(
                nats_address="n", etcd_address="e", model_express_url="m", prometheus_endpoint="p"
            ),
            {"NATS_SERVER", "ETCD_ENDPOINTS", "MODEL_EXPRESS_URL", "PROMETHEUS_ENDPOINT"},
            set(),
            id="all",
        ),
    ],
)
def test_infrastructure_env_only_when_configured(
    options: BuildOptions, present: set[str], absent: set[str]
) -> None:
    env = main_env({"componentType": "frontend"}, options=options)
    assert present <= set(env)
    assert not absent & set(env)


@pytest.mark.parametrize(
    ("component_type", "expected"),
    [
        (
            "frontend",
            {
                "DYNAMO_PORT": "8000",
                "DYN_HTTP_PORT": "8000",
                "DYN_NAMESPACE_PREFIX": "ns-g",
                "DYN_COMPONENT": "frontend",
            },
        ),
        (
            "worker",
            {
                "DYN_SYSTEM_ENABLED": "true",
                "DYN_SYSTEM_PORT": "9090",
                "DYN_HEALTH_CHECK_ENABLED": "false",
                "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS": '["generate"]',
                "NIXL_TELEMETRY_ENABLE": "n",
                "NIXL_TELEMETRY_EXPORTER": "prometheus",
                "NIXL_TELEMETRY_PROMETHEUS_PORT": "19090",
                "DYN_COMPONENT": "worker",
            },
        ),
        ("prefill", {"DYN_SYSTEM_ENABLED": "true", "DYN_COMPONENT": "prefill"}),
        (
            "planner",
            {
                "PLANNER_PROMETHEUS_PORT": "9085",
                "DYN_SYSTEM_PORT": "9090",
                "DYN_COMPONENT": "planner",
            },
        ),
    ],
)
def test_component_env(component_type: str, expected: dict[str, str]) -> None:
    env = main_env({"componentType": component_type})
    assert {k: env.get(k) for k in expected} == expected
    assert env["DYN_NAMESPACE"] == "ns-g"
    assert env["DYN_PARENT_DGD_K8S_NAME"] == "g"
    assert env["DYN_PARENT_DGD_K8S_NAMESPACE"] == "ns"
    assert env["POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}


def test_plain_component_gets_common_env_only() -> None:
    env = main_env({})
    assert "DYN_COMPONENT" not in env and "DYN_SYSTEM_ENABLED" not in env
    assert env["DYN_NAMESPACE"] == "ns-g"


@pytest.mark.parametrize(
    ("annotations", "options", "expected"),
    [
        pytest.param(
            {}, BuildOptions(), {"DYN_DISCOVERY_BACKEND": "kubernetes"}, id="kubernetes-default"
        ),
        pytest.param(
            {},
            BuildOptions(discovery_backend="etcd"),
            {"DYN_DISCOVERY_BACKEND": None},
            id="etcd-option",
        ),
        pytest.param(
            {"nvidia.com/dynamo-discovery-backend": "etcd"},
            BuildOptions(),
            {"DYN_DISCOVERY_BACKEND": None},
            id="etcd-annotation",
        ),
        pytest.param(
            {"nvidia.com/dynamo-kube-discovery-mode": "container"},
            BuildOptions(),
            {"DYN_KUBE_DISCOVERY_MODE": "container", "CONTAINER_NAME": "main"},
            id="container-mode",
        ),
    ],
)
def test_discovery_env(
    annotations: dict[str, str], options: BuildOptions, expected: dict[str, str | None]
) -> None:
    env = main_env({"componentType": "worker"}, annotations=annotations, options=options)
    assert {k: env.get(k) for k in expected} == expected


@pytest.mark.parametrize(
    ("dgd_name", "global_ns", "expected"),
    [
        ("g", False, "ns-g"),
        ("my.graph.v1", False, "ns-my-graph-v1"),
        ("my.graph", True, "dynamo"),
    ],
)
def test_dynamo_namespace(dgd_name: str, global_ns: bool, expected: str) -> None:
    env = main_env(
        {"componentType": "worker", "globalDynamoNamespace": global_ns}, dgd_name=dgd_name
    )
    assert env["DYN_NAMESPACE"] == expected


@pytest.mark.parametrize(
    ("service", "backend", "expected"),
    [
        pytest.param(
            {
                "componentType": "worker",
                "volumeMounts": [{"name": "cache", "useAsCompilationCache": True}],
            },
            "vllm",
            "/root/.cache/vllm",
            id="vllm-default-path",
        ),
        pytest.param(
            {
                "componentType": "worker",
                "volumeMounts": [
                    {"name": "cache", "mountPoint": "/c", "useAsCompilationCache": True}
                ],
            },
            "vllm",
            "/c",
            id="vllm-explicit-path",
        ),
        pytest.param(
            {
                "componentType": "worker",
                "volumeMounts": [
                    {"name": "cache", "mountPoint": "/c", "useAsCompilationCache": True}
                ],
            },
            "sglang",
            None,
            id="not-vllm",
        ),
        pytest.param(
            {
                "componentType": "worker",
                "volumeMounts": [
                    {"name": "cache", "mountPoint": "/c", "useAsCompilationCache": True}
                ],
                "extraPodSpec": {"mainContainer": {"command": ["python3", "-m", "dynamo.vllm"]}},
            },
            None,
            "/c",
            id="vllm-detected-from-command",
        ),
    ],
)
def test_compilation_cache_env(
    service: dict[str, Any], backend: str | None, expected: str | None
) -> None:
    assert main_env(service, backend=backend).get("VLLM_CACHE_ROOT") == expected
