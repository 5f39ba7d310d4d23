"""DGD/DGDSA conversion v1alpha1 <-> v1beta1, rule by rule (dynamo-v1beta1.md §3).

Each `Case` is one rule: the v1alpha1 spec, the v1beta1 spec it becomes, and the sparse
v1alpha1 payload (`nvidia.com/dgd-spec`) the stored v1beta1 object must carry. Every case runs
both ways: up must give exactly that spec and payload, down (from that spec and payload) must
give back exactly the v1alpha1 spec. `Native` cases start from a v1beta1 object written without
any payload: down gives the v1alpha1 view and its hub payload, and up from that view gives the
original back. Asserting the payload keeps the whole-object save (the safety net for shapes
Dynamo's rules flatten) from hiding a rule that is not implemented.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests import peer_corpus
from tests.fixtures.catalog import graph_paths, v1beta1_graph_paths

from dgd_operator.api.constants import ANNOTATION_DGD_SPEC, ANNOTATION_DGD_STATUS
from dgd_operator.api.conversion import ConversionError, convert
from dgd_operator.api.v1beta1 import DynamoGraphDeployment

pytestmark = pytest.mark.unit

A1 = "nvidia.com/v1alpha1"
B1 = "nvidia.com/v1beta1"
IMG = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.5.0"
VECTORS = Path(__file__).with_name("conversion_vectors")
# Dynamo's marshalled mainContainer stub of an origin split with nothing in mainContainer.
STUB = {"extraPodSpec": {"mainContainer": {"name": "", "resources": {}}}}


def svc(**fields: Any) -> dict[str, Any]:
    """A v1alpha1 worker service with an image, plus `fields`."""
    return {"componentType": "worker", "extraPodSpec": {"mainContainer": {"image": IMG}}, **fields}


def comp(name: str = "W", main: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The v1beta1 component of `svc(...)`: `main` adds to the main container."""
    container = {"name": "main", "image": IMG, **(main or {})}
    return {
        "name": name,
        "type": "worker",
        "podTemplate": {"spec": {"containers": [container]}},
        **fields,
    }


def alpha(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "g", "namespace": "ns"}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": A1, "kind": "DynamoGraphDeployment", "metadata": metadata, "spec": spec}


def beta(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {**alpha(spec, annotations), "apiVersion": B1}


def payload(obj: dict[str, Any], key: str = ANNOTATION_DGD_SPEC) -> Any:
    text = obj["metadata"].get("annotations", {}).get(key)
    return None if text is None else json.loads(text)


def envelope(spec: dict[str, Any] | None) -> dict[str, str] | None:
    return None if spec is None else {ANNOTATION_DGD_SPEC: json.dumps({"version": 1, "spec": spec})}


@dataclass(frozen=True)
class Case:
    """One rule: v1alpha1 spec <-> v1beta1 spec + the alpha payload the v1beta1 object carries."""

    id: str
    alpha: dict[str, Any]
    beta: dict[str, Any]
    spoke: dict[str, Any] | None = None


def single(
    id: str, service: dict[str, Any], component: dict[str, Any], saved: dict[str, Any] | None = None
) -> Case:
    """A case with one service `W`; `saved` is its entry in the payload."""
    return Case(
        id,
        {"services": {"W": service}},
        {"components": [component]},
        None if saved is None else {"services": {"W": saved}},
    )


PROBE = {"httpGet": {"path": "/live", "port": 9090}, "periodSeconds": 10}
SIDECAR = {
    "image": "fe:1.5.0",
    "args": ["-m", "dynamo.frontend"],
    "envFromSecret": "hf",
    "envs": [{"name": "DYN_LOG", "value": "info"}],
}
GROVE_OVERRIDE = {
    "apiVersion": "grove.io/v1alpha1",
    "value": {"topologyConstraint": {"packDomain": "rack"}},
}

CASES = [
    # --- graph level (§3.2) ---------------------------------------------------------------------
    Case(
        "services-sorted-go-byte-order",
        {"services": {n: {"componentType": "frontend"} for n in ("b", "B", "a", "A")}},
        {"components": [{"name": n, "type": "frontend"} for n in ("A", "B", "a", "b")]},
    ),
    Case(
        "null-service-saved",
        {"services": {"A": {"componentType": "frontend"}, "B": None}},
        {"components": [{"name": "A", "type": "frontend"}]},
        {"services": {"B": None}},
    ),
    single(
        "serviceName-mismatch-saved",
        {"componentType": "frontend", "serviceName": "other"},
        {"name": "W", "type": "frontend"},
        {"serviceName": "other"},
    ),
    Case(
        "graph-fields-verbatim-and-renamed",
        {
            "envs": [{"name": "HF_HOME", "value": "/models"}],
            "backendFramework": "vllm",
            "annotations": {"a": "1"},
            "labels": {"l": "2"},
            "priorityClassName": "high",
            "providerOverride": GROVE_OVERRIDE,
            "restart": {"id": "r1", "strategy": {"type": "Sequential", "order": ["W"]}},
            "topologyConstraint": {"topologyProfile": "gb200", "packDomain": "zone"},
            "experimental": {"kvTransferPolicy": {"labelKey": "topo/rack", "domain": "rack"}},
            "services": {},
        },
        {
            "env": [{"name": "HF_HOME", "value": "/models"}],
            "backendFramework": "vllm",
            "annotations": {"a": "1"},
            "labels": {"l": "2"},
            "priorityClassName": "high",
            "providerOverride": GROVE_OVERRIDE,
            "restart": {"id": "r1", "strategy": {"type": "Sequential", "order": ["W"]}},
            "topologyConstraint": {"clusterTopologyName": "gb200", "packDomain": "zone"},
            "experimental": {"kvTransferPolicy": {"labelKey": "topo/rack", "domain": "rack"}},
            "components": [],
        },
    ),
    Case(
        "pvcs-saved-with-go-zero-size",
        {"pvcs": [{"name": "models"}, {"name": "cache", "create": True, "size": "10Gi"}]},
        {},
        {
            "pvcs": [
                {"name": "models", "size": "0"},
                {"name": "cache", "create": True, "size": "10Gi"},
            ]
        },
    ),
    # --- component mapping (§3.3) ---------------------------------------------------------------
    single("type-worker-prefill", svc(subComponentType="prefill"), {**comp(), "type": "prefill"}),
    single("type-worker-decode", svc(subComponentType="decode"), {**comp(), "type": "decode"}),
    single("type-verbatim", {**svc(), "componentType": "planner"}, {**comp(), "type": "planner"}),
    single(
        "type-unpromotable-sub-type-saved",
        svc(subComponentType="encode"),
        comp(),
        {"subComponentType": "encode"},
    ),
    single(
        "scalars-verbatim",
        svc(runtimeVersionOverride="1.5.0", globalDynamoNamespace=True, replicas=3, minAvailable=2),
        comp(
            runtimeVersionOverride="1.5.0", globalDynamoNamespace=True, replicas=3, minAvailable=2
        ),
    ),
    single(
        "multinode-verbatim",
        svc(multinode={"nodeCount": 4, "leader": {"providerOverride": GROVE_OVERRIDE}}),
        comp(multinode={"nodeCount": 4, "leader": {"providerOverride": GROVE_OVERRIDE}}),
    ),
    single(
        "modelRef-topology-epp-providerOverride-verbatim",
        {
            **svc(),
            "componentType": "epp",
            "modelRef": {"name": "Qwen/Qwen3-0.6B"},
            "topologyConstraint": {"packDomain": "rack"},
            "eppConfig": {"configMapRef": {"name": "epp", "key": "epp.yaml"}},
            "providerOverride": GROVE_OVERRIDE,
        },
        {
            **comp(),
            "type": "epp",
            "modelRef": {"name": "Qwen/Qwen3-0.6B"},
            "topologyConstraint": {"packDomain": "rack"},
            "eppConfig": {"configMapRef": {"name": "epp", "key": "epp.yaml"}},
            "providerOverride": GROVE_OVERRIDE,
        },
    ),
    single("sharedMemory-size", svc(sharedMemory={"size": "16Gi"}), comp(sharedMemorySize="16Gi")),
    single(
        "sharedMemory-disabled", svc(sharedMemory={"disabled": True}), comp(sharedMemorySize="0")
    ),
    single(
        "sharedMemory-disabled-with-size-saved",
        svc(sharedMemory={"disabled": True, "size": "1Gi"}),
        comp(sharedMemorySize="0"),
        {"sharedMemory": {"disabled": True, "size": "1Gi"}},
    ),
    single(
        "sharedMemory-enabled-without-size-saved",
        svc(sharedMemory={"disabled": False}),
        comp(),
        {"sharedMemory": {"disabled": False}},
    ),
    single(
        "scalingAdapter-enabled", svc(scalingAdapter={"enabled": True}), comp(scalingAdapter={})
    ),
    single(
        "scalingAdapter-disabled-saved",
        svc(scalingAdapter={"enabled": False}),
        comp(),
        {"scalingAdapter": {}},
    ),
    single(
        "volumeMounts-to-main",
        svc(volumeMounts=[{"name": "data", "mountPoint": "/data"}]),
        comp(main={"volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
        {"volumeMounts": [{"name": "data", "mountPoint": "/data"}], **STUB},
    ),
    single(
        "compilation-cache-mount",
        svc(volumeMounts=[{"name": "cc", "mountPoint": "/c", "useAsCompilationCache": True}]),
        comp(
            main={"volumeMounts": [{"name": "cc", "mountPath": "/c"}]},
            compilationCache={"pvcName": "cc", "mountPath": "/c"},
        ),
        {
            "volumeMounts": [{"name": "cc", "mountPoint": "/c", "useAsCompilationCache": True}],
            **STUB,
        },
    ),
    single(
        "compilation-cache-only-no-podTemplate",
        {
            "componentType": "worker",
            "volumeMounts": [{"name": "cc", "useAsCompilationCache": True}],
        },
        {"name": "W", "type": "worker", "compilationCache": {"pvcName": "cc"}},
    ),
    single(
        "several-cache-mounts-saved-whole",
        svc(
            volumeMounts=[
                {"name": "a", "mountPoint": "/a", "useAsCompilationCache": True},
                {"name": "b", "mountPoint": "/b", "useAsCompilationCache": True},
            ]
        ),
        comp(
            main={
                "volumeMounts": [{"name": "a", "mountPath": "/a"}, {"name": "b", "mountPath": "/b"}]
            },
            compilationCache={"pvcName": "a", "mountPath": "/a"},
        ),
        {
            "volumeMounts": [
                {"name": "a", "mountPoint": "/a", "useAsCompilationCache": True},
                {"name": "b", "mountPoint": "/b", "useAsCompilationCache": True},
            ],
            **STUB,
        },
    ),
    single(
        "resources-to-main",
        svc(
            resources={
                "requests": {"cpu": "2", "memory": "4Gi"},
                "limits": {"gpu": "1", "custom": {"rdma/ib": "1"}},
            }
        ),
        comp(
            main={
                "resources": {
                    "requests": {"cpu": "2", "memory": "4Gi"},
                    "limits": {"nvidia.com/gpu": "1", "rdma/ib": "1"},
                }
            }
        ),
        {
            "resources": {
                "requests": {"cpu": "2", "memory": "4Gi"},
                "limits": {"gpu": "1", "custom": {"rdma/ib": "1"}},
            },
            **STUB,
        },
    ),
    single(
        "resources-gpuType-is-the-key",
        svc(resources={"limits": {"gpu": "1", "gpuType": "gpu.intel.com/xe"}}),
        comp(main={"resources": {"limits": {"gpu.intel.com/xe": "1"}}}),
        {"resources": {"limits": {"gpu": "1", "gpuType": "gpu.intel.com/xe"}}, **STUB},
    ),
    single(
        "resources-unparseable-dropped-and-saved",
        svc(resources={"limits": {"cpu": "lots", "gpu": "1"}}),
        comp(main={"resources": {"limits": {"nvidia.com/gpu": "1"}}}),
        {"resources": {"limits": {"cpu": "lots", "gpu": "1"}}, **STUB},
    ),
    single(
        "resources-claims-verbatim",
        svc(resources={"claims": [{"name": "gpu"}]}),
        comp(main={"resources": {"claims": [{"name": "gpu"}]}}),
        {"resources": {"claims": [{"name": "gpu"}]}, **STUB},
    ),
    single(
        "envs-to-main-env",
        svc(envs=[{"name": "A", "value": "1"}]),
        comp(main={"env": [{"name": "A", "value": "1"}]}),
        {"envs": [{"name": "A", "value": "1"}], **STUB},
    ),
    single(
        "envs-merged-with-mainContainer-env-by-name",
        {
            "componentType": "worker",
            "envs": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "extraPodSpec": {
                "mainContainer": {
                    "image": IMG,
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                }
            },
        },
        comp(
            main={
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "3"},
                    {"name": "C", "value": "4"},
                ]
            }
        ),
        {
            "envs": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "extraPodSpec": {
                "mainContainer": {
                    "name": "",
                    "resources": {},
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                }
            },
        },
    ),
    single(
        "envFromSecret-to-main-envFrom",
        svc(envFromSecret="hf"),
        comp(main={"envFrom": [{"secretRef": {"name": "hf"}}]}),
        {"envFromSecret": "hf", **STUB},
    ),
    single(
        "probes-mainContainer-deep-merged-over-dedicated",
        {
            "componentType": "worker",
            "livenessProbe": PROBE,
            "readinessProbe": PROBE,
            "extraPodSpec": {
                "mainContainer": {"image": IMG, "livenessProbe": {"periodSeconds": 30}}
            },
        },
        comp(main={"livenessProbe": {**PROBE, "periodSeconds": 30}, "readinessProbe": PROBE}),
        {
            "livenessProbe": PROBE,
            "readinessProbe": PROBE,
            "extraPodSpec": {
                "mainContainer": {
                    "name": "",
                    "resources": {},
                    "livenessProbe": {"periodSeconds": 30},
                }
            },
        },
    ),
    single(
        "mainContainer-fields-to-main",
        {
            "componentType": "worker",
            "extraPodSpec": {
                "mainContainer": {
                    "image": IMG,
                    "command": ["python3"],
                    "args": ["-m", "dynamo.vllm"],
                    "workingDir": "/w",
                    "ports": [{"containerPort": 1}],
                    "startupProbe": PROBE,
                }
            },
        },
        comp(
            main={
                "command": ["python3"],
                "args": ["-m", "dynamo.vllm"],
                "workingDir": "/w",
                "ports": [{"containerPort": 1}],
                "startupProbe": PROBE,
            }
        ),
    ),
    single(
        "mainContainer-resources-win-key-wise",
        {
            "componentType": "worker",
            "resources": {"limits": {"gpu": "1", "cpu": "2"}},
            "extraPodSpec": {
                "mainContainer": {"image": IMG, "resources": {"limits": {"cpu": "4"}}}
            },
        },
        comp(main={"resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "4"}}}),
        {
            "resources": {"limits": {"gpu": "1", "cpu": "2"}},
            "extraPodSpec": {"mainContainer": {"name": "", "resources": {"limits": {"cpu": "4"}}}},
        },
    ),
    single(
        "mainContainer-mounts-first",
        {
            "componentType": "worker",
            "volumeMounts": [{"name": "d", "mountPoint": "/d"}],
            "extraPodSpec": {
                "mainContainer": {"image": IMG, "volumeMounts": [{"name": "m", "mountPath": "/m"}]}
            },
        },
        comp(
            main={
                "volumeMounts": [{"name": "m", "mountPath": "/m"}, {"name": "d", "mountPath": "/d"}]
            }
        ),
        {
            "volumeMounts": [{"name": "d", "mountPoint": "/d"}],
            "extraPodSpec": {
                "mainContainer": {
                    "name": "",
                    "resources": {},
                    "volumeMounts": [{"name": "m", "mountPath": "/m"}],
                }
            },
        },
    ),
    single(
        "extraPodSpec-pod-fields-and-sidecars-after-main",
        {
            "componentType": "worker",
            "extraPodSpec": {
                "nodeSelector": {"gpu": "h100"},
                "containers": [{"name": "side", "image": "s"}],
                "mainContainer": {"image": IMG},
            },
        },
        {
            "name": "W",
            "type": "worker",
            "podTemplate": {
                "spec": {
                    "nodeSelector": {"gpu": "h100"},
                    "containers": [{"name": "main", "image": IMG}, {"name": "side", "image": "s"}],
                }
            },
        },
    ),
    single(
        "extraPodMetadata-to-podTemplate-metadata",
        svc(extraPodMetadata={"annotations": {"a": "b"}, "labels": {"c": "d"}}),
        {
            **comp(),
            "podTemplate": {
                **comp()["podTemplate"],
                "metadata": {"annotations": {"a": "b"}, "labels": {"c": "d"}},
            },
        },
    ),
    single(
        "extraPodMetadata-empty-saved", svc(extraPodMetadata={}), comp(), {"extraPodMetadata": {}}
    ),
    single(
        "service-annotations-labels-saved",
        svc(annotations={"nvidia.com/deployment-strategy": "Recreate"}, labels={"team": "a"}),
        comp(),
        {"annotations": {"nvidia.com/deployment-strategy": "Recreate"}, "labels": {"team": "a"}},
    ),
    single(
        "dynamoNamespace-saved",
        svc(dynamoNamespace="legacy"),
        comp(),
        {"dynamoNamespace": "legacy"},
    ),
    single(
        "autoscaling-saved",
        svc(autoscaling={"enabled": True, "maxReplicas": 4}),
        comp(),
        {"autoscaling": {"enabled": True, "maxReplicas": 4}},
    ),
    single(
        "ingress-saved",
        svc(ingress={"enabled": True, "host": "h"}),
        comp(),
        {"ingress": {"enabled": True, "host": "h"}},
    ),
    single(
        "frontendSidecar-container-appended",
        svc(frontendSidecar=SIDECAR),
        {
            **comp(),
            "frontendSidecar": "sidecar-frontend",
            "podTemplate": {
                "spec": {
                    "containers": [
                        {"name": "main", "image": IMG},
                        {
                            "name": "sidecar-frontend",
                            "image": "fe:1.5.0",
                            "args": ["-m", "dynamo.frontend"],
                            "env": [{"name": "DYN_LOG", "value": "info"}],
                            "envFrom": [{"secretRef": {"name": "hf"}}],
                        },
                    ]
                }
            },
        },
        {"frontendSidecar": SIDECAR},
    ),
    single(
        "gpuMemoryService-enabled-mode-capitalised",
        svc(
            gpuMemoryService={
                "enabled": True,
                "mode": "intraPod",
                "deviceClassName": "gpu.nvidia.com",
            }
        ),
        comp(
            experimental={
                "gpuMemoryService": {"mode": "IntraPod", "deviceClassName": "gpu.nvidia.com"}
            }
        ),
    ),
    single(
        "gpuMemoryService-interPod",
        svc(gpuMemoryService={"enabled": True, "mode": "interPod"}),
        comp(experimental={"gpuMemoryService": {"mode": "InterPod"}}),
    ),
    single(
        "gpuMemoryService-disabled-saved",
        svc(gpuMemoryService={"enabled": False, "mode": "intraPod"}),
        comp(),
        {"gpuMemoryService": {"enabled": False, "mode": "intraPod"}},
    ),
    single(
        "failover-enabled",
        svc(failover={"enabled": True, "mode": "interPod", "numShadows": 1}),
        comp(experimental={"failover": {"mode": "InterPod", "numShadows": 1}}),
    ),
    single(
        "failover-disabled-saved",
        svc(failover={"enabled": False}),
        comp(),
        {"failover": {"enabled": False}},
    ),
    single(
        "checkpoint-always-projected",
        svc(checkpoint={"enabled": False, "startupPolicy": "Immediate"}),
        comp(experimental={"checkpoint": {"enabled": False, "startupPolicy": "Immediate"}}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_up(case: Case) -> None:
    out = convert(alpha(case.alpha), "v1beta1")
    assert out["apiVersion"] == B1
    assert out["spec"] == case.beta
    got = payload(out)
    assert got == (None if case.spoke is None else {"version": 1, "spec": case.spoke})


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_down(case: Case) -> None:
    out = convert(beta(case.beta, envelope(case.spoke)), "v1alpha1")
    assert out["apiVersion"] == A1
    assert out["spec"] == case.alpha
    hub = payload(out)
    if hub is not None:  # without an alpha payload the object counts as v1beta1-born: markers only
        assert case.spoke is None
        assert all(set(entry) == {"name"} for entry in hub["spec"]["components"])


@dataclass(frozen=True)
class Native:
    """A v1beta1 spec written without payload, its v1alpha1 view and the view's hub payload."""

    id: str
    beta: dict[str, Any]
    alpha: dict[str, Any]
    hub: dict[str, Any] | None


NATIVE = [
    Native(
        "envFrom-stays-in-mainContainer",
        {"components": [comp(main={"envFrom": [{"secretRef": {"name": "hf"}}]})]},
        {
            "services": {
                "W": {
                    "componentType": "worker",
                    "extraPodSpec": {
                        "mainContainer": {"image": IMG, "envFrom": [{"secretRef": {"name": "hf"}}]}
                    },
                }
            }
        },
        {"components": [{"name": "W"}]},
    ),
    Native(
        "main-fields-to-dedicated-fields",
        {
            "components": [
                comp(
                    main={
                        "env": [{"name": "A", "value": "1"}],
                        "resources": {"limits": {"nvidia.com/gpu": "1", "gpu.intel.com/xe": "2"}},
                        "volumeMounts": [{"name": "d", "mountPath": "/d"}],
                        "livenessProbe": PROBE,
                    },
                    sharedMemorySize="0",
                )
            ]
        },
        {
            "services": {
                "W": svc(
                    envs=[{"name": "A", "value": "1"}],
                    resources={"limits": {"gpu": "1", "custom": {"gpu.intel.com/xe": "2"}}},
                    volumeMounts=[{"name": "d", "mountPoint": "/d"}],
                    livenessProbe=PROBE,
                    sharedMemory={"disabled": True},
                )
            }
        },
        {"components": [{"name": "W"}]},
    ),
    Native(
        "unsorted-order-kept",
        {"components": [comp("b"), comp("a")]},
        {"services": {"b": svc(), "a": svc()}},
        {"components": [{"name": "b"}, {"name": "a"}]},
    ),
    Native(
        # A bare name would also mean "had a pod template": such components are listed whole.
        "unsorted-order-without-podTemplates",
        {"components": [{"name": "b", "type": "frontend"}, {"name": "a", "type": "frontend"}]},
        {"services": {"b": {"componentType": "frontend"}, "a": {"componentType": "frontend"}}},
        {"components": [{"name": "b", "type": "frontend"}, {"name": "a", "type": "frontend"}]},
    ),
    Native(
        "no-podTemplate-no-payload",
        {"components": [{"name": "W", "type": "frontend", "replicas": 1}]},
        {"services": {"W": {"componentType": "frontend", "replicas": 1}}},
        None,
    ),
    Native(
        "frontendSidecar-reference-in-hub-payload",
        {
            "components": [
                {
                    **comp(),
                    "frontendSidecar": "sidecar-frontend",
                    "podTemplate": {
                        "spec": {
                            "containers": [
                                {"name": "main", "image": IMG},
                                {"name": "sidecar-frontend", "image": "fe"},
                            ]
                        }
                    },
                }
            ]
        },
        {
            "services": {
                "W": {
                    "componentType": "worker",
                    "extraPodSpec": {
                        "containers": [{"name": "sidecar-frontend", "image": "fe"}],
                        "mainContainer": {"image": IMG},
                    },
                }
            }
        },
        {"components": [{"name": "W", "frontendSidecar": "sidecar-frontend"}]},
    ),
    Native(
        "grove-in-hub-payload",
        {"components": [comp(experimental={"grove": {"forceScalingGroup": True}})]},
        {"services": {"W": svc()}},
        {"components": [{"name": "W", "experimental": {"grove": {"forceScalingGroup": True}}}]},
    ),
    Native(
        "mount-with-readOnly-stays-in-mainContainer",
        {
            "components": [
                comp(main={"volumeMounts": [{"name": "d", "mountPath": "/d", "readOnly": True}]})
            ]
        },
        {
            "services": {
                "W": {
                    "componentType": "worker",
                    "extraPodSpec": {
                        "mainContainer": {
                            "image": IMG,
                            "volumeMounts": [{"name": "d", "mountPath": "/d", "readOnly": True}],
                        }
                    },
                }
            }
        },
        {"components": [{"name": "W"}]},
    ),
    Native(
        "compilationCache-without-its-mount-saved-whole",
        {"components": [comp(compilationCache={"pvcName": "cc", "mountPath": "/c"})]},
        {
            "services": {
                "W": svc(
                    volumeMounts=[{"name": "cc", "mountPoint": "/c", "useAsCompilationCache": True}]
                )
            }
        },
        {"components": [comp(compilationCache={"pvcName": "cc", "mountPath": "/c"})]},
    ),
]


@pytest.mark.parametrize("case", NATIVE, ids=[c.id for c in NATIVE])
def test_native_down(case: Native) -> None:
    out = convert(beta(case.beta), "v1alpha1")
    assert out["spec"] == case.alpha
    assert payload(out) == (None if case.hub is None else {"version": 1, "spec": case.hub})


@pytest.mark.parametrize("case", NATIVE, ids=[c.id for c in NATIVE])
def test_native_up(case: Native) -> None:
    out = convert(alpha(case.alpha, envelope(case.hub)), "v1beta1")
    assert out["spec"] == case.beta
    assert "annotations" not in out["metadata"]  # a v1beta1-born object gets no alpha payload


# --- origin splits (§3.4) ----------------------------------------------------------------------


def _stored(service: dict[str, Any]) -> dict[str, Any]:
    return convert(alpha({"services": {"W": service}}), "v1beta1")


def _main(obj: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = obj["spec"]["components"][0]["podTemplate"]["spec"]["containers"][0]
    return container


@pytest.mark.parametrize(
    ("field", "new_value", "expected", "gone"),
    [
        ("env", [{"name": "A", "value": "2"}], {"envs": [{"name": "A", "value": "2"}]}, None),
        (
            "envFrom",
            [{"secretRef": {"name": "other"}}],
            {
                "extraPodSpec": {
                    "mainContainer": {"image": IMG, "envFrom": [{"secretRef": {"name": "other"}}]}
                }
            },
            "envFromSecret",
        ),
        (
            "resources",
            {"limits": {"nvidia.com/gpu": "2"}},
            {"resources": {"limits": {"gpu": "2"}}},
            None,
        ),
        ("livenessProbe", {"periodSeconds": 5}, {"livenessProbe": {"periodSeconds": 5}}, None),
    ],
    ids=["env", "envFrom", "resources", "livenessProbe"],
)
def test_live_change_wins_over_origin(
    field: str, new_value: Any, expected: dict[str, Any], gone: str | None
) -> None:
    stored = _stored(
        svc(
            envs=[{"name": "A", "value": "1"}],
            envFromSecret="hf",
            resources={"limits": {"gpu": "1"}},
            livenessProbe=PROBE,
        )
    )
    _main(stored)[field] = new_value  # edited through v1beta1
    service = convert(stored, "v1alpha1")["spec"]["services"]["W"]
    for key, value in expected.items():
        assert service[key] == value
    if gone is not None:
        assert gone not in service


def test_origin_split_restores_dedicated_and_main_container_parts() -> None:
    service = {
        "componentType": "worker",
        "envs": [{"name": "A", "value": "1"}],
        "extraPodSpec": {"mainContainer": {"image": IMG, "env": [{"name": "B", "value": "2"}]}},
    }
    stored = _stored(service)
    assert _main(stored)["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert convert(stored, "v1alpha1")["spec"]["services"]["W"] == service


def test_frontend_sidecar_with_existing_container_round_trips_whole() -> None:
    existing = {"name": "sidecar-frontend", "image": "mine"}
    service = {
        "componentType": "worker",
        "frontendSidecar": {"image": "fe"},
        "extraPodSpec": {"mainContainer": {"image": IMG}, "containers": [existing]},
    }
    stored = _stored(service)
    component = stored["spec"]["components"][0]
    assert component["frontendSidecar"] == "sidecar-frontend"
    assert component["podTemplate"]["spec"]["containers"] == [
        {"name": "main", "image": IMG},
        existing,
    ]
    # Dynamo's rules would fold `mine` into frontendSidecar on the way down: saved whole instead.
    assert payload(stored)["spec"]["services"]["W"] == service
    assert convert(stored, "v1alpha1")["spec"]["services"]["W"] == service


def test_v1beta1_edit_of_a_v1alpha1_born_object_survives_a_v1alpha1_read_and_write() -> None:
    stored = _stored(svc(envFromSecret="hf", dynamoNamespace="legacy"))
    component = stored["spec"]["components"][0]
    component["sharedMemorySize"] = 0  # a YAML number: alpha's view can only say disabled
    component["experimental"] = {"grove": {"forceScalingGroup": True}}
    view = convert(stored, "v1alpha1")
    assert view["spec"]["services"]["W"]["envFromSecret"] == "hf"  # origin split still used
    back = convert(view, "v1beta1")
    assert back["spec"] == stored["spec"]
    assert payload(back)["spec"]["services"]["W"]["dynamoNamespace"] == "legacy"


def test_an_edit_through_the_v1alpha1_view_wins_and_beta_only_leaves_stay() -> None:
    native = beta({"components": [comp(experimental={"grove": {"forceScalingGroup": True}})]})
    view = convert(native, "v1alpha1")
    view["spec"]["services"]["W"]["replicas"] = 4
    back = convert(view, "v1beta1")
    assert back["spec"] == {
        "components": [comp(replicas=4, experimental={"grove": {"forceScalingGroup": True}})]
    }


def test_unknown_service_field_survives_round_trip() -> None:
    service = svc(pvc={"name": "model-cache", "mountPoint": "/m"})
    stored = _stored(service)
    assert "pvc" not in stored["spec"]["components"][0]
    assert convert(stored, "v1alpha1")["spec"]["services"]["W"] == service


def test_hub_payload_order_with_new_names_appended_sorted() -> None:
    hub = {"components": [{"name": "z"}, {"name": "b"}]}
    view = alpha({"services": {"b": svc(), "z": svc(), "c": svc(), "a": svc()}}, envelope(hub))
    names = [c["name"] for c in convert(view, "v1beta1")["spec"]["components"]]
    assert names == ["z", "b", "a", "c"]


def test_duplicate_component_names_are_refused_on_the_way_down() -> None:
    with pytest.raises(ConversionError, match=r"spec.components\[1\].name: duplicate"):
        convert(beta({"components": [comp("W"), comp("W")]}), "v1alpha1")


def test_unknown_graph_field_is_an_error_naming_its_path() -> None:
    with pytest.raises(ConversionError, match=r"^spec.bogus: unknown field"):
        convert(alpha({"services": {}, "bogus": 1}), "v1beta1")


# --- payload formats --------------------------------------------------------------------------


def test_bare_legacy_spec_payload_is_read() -> None:
    stored = beta(
        {"components": [{"name": "W", "type": "frontend"}]},
        {ANNOTATION_DGD_SPEC: json.dumps({"services": {"W": {"dynamoNamespace": "old"}}})},
    )
    assert convert(stored, "v1alpha1")["spec"]["services"]["W"]["dynamoNamespace"] == "old"


def test_unreadable_spec_payload_is_ignored_and_dropped() -> None:
    stored = beta(
        {"components": [{"name": "W", "type": "frontend"}]}, {ANNOTATION_DGD_SPEC: "{not json"}
    )
    out = convert(stored, "v1alpha1")
    assert out["spec"] == {"services": {"W": {"componentType": "frontend"}}}
    assert "annotations" not in out["metadata"]


def test_unreadable_status_payload_fails() -> None:
    stored = beta({"components": []}, {ANNOTATION_DGD_STATUS: "nope"})
    with pytest.raises(ConversionError, match=r"nvidia\.com/dgd-status"):
        convert(stored, "v1alpha1")


def test_other_annotations_are_kept() -> None:
    view = alpha({"services": {}}, {"nvidia.com/current-worker-hash": "abc", "x": "y"})
    out = convert(view, "v1beta1")
    assert out["metadata"]["annotations"] == {"nvidia.com/current-worker-hash": "abc", "x": "y"}


# --- worked examples (§3.9) -------------------------------------------------------------------


def _vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((VECTORS / f"{name}.yaml").read_text())
    return data


@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_worked_example_gives_the_stored_v1beta1(name: str) -> None:
    vector = _vector(name)
    stored = convert(vector["v1alpha1"], "v1beta1")
    annotations = stored["metadata"].pop("annotations")
    assert json.loads(annotations.pop(ANNOTATION_DGD_SPEC)) == vector["payload"]
    assert annotations == {}
    assert stored == vector["v1beta1"]
    DynamoGraphDeployment.model_validate(stored)


@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_worked_example_reads_back_exactly(name: str) -> None:
    vector = _vector(name)
    stored = copy.deepcopy(vector["v1beta1"])
    stored["metadata"]["annotations"] = {ANNOTATION_DGD_SPEC: json.dumps(vector["payload"])}
    assert convert(stored, "v1alpha1") == vector["v1alpha1"]


def test_worked_example_a_created_natively() -> None:
    vector = _vector("a")
    view = convert(vector["v1beta1"], "v1alpha1")
    assert view["spec"]["services"] == vector["native_v1alpha1_services"]
    assert payload(view) == vector["native_hub_payload"]
    assert convert(view, "v1beta1") == vector["v1beta1"]


# --- status (§3.5) ----------------------------------------------------------------------------

STATUS_ALPHA = {
    "observedGeneration": 3,
    "state": "successful",
    "conditions": [{"type": "Ready", "status": "True", "reason": "all_resources_are_ready"}],
    "restart": {"observedID": "r1", "phase": "Completed"},
    "checkpoints": {"W": {"checkpointName": "c", "ready": True}},
    "placement": {"score": 1, "state": "Reported"},
    "rollingUpdate": {"phase": "Completed", "updatedServices": ["W"]},
    "services": {
        "W": {
            "componentKind": "Deployment",
            "componentName": "g-w-abc",
            "componentNames": ["g-w-old", "g-w-abc"],
            "runtimeNamespace": "ns-g-abc",
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
        "F": {
            "componentKind": "Deployment",
            "componentName": "g-f",
            "replicas": 1,
            "updatedReplicas": 1,
        },
        "P": {
            "componentKind": "Deployment",
            "componentNames": ["g-p"],
            "replicas": 1,
            "updatedReplicas": 1,
        },
        "M": {
            "componentKind": "Deployment",
            "componentName": "x",
            "componentNames": ["g-m"],
            "replicas": 1,
            "updatedReplicas": 1,
        },
    },
}


def test_status_up_renames_and_saves_what_v1beta1_cannot_say() -> None:
    stored = convert({**alpha({"services": {}}), "status": STATUS_ALPHA}, "v1beta1")
    status = stored["status"]
    assert status["rollingUpdate"] == {"phase": "Completed", "updatedComponents": ["W"]}
    assert status["components"]["W"]["componentNames"] == ["g-w-old", "g-w-abc"]
    assert "componentName" not in status["components"]["W"]
    assert status["components"]["F"]["componentNames"] == ["g-f"]
    assert status["placement"] == STATUS_ALPHA["placement"]
    saved = payload(stored, ANNOTATION_DGD_STATUS)
    zero = {"componentKind": "", "replicas": 0, "updatedReplicas": 0}
    assert saved == {
        "state": "",
        "services": {
            "F": {**zero, "componentName": "g-f"},
            "P": {**zero, "componentName": "", "componentNames": ["g-p"]},
            "M": {**zero, "componentName": "x", "componentNames": ["g-m"]},
        },
    }
    assert convert(stored, "v1alpha1")["status"] == STATUS_ALPHA


def test_status_down_names_the_last_component_when_nothing_was_saved() -> None:
    stored = beta({"components": []})
    stored["status"] = {
        "state": "pending",
        "components": {
            "W": {
                "componentKind": "Deployment",
                "componentNames": ["a", "b"],
                "replicas": 1,
                "updatedReplicas": 0,
            }
        },
    }
    view = convert(stored, "v1alpha1")
    assert view["status"]["services"]["W"]["componentName"] == "b"
    assert convert(view, "v1beta1") == stored


# --- DGDSA, other kinds, entry point ----------------------------------------------------------


def test_scaling_adapter_renames_the_component_reference_both_ways() -> None:
    adapter = {
        "apiVersion": A1,
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": "g-w"},
        "spec": {"replicas": 2, "dgdRef": {"name": "g", "serviceName": "W"}},
        "status": {"replicas": 2, "selector": "a=b"},
    }
    up = convert(adapter, "nvidia.com/v1beta1")
    assert up["apiVersion"] == B1
    assert up["spec"]["dgdRef"] == {"name": "g", "componentName": "W"}
    assert up["status"] == adapter["status"]
    assert "annotations" not in up["metadata"]
    assert convert(up, "v1alpha1") == adapter


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}},
        {"apiVersion": A1, "kind": "DynamoModel", "metadata": {"name": "m"}, "spec": {}},
        alpha({"services": {"W": svc()}}),
    ],
    ids=["configmap", "other-nvidia-kind", "already-at-target"],
)
def test_objects_not_to_convert_come_back_unchanged(obj: dict[str, Any]) -> None:
    assert convert(obj, "v1alpha1") == obj


def test_conversion_never_mutates_its_input() -> None:
    vector = _vector("b")
    source = copy.deepcopy(vector["v1alpha1"])
    stored = convert(source, "v1beta1")
    assert source == vector["v1alpha1"]
    frozen = copy.deepcopy(stored)
    convert(stored, "v1alpha1")
    assert stored == frozen


def _documents_to_convert() -> list[dict[str, Any]]:
    """Every case of this file in both versions, our fixture graphs and their v1beta1 twins,
    and the peer corpus, each also with a status."""
    docs: list[dict[str, Any]] = []
    for case in CASES:
        docs += [alpha(case.alpha), beta(case.beta, envelope(case.spoke))]
    paths = graph_paths() + v1beta1_graph_paths()
    for folder, version in ((peer_corpus.V1ALPHA1_DIR, A1), (peer_corpus.V1BETA1_DIR, B1)):
        paths += peer_corpus.example_files(folder, version)
    for path in paths:
        docs += peer_corpus.dgd_documents(path)
    for name in ("a", "b", "c"):
        docs += [_vector(name)["v1alpha1"], _vector(name)["v1beta1"]]
    for doc in list(docs):
        services = {"W": {"componentName": "w-1", "componentNames": ["w-0", "w-1"]}}
        components = {"W": {"componentNames": ["w-0"]}}
        status = {"services": services} if doc["apiVersion"] == A1 else {"components": components}
        docs.append({**doc, "status": {"state": "pending", **status}})
    return docs


def test_no_conversion_changes_or_shares_its_input() -> None:
    """Conversion copies only the envelope up front (it copies the result whole at the end):
    the input must come out unchanged, and no dict or list of it may be in the result."""
    for doc in _documents_to_convert():
        frozen = copy.deepcopy(doc)
        for target in ("v1alpha1", "v1beta1"):
            out = convert(doc, target)
            assert doc == frozen, (doc["metadata"], target)
            shared = _containers(doc) & _containers(out)
            assert not shared, (doc["metadata"], target)


def _containers(value: Any) -> set[int]:
    if isinstance(value, dict):
        return {id(value)}.union(*(_containers(v) for v in value.values()))
    if isinstance(value, list):
        return {id(value)}.union(*(_containers(v) for v in value))
    return set()


def test_unknown_target_version_is_refused() -> None:
    with pytest.raises(ConversionError, match="v1alpha2"):
        convert(alpha({}), "v1alpha2")


# --- the peer corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", peer_corpus.params(peer_corpus.V1ALPHA1_DIR, A1))
def test_v1alpha1_example_round_trips_and_validates(path: Path | None) -> None:
    if path is None:
        peer_corpus.missing(peer_corpus.V1ALPHA1_DIR)
        return
    for document in peer_corpus.dgd_documents(path):
        stored = convert(document, "v1beta1")
        DynamoGraphDeployment.model_validate(stored)
        assert convert(stored, "v1alpha1") == document


def test_v1alpha1_corpus_has_twenty_files() -> None:
    files = peer_corpus.example_files(peer_corpus.V1ALPHA1_DIR, A1)
    if not files:
        peer_corpus.missing(peer_corpus.V1ALPHA1_DIR)
    assert len(files) == 20


@pytest.mark.parametrize("path", peer_corpus.params(peer_corpus.V1BETA1_DIR, B1))
def test_v1beta1_example_round_trips(path: Path | None) -> None:
    if path is None:
        peer_corpus.missing(peer_corpus.V1BETA1_DIR)
        return
    for document in peer_corpus.dgd_documents(path):
        view = convert(document, "v1alpha1")
        assert convert(view, "v1beta1") == document


# --- unusual shapes on every example: whatever Dynamo's rules flatten must still round-trip ---


def _main_container(service: dict[str, Any]) -> dict[str, Any]:
    main: dict[str, Any] = service.setdefault("extraPodSpec", {}).setdefault("mainContainer", {})
    return main


def _add_frontend_sidecar(component: dict[str, Any], name: str) -> None:
    component["podTemplate"]["spec"]["containers"].append({"name": name, "image": "f"})
    component["frontendSidecar"] = name


ALPHA_SHAPES: dict[str, Any] = {
    "scalingAdapter-empty": lambda s: s.update(scalingAdapter={}),
    "sharedMemory-zero-size": lambda s: s.update(sharedMemory={"disabled": False, "size": "0"}),
    "sharedMemory-number": lambda s: s.update(sharedMemory={"size": 10}),
    "envs-empty": lambda s: s.update(envs=[]),
    "annotations-empty": lambda s: s.update(annotations={}),
    "extraPodSpec-empty": lambda s: s.update(extraPodSpec={}),
    "extraPodMetadata-empty-labels": lambda s: s.update(extraPodMetadata={"labels": {}}),
    "componentType-prefill": lambda s: s.update(componentType="prefill"),
    "componentType-empty": lambda s: s.update(componentType=""),
    "serviceName-equal-key": lambda s: s.update(serviceName="Frontend"),
    "gms-beta-mode-spelling": lambda s: s.update(
        gpuMemoryService={"enabled": True, "mode": "IntraPod"}
    ),
    "frontendSidecar-image-only": lambda s: s.update(frontendSidecar={"image": "x"}),
    "cache-mount-after-empty-mount": lambda s: s.update(
        volumeMounts=[
            {"name": "a", "mountPoint": ""},
            {"name": "b", "useAsCompilationCache": True, "mountPoint": "/b"},
        ]
    ),
    "gpu-number": lambda s: s.update(resources={"limits": {"gpu": 1}}),
    "requests-empty": lambda s: s.update(resources={"limits": {"memory": "1Gi"}, "requests": {}}),
    "mainContainer-named-main": lambda s: _main_container(s).update(name="main"),
    "mainContainer-env": lambda s: _main_container(s).update(env=[{"name": "Q", "value": "1"}]),
    "mainContainer-resources": lambda s: _main_container(s).update(
        resources={"limits": {"cpu": "1"}}
    ),
    "exec-liveness-probe": lambda s: s.update(livenessProbe={"exec": {"command": ["true"]}}),
    "multinode-empty": lambda s: s.update(multinode={}),
    "failover-without-mode": lambda s: s.update(failover={"enabled": True}),
}
BETA_SHAPES: dict[str, Any] = {
    "grove": lambda c: c.update(experimental={"grove": {"forceScalingGroup": True}}),
    "sharedMemorySize-number": lambda c: c.update(sharedMemorySize=0),
    "podTemplate-empty": lambda c: c.update(podTemplate={}),
    "podTemplate-metadata-name": lambda c: c["podTemplate"].update(metadata={"name": "x"}),
    "sidecar-before-main": lambda c: c["podTemplate"]["spec"]["containers"].insert(
        0, {"name": "side", "image": "s"}
    ),
    "compilationCache-without-mount": lambda c: c.update(compilationCache={"pvcName": "cc"}),
    "frontendSidecar-other-name": lambda c: _add_frontend_sidecar(c, "fe"),
    "scalingAdapter": lambda c: c.update(scalingAdapter={}),
    "gms-unknown-mode": lambda c: c.update(experimental={"gpuMemoryService": {"mode": "Weird"}}),
    "type-absent": lambda c: c.pop("type", None),
    "cpu-number": lambda c: c["podTemplate"]["spec"]["containers"][0].update(
        resources={"limits": {"cpu": 3}}
    ),
}


@pytest.mark.parametrize("shape", list(ALPHA_SHAPES))
def test_unusual_v1alpha1_shapes_round_trip_on_every_example(shape: str) -> None:
    files = peer_corpus.example_files(peer_corpus.V1ALPHA1_DIR, A1)
    if not files:
        peer_corpus.missing(peer_corpus.V1ALPHA1_DIR)
    for path in files:
        for document in peer_corpus.dgd_documents(path):
            ALPHA_SHAPES[shape](
                document["spec"]["services"][sorted(document["spec"]["services"])[-1]]
            )
            stored = convert(document, "v1beta1")
            view = convert(stored, "v1alpha1")
            assert view == document, path.name
            assert convert(view, "v1beta1") == stored, path.name


@pytest.mark.parametrize("shape", list(BETA_SHAPES))
def test_unusual_v1beta1_shapes_round_trip_on_every_example(shape: str) -> None:
    files = peer_corpus.example_files(peer_corpus.V1BETA1_DIR, B1)
    if not files:
        peer_corpus.missing(peer_corpus.V1BETA1_DIR)
    for path in files:
        for document in peer_corpus.dgd_documents(path):
            BETA_SHAPES[shape](document["spec"]["components"][-1])
            view = convert(document, "v1alpha1")
            back = convert(view, "v1beta1")
            assert back == document, path.name
            assert convert(back, "v1alpha1") == view, path.name
