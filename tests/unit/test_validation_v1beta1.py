"""`validate_dgd` on nvidia.com/v1beta1 documents: the strict model, Dynamo's offline create-time
webhook rules (exact messages at v1beta1 paths), the v1alpha1 rules on the down-converted view
with paths mapped back, the not-acted-on warnings in both spellings, and the CLI."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from tests import peer_corpus
from tests.fixtures.catalog import GRAPHS_DIR, dgd_documents, v1beta1_graph_paths

from dgd_operator.api.conversion import convert
from dgd_operator.api.validation import not_acted_on, validate_dgd
from dgd_operator.api.validation.paths import OTHER_SPELLING_NOTE, to_v1alpha1_path, to_v1beta1_path
from dgd_operator.cli import main

pytestmark = pytest.mark.unit

Doc = dict[str, Any]
IMAGE = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.5.0"
GPU = "nvidia.com/gpu"


def graph() -> Doc:
    """A valid v1beta1 graph: a frontend and one GPU worker, images with a version tag."""
    return {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "demo"},
        "spec": {
            "backendFramework": "vllm",
            "components": [
                {
                    "name": "Frontend",
                    "type": "frontend",
                    "podTemplate": {"spec": {"containers": [{"name": "main", "image": IMAGE}]}},
                },
                {
                    "name": "worker",
                    "type": "worker",
                    "replicas": 2,
                    "podTemplate": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "main",
                                    "image": IMAGE,
                                    "command": ["python3", "-m", "dynamo.vllm"],
                                    "args": ["--model", "Qwen/Qwen3-0.6B"],
                                    "resources": {"limits": {GPU: "1"}},
                                }
                            ]
                        }
                    },
                },
            ],
        },
    }


def _worker(doc: Doc) -> Doc:
    component: Doc = doc["spec"]["components"][1]
    return component


def _main(doc: Doc) -> Doc:
    container: Doc = _worker(doc)["podTemplate"]["spec"]["containers"][0]
    return container


def _set(change: Callable[[Doc], Any]) -> Doc:
    doc = graph()
    change(doc)
    return doc


def _epp(**fields: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        component = {
            "name": "epp",
            "type": "epp",
            "podTemplate": {"spec": {"containers": [{"name": "main", "image": IMAGE}]}},
            **fields,
        }
        doc["spec"]["components"].append(component)

    return change


def _sidecar(doc: Doc, name: str) -> None:
    _worker(doc)["frontendSidecar"] = name
    _worker(doc)["podTemplate"]["spec"]["containers"].append(
        {"name": "sidecar-frontend", "image": IMAGE}
    )


def _experimental(**fields: Any) -> Callable[[Doc], None]:
    return lambda doc: _worker(doc).update(experimental=fields)


W = "spec.components[1]"
MAIN = f"{W}.podTemplate.spec.containers[0]"
DISCOVERY = "metadata.annotations[nvidia.com/dynamo-kube-discovery-mode]"

# (id, document, path, exact message)
ERRORS: list[tuple[str, Doc, str, str]] = [
    (
        "no-main-container",
        _set(lambda d: _main(d).update(name="engine")),
        f"{W}.podTemplate.spec.containers",
        "needs a container named 'main' with an image",
    ),
    (
        "no-pod-template",
        _set(lambda d: _worker(d).pop("podTemplate")),
        f"{W}.podTemplate.spec.containers",
        "needs a container named 'main' with an image",
    ),
    ("main-image-empty", _set(lambda d: _main(d).update(image="")), f"{MAIN}.image", "required"),
    (
        "no-components",
        _set(lambda d: d["spec"].update(components=[])),
        "spec.components",
        "must have at least one component",
    ),
    (
        "grove-update-strategy",
        _set(
            lambda d: d["metadata"].update(
                annotations={"nvidia.com/grove-update-strategy": "Rolling"}
            )
        ),
        "metadata.annotations[nvidia.com/grove-update-strategy]",
        "must be 'RollingRecreate' or 'OnDelete', got 'Rolling'",
    ),
    (
        "workload-provider",
        _set(lambda d: d["metadata"].update(annotations={"nvidia.com/workload-provider": "lws"})),
        "metadata.annotations[nvidia.com/workload-provider]",
        "must be 'component' or 'grove', got 'lws'",
    ),
    (
        "shared-memory-negative",
        _set(lambda d: _worker(d).update(sharedMemorySize="-1Gi")),
        f"{W}.sharedMemorySize",
        "must not be negative, got -1Gi",
    ),
    (
        "epp-multinode",
        _set(_epp(multinode={"nodeCount": 2}, eppConfig={"config": {}})),
        "spec.components[2].multinode",
        "an epp component cannot be multinode",
    ),
    (
        "epp-replicas",
        _set(_epp(replicas=2, eppConfig={"config": {}})),
        "spec.components[2].replicas",
        "an epp component must have exactly 1 replica, got integer 2",
    ),
    (
        "epp-without-config",
        _set(_epp()),
        "spec.components[2].eppConfig",
        "required for a component of type epp",
    ),
    (
        "epp-config-map-without-name",
        _set(_epp(eppConfig={"configMapRef": {"key": "epp.yaml"}})),
        "spec.components[2].eppConfig.configMapRef.name",
        "required",
    ),
    (
        "frontend-sidecar-empty",
        _set(lambda d: _sidecar(d, "")),
        f"{W}.frontendSidecar",
        "must not be empty",
    ),
    (
        "frontend-sidecar-unknown-container",
        _set(lambda d: _sidecar(d, "frontend")),
        f"{W}.frontendSidecar",
        "must name a podTemplate.spec.containers entry, got 'frontend' (containers: main, sidecar-frontend)",
    ),
    (
        "frontend-sidecar-without-pod-template",
        _set(lambda d: d["spec"]["components"][0].update(frontendSidecar="x", podTemplate=None)),
        "spec.components[0].podTemplate.spec.containers",
        "needs a container named 'main' with an image",
    ),
    (
        "gms-on-frontend",
        _set(lambda d: d["spec"]["components"][0].update(experimental={"gpuMemoryService": {}})),
        "spec.components[0].experimental.gpuMemoryService",
        "only for worker, prefill or decode components, not type 'frontend'",
    ),
    (
        "gms-without-gpu",
        _set(
            lambda d: (
                _main(d).pop("resources"),
                _worker(d).update(experimental={"gpuMemoryService": {}}),
            )
        ),
        f"{W}.experimental.gpuMemoryService",
        'needs container main to limit at least 1 "nvidia.com/gpu"',
    ),
    (
        "gms-client-not-a-container",
        _set(_experimental(gpuMemoryService={"extraClientContainers": ["loader"]})),
        f"{W}.experimental.gpuMemoryService.extraClientContainers[0]",
        "'loader' is not a podTemplate.spec.containers name",
    ),
    (
        "gms-inter-pod-not-vllm",
        _set(
            lambda d: (
                d["spec"].update(backendFramework="sglang"),
                _worker(d).update(experimental={"gpuMemoryService": {"mode": "InterPod"}}),
            )
        ),
        f"{W}.experimental.gpuMemoryService.mode",
        "the InterPod layout is supported only with spec.backendFramework vllm",
    ),
    (
        "failover-without-gms",
        _set(
            lambda d: (
                d["metadata"].update(
                    annotations={"nvidia.com/dynamo-kube-discovery-mode": "container"}
                ),
                _worker(d).update(experimental={"failover": {}}),
            )
        ),
        f"{W}.experimental.failover",
        "requires experimental.gpuMemoryService",
    ),
    (
        "failover-mode-differs",
        _set(_experimental(gpuMemoryService={"mode": "InterPod"}, failover={"mode": "IntraPod"})),
        f"{W}.experimental.failover.mode",
        "must equal the gpuMemoryService mode 'InterPod', got 'IntraPod'",
    ),
    (
        "intra-pod-failover-needs-container-discovery",
        _set(_experimental(gpuMemoryService={}, failover={})),
        DISCOVERY,
        "must be 'container' when a component uses intra-pod failover "
        "(spec.components[1].experimental.failover), got null",
    ),
    (
        "checkpoint-gms-clients-without-gms",
        _set(_experimental(checkpoint={"enabled": True, "job": {"gmsClientContainers": ["main"]}})),
        f"{W}.experimental.checkpoint.job.gmsClientContainers",
        "requires experimental.gpuMemoryService with mode IntraPod",
    ),
    (
        "power-limit-not-a-number",
        _set(
            lambda d: _worker(d)["podTemplate"].update(
                metadata={"annotations": {"dynamo.nvidia.com/gpu-power-limit": "300W"}}
            )
        ),
        f"{W}.podTemplate.metadata.annotations[dynamo.nvidia.com/gpu-power-limit]",
        "must be a positive whole number of watts, got '300W'",
    ),
    (
        "power-limit-with-dra",
        _set(
            lambda d: (
                _worker(d)["podTemplate"].update(
                    metadata={"annotations": {"dynamo.nvidia.com/gpu-power-limit": "300"}}
                ),
                _main(d)["resources"].update(claims=[{"name": "gpu"}]),
            )
        ),
        f"{W}.podTemplate.metadata.annotations[dynamo.nvidia.com/gpu-power-limit]",
        "cannot be combined with dynamic resource allocation (gpuMemoryService or resources.claims)",
    ),
    (
        "elastic-ep-over-ray-without-command",
        _set(
            lambda d: (
                _main(d).pop("command"),
                _main(d).update(args=["--enable-elastic-ep", "--data-parallel-backend=ray"]),
            )
        ),
        f"{MAIN}.command",
        "required: vLLM elastic expert parallelism over Ray (--enable-elastic-ep with "
        "--data-parallel-backend ray) needs an explicit command",
    ),
    (
        "provider-override-api-version",
        _set(
            lambda d: _worker(d).update(providerOverride={"apiVersion": "grove.io/v1", "value": {}})
        ),
        f"{W}.providerOverride.apiVersion",
        "must be 'grove.io/v1alpha1', got 'grove.io/v1'",
    ),
    (
        "provider-override-target",
        _set(
            lambda d: _worker(d).update(
                multinode={"nodeCount": 2},
                providerOverride={
                    "apiVersion": "grove.io/v1alpha1",
                    "target": "PodCliqueTemplateSpec",
                    "value": {},
                },
            )
        ),
        f"{W}.providerOverride.target",
        "must be 'PodCliqueScalingGroupConfig' here, got 'PodCliqueTemplateSpec'",
    ),
    (
        "provider-override-value-outside-topology",
        _set(
            lambda d: d["spec"].update(
                providerOverride={
                    "apiVersion": "grove.io/v1alpha1",
                    "value": {"spec": {"replicas": 2}},
                }
            )
        ),
        "spec.providerOverride.value",
        "may only set spec.template.topologyConstraint; also sets spec.replicas",
    ),
    (
        "provider-override-with-typed-topology",
        _set(
            lambda d: (
                d["spec"].update(
                    topologyConstraint={"clusterTopologyName": "t", "packDomain": "zone"}
                ),
                _worker(d).update(
                    providerOverride={
                        "apiVersion": "grove.io/v1alpha1",
                        "value": {"topologyConstraint": {"packDomain": "rack"}},
                    }
                ),
            )
        ),
        f"{W}.providerOverride.value",
        "a Grove topology override cannot be combined with spec.topologyConstraint or "
        "components[].topologyConstraint; use one or the other",
    ),
    (
        "component-topology-without-graph-topology",
        _set(lambda d: _worker(d).update(topologyConstraint={"packDomain": "rack"})),
        "spec.topologyConstraint",
        "required when a component sets topologyConstraint (spec.components[1])",
    ),
    (
        "graph-topology-without-domain",
        _set(lambda d: d["spec"].update(topologyConstraint={"clusterTopologyName": "t"})),
        "spec.topologyConstraint.packDomain",
        "required unless a component sets its own topologyConstraint",
    ),
    (
        "kv-transfer-topology-name",
        _set(
            lambda d: d["spec"].update(
                experimental={
                    "kvTransferPolicy": {"clusterTopologyName": "My_Topology", "domain": "rack"}
                }
            )
        ),
        "spec.experimental.kvTransferPolicy.clusterTopologyName",
        "must be a DNS subdomain (lower-case letters, digits, '-' and '.'), got 'My_Topology'",
    ),
    # The strict model (schema and CEL), at v1beta1 paths.
    (
        "unknown-component-field",
        _set(lambda d: _worker(d).update(replica=2)),
        f"{W}.replica",
        "unknown field (v1beta1 is strict: the API server refuses fields it does not know)",
    ),
    (
        "replicas-negative",
        _set(lambda d: _worker(d).update(replicas=-1)),
        f"{W}.replicas",
        "must be >= 0, got -1",
    ),
    (
        "type-unknown",
        _set(lambda d: _worker(d).update(type="router")),
        f"{W}.type",
        "must be one of 'frontend', 'worker', 'prefill', 'decode', 'planner' or 'epp', got 'router'",
    ),
    (
        "min-available-above-replicas",
        _set(lambda d: _worker(d).update(minAvailable=3)),
        W,
        "minAvailable (3) must not exceed replicas",
    ),
    # v1alpha1 rules on the down-converted view, reported at the v1beta1 path.
    (
        "view-name-collision",
        _set(lambda d: d["spec"]["components"][1].update(name="frontend")),
        "spec.components",
        "component names must be unique case-insensitively: 'Frontend' and 'frontend'",
    ),
    (
        "view-embedded-pod-spec",
        _set(lambda d: _main(d).update(ports=[{"containerPort": "http"}])),
        f"{MAIN}.ports[0].containerPort",
        "must be an integer, got string 'http'",
    ),
    (
        "view-embedded-pod-level-field",
        _set(
            lambda d: _worker(d)["podTemplate"]["spec"].update(terminationGracePeriodSeconds="60")
        ),
        f"{W}.podTemplate.spec.terminationGracePeriodSeconds",
        "must be an integer, got string '60'",
    ),
    (
        "view-origin-version",
        _set(
            lambda d: d["metadata"].update(
                annotations={"nvidia.com/dynamo-operator-origin-version": "one"}
            )
        ),
        "metadata.annotations[nvidia.com/dynamo-operator-origin-version]",
        "must be a semantic version such as 1.0.0, got 'one'",
    ),
]


@pytest.mark.parametrize(
    ("doc", "path", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_invalid_v1beta1_document_names_the_v1beta1_field(
    doc: Doc, path: str, message: str
) -> None:
    result = validate_dgd(copy.deepcopy(doc))
    assert result.dgd is None and result.hub is None
    assert result.api_version == "nvidia.com/v1beta1"
    assert message in [p.message for p in result.errors if p.path == path], [
        str(p) for p in result.errors
    ]


def test_the_valid_graph_has_no_problems_and_carries_both_views() -> None:
    doc = graph()
    result = validate_dgd(doc)
    assert result.errors == [] and result.warnings == []
    assert result.hub == doc and result.hub is not doc
    assert result.dgd is not None
    assert sorted(result.dgd.spec.services) == ["Frontend", "worker"]
    assert result.dgd.spec.services["worker"].replicas == 2


def test_a_v1alpha1_document_carries_its_hub() -> None:
    alpha = convert(graph(), "v1alpha1")
    result = validate_dgd(alpha)
    assert result.ok and result.api_version == "nvidia.com/v1alpha1"
    assert result.hub == convert(alpha, "v1beta1")


def test_restart_order_is_checked_with_component_wording_on_update() -> None:
    doc = _set(
        lambda d: d["spec"].update(
            restart={"id": "r1", "strategy": {"order": ["worker", "Planner", "worker"]}}
        )
    )
    errors = {p.path: p.message for p in validate_dgd(doc, creating=False).errors}
    path = "spec.restart.strategy.order"
    assert errors[path] == "lists components more than once: [worker]"
    assert (
        errors[f"{path}[1]"] == "'Planner' is not a component; expected one of [Frontend, worker]"
    )


def test_restart_is_refused_at_create() -> None:
    doc = _set(lambda d: d["spec"].update(restart={"id": "r1"}))
    errors = {p.path: p.message for p in validate_dgd(doc).errors}
    assert errors["spec.restart"].startswith(
        "must be unset when the DynamoGraphDeployment is created"
    )


def test_a_runtime_version_dynamo_would_require_is_a_warning() -> None:
    doc = _set(lambda d: _main(d).update(image="registry.example.com/vllm-runtime:my-tag"))
    result = validate_dgd(doc)
    assert result.ok
    assert [str(w) for w in result.warnings] == [
        f"{W}.runtimeVersionOverride: Dynamo's operator requires it (X.Y.Z) because the main image "
        "tag of 'registry.example.com/vllm-runtime:my-tag' is not a semantic version; dgd accepts "
        "the graph without it"
    ]


@pytest.mark.parametrize(
    ("image", "needs_override"),
    [
        ("vllm-runtime:1.5.0", False),
        ("registry:5000/vllm-runtime:v1.5.0-rc1", False),
        ("vllm-runtime:1.5.0+abc@sha256:0123", False),
        ("vllm-runtime:1.5", True),
        ("vllm-runtime:latest", True),
        ("registry:5000/vllm-runtime", True),
    ],
)
def test_image_tag_parsing_for_the_runtime_version(image: str, needs_override: bool) -> None:
    doc = _set(lambda d: _main(d).update(image=image))
    paths = [w.path for w in validate_dgd(doc).warnings]
    assert (f"{W}.runtimeVersionOverride" in paths) is needs_override


def test_model_errors_and_webhook_rules_are_reported_together() -> None:
    doc = _set(lambda d: (_worker(d).update(replicas="2"), _main(d).update(image="")))
    assert [str(p) for p in validate_dgd(doc).errors] == [
        f"{W}.replicas: must be an integer, got string '2'",
        f"{MAIN}.image: required",
    ]


def test_webhook_rules_and_the_view_rules_are_reported_together() -> None:
    doc = _set(lambda d: _main(d).update(image=""))
    doc["metadata"]["labels"] = {"team": "-bad"}  # checked on the v1alpha1 view
    assert [str(p) for p in validate_dgd(doc).errors] == [
        f"{MAIN}.image: required",
        "metadata.labels.team: invalid label value '-bad': at most 63 letters, digits, '-', '_' or "
        "'.', starting and ending with a letter or digit",
    ]


# --- paths ---------------------------------------------------------------------------------------

HUB = _set(
    lambda d: _worker(d)["podTemplate"]["spec"]["containers"].insert(
        0, {"name": "log", "image": "x"}
    )
)


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [
        ("spec.services.worker", "spec.components[1]"),
        ("spec.services.worker.replicas", "spec.components[1].replicas"),
        ("spec.services.worker.componentType", "spec.components[1].type"),
        (
            "spec.services.worker.extraPodSpec.mainContainer.image",
            "spec.components[1].podTemplate.spec.containers[1].image",
        ),
        (
            "spec.services.worker.extraPodSpec.containers[0].image",
            "spec.components[1].podTemplate.spec.containers[0].image",
        ),
        (
            "spec.services.worker.extraPodSpec.volumes[0]",
            "spec.components[1].podTemplate.spec.volumes[0]",
        ),
        (
            "spec.services.worker.extraPodMetadata.labels[a/b]",
            "spec.components[1].podTemplate.metadata.labels[a/b]",
        ),
        (
            "spec.services.worker.envs[2].name",
            "spec.components[1].podTemplate.spec.containers[1].env[2].name",
        ),
        (
            "spec.services.worker.resources.limits.gpu",
            "spec.components[1].podTemplate.spec.containers[1].resources",
        ),
        ("spec.services.worker.sharedMemory.size", "spec.components[1].sharedMemorySize"),
        (
            "spec.services.worker.gpuMemoryService.mode",
            "spec.components[1].experimental.gpuMemoryService.mode",
        ),
        ("spec.services.Frontend.multinode.nodeCount", "spec.components[0].multinode.nodeCount"),
        ("spec.envs[0].value", "spec.env[0].value"),
        ("spec.services", "spec.components"),
        ("spec.topologyConstraint.topologyProfile", "spec.topologyConstraint.clusterTopologyName"),
        ("metadata.name", "metadata.name"),
    ],
)
def test_view_paths_map_to_the_v1beta1_document(alpha: str, beta: str) -> None:
    assert to_v1beta1_path(alpha, HUB) == (beta, True)


@pytest.mark.parametrize(
    "alpha",
    ["spec.services.worker.ingress.host", "spec.services.worker.labels[a]", "spec.pvcs[0].size"],
)
def test_alpha_only_paths_stay_in_the_v1alpha1_spelling(alpha: str) -> None:
    assert to_v1beta1_path(alpha, HUB) == (alpha, False)


def test_a_problem_at_an_alpha_only_field_says_so() -> None:
    payload = '{"version":1,"spec":{"services":{"worker":{"labels":{"bad label":"x"}}}}}'
    doc = _set(lambda d: d["metadata"].update(annotations={"nvidia.com/dgd-spec": payload}))
    [problem] = validate_dgd(doc).errors
    assert problem.path == "spec.services.worker.labels[bad label]"
    assert problem.message.endswith(OTHER_SPELLING_NOTE)


@pytest.mark.parametrize(
    ("beta", "alpha"),
    [
        ("spec.components[1].minAvailable", "spec.services.worker.minAvailable"),
        ("spec.components[1].experimental.checkpoint", "spec.services.worker.checkpoint"),
        (
            "spec.components[0].multinode.leader.providerOverride",
            "spec.services.Frontend.multinode.leader.providerOverride",
        ),
        ("spec.priorityClassName", "spec.priorityClassName"),
        ("spec.env[0]", "spec.envs[0]"),
    ],
)
def test_v1beta1_paths_map_to_the_v1alpha1_spelling(beta: str, alpha: str) -> None:
    assert to_v1alpha1_path(beta, HUB) == alpha


# --- fields dgd does not act on --------------------------------------------------------------------

OVERRIDE = {
    "apiVersion": "grove.io/v1alpha1",
    "value": {"topologyConstraint": {"packDomain": "rack"}},
}
UNACTED: list[tuple[str, Callable[[Doc], Any], str, str]] = [
    (
        "minAvailable",
        lambda d: _worker(d).update(minAvailable=1),
        "spec.components[1].minAvailable",
        "spec.services.worker.minAvailable",
    ),
    (
        "providerOverride",
        lambda d: _worker(d).update(providerOverride=OVERRIDE),
        "spec.components[1].providerOverride",
        "spec.services.worker.providerOverride",
    ),
    (
        "leader-providerOverride",
        lambda d: _worker(d).update(
            multinode={"nodeCount": 2, "leader": {"providerOverride": OVERRIDE}}
        ),
        "spec.components[1].multinode.leader.providerOverride",
        "spec.services.worker.multinode.leader.providerOverride",
    ),
    (
        "runtimeVersionOverride",
        lambda d: _worker(d).update(runtimeVersionOverride="1.5.0"),
        "spec.components[1].runtimeVersionOverride",
        "spec.services.worker.runtimeVersionOverride",
    ),
    (
        "checkpoint",
        lambda d: _worker(d).update(experimental={"checkpoint": {"enabled": True}}),
        "spec.components[1].experimental.checkpoint",
        "spec.services.worker.checkpoint",
    ),
    (
        "gpuMemoryService",
        lambda d: _worker(d).update(experimental={"gpuMemoryService": {}}),
        "spec.components[1].experimental.gpuMemoryService",
        "spec.services.worker.gpuMemoryService",
    ),
]


@pytest.mark.parametrize(
    ("change", "beta_path", "alpha_path"), [c[1:] for c in UNACTED], ids=[c[0] for c in UNACTED]
)
def test_not_acted_on_names_the_field_in_the_version_written(
    change: Callable[[Doc], Any], beta_path: str, alpha_path: str
) -> None:
    beta = _set(change)
    [warning] = not_acted_on(beta)
    assert warning.path == beta_path and warning.severity == "warning"
    assert warning.message.startswith(("not acted on", "accepted and checked by admission only"))
    alpha = convert(beta, "v1alpha1")
    assert [(w.path, w.message) for w in not_acted_on(alpha)] == [(alpha_path, warning.message)]
    # validate_dgd reports it as a warning and no "unknown field" warning for the same field.
    for doc, path in ((beta, beta_path), (alpha, alpha_path)):
        result = validate_dgd(doc)
        assert result.ok, [str(p) for p in result.errors]
        assert path in [w.path for w in result.warnings]
        assert not [w for w in result.warnings if "unknown field" in w.message]


def test_disabled_checkpoint_and_empty_grove_ask_for_nothing() -> None:
    doc = _set(
        lambda d: _worker(d).update(experimental={"checkpoint": {"enabled": False}, "grove": {}})
    )
    assert not_acted_on(doc) == []


def test_an_alpha_frontend_sidecar_is_acted_on() -> None:
    alpha = convert(graph(), "v1alpha1")
    alpha["spec"]["services"]["Frontend"]["frontendSidecar"] = {"image": IMAGE}
    assert not_acted_on(alpha) == []


def test_our_graphs_use_no_field_dgd_ignores() -> None:
    for path in [*sorted(GRAPHS_DIR.glob("*.yaml")), *v1beta1_graph_paths()]:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("kind") == "DynamoGraphDeployment":
                assert not_acted_on(doc) == [], path.name


# --- the corpus ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", peer_corpus.params(peer_corpus.V1BETA1_DIR, "nvidia.com/v1beta1"))
def test_every_v1beta1_example_validates(path: Path | None) -> None:
    if path is None:
        peer_corpus.missing(peer_corpus.V1BETA1_DIR)
        return
    for document in peer_corpus.dgd_documents(path):
        result = validate_dgd(document)
        assert result.errors == [], [str(p) for p in result.errors]
        assert result.hub == document and result.dgd is not None
        # The v1alpha1 view carries nothing the strict v1beta1 model did not already refuse.
        assert not [w for w in result.warnings if "unknown field" in w.message]


@pytest.mark.parametrize(
    "path", peer_corpus.params(peer_corpus.V1ALPHA1_DIR, "nvidia.com/v1alpha1")
)
def test_every_v1alpha1_example_validates_and_its_hub_is_its_conversion(path: Path | None) -> None:
    if path is None:
        peer_corpus.missing(peer_corpus.V1ALPHA1_DIR)
        return
    for document in peer_corpus.dgd_documents(path):
        result = validate_dgd(document)
        assert result.errors == [], [str(p) for p in result.errors]
        assert result.hub == convert(document, "v1beta1")
        up = validate_dgd(result.hub)
        assert up.errors == [] and up.dgd is not None and result.dgd is not None
        assert up.dgd.spec == result.dgd.spec


# --- the CLI ----------------------------------------------------------------------------------------


def _write(tmp_path: Path, *docs: Doc) -> Path:
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump_all(list(docs)), encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["validate", "render"])
def test_cli_invalid_v1beta1_exits_1_naming_the_v1beta1_field(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _set(lambda d: _main(d).update(image="")))
    assert main([command, str(path)]) == 1
    out, err = capsys.readouterr()
    assert f"{path}: demo: {MAIN}.image: required" in out + err
    assert "Traceback" not in out + err


def test_cli_validates_a_file_mixing_both_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    beta = graph()
    alpha = convert(graph(), "v1alpha1")
    alpha["metadata"]["name"] = "demo-alpha"
    alpha["spec"]["services"]["worker"]["minAvailable"] = 1
    path = _write(tmp_path, beta, alpha)
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{path}: demo: valid (2 components)",
        f"{path}: demo-alpha: valid (2 services)",
    ]
    assert err.splitlines() == [
        f"warning: {path}: demo-alpha: spec.services.worker.minAvailable: not acted on yet (a Grove gang "
        "minimum): dgd starts the pods independently, without a gang minimum"
    ]


# --- Dynamo's v1beta1 webhook rules on v1alpha1 documents (its webhook sees them converted) -------

ALPHA_ERRORS: list[tuple[str, Doc, str, str]] = [
    (
        "gms-on-frontend",
        _set(lambda d: d["spec"]["components"][0].update(experimental={"gpuMemoryService": {}})),
        "spec.services.Frontend.gpuMemoryService",
        "only for worker, prefill or decode components, not type 'frontend'",
    ),
    (
        "power-limit",
        _set(
            lambda d: _worker(d)["podTemplate"].update(
                metadata={"annotations": {"dynamo.nvidia.com/gpu-power-limit": "0"}}
            )
        ),
        "spec.services.worker.extraPodMetadata.annotations[dynamo.nvidia.com/gpu-power-limit]",
        "must be a positive whole number of watts, got '0'",
    ),
    (
        "elastic-ep-command",
        _set(
            lambda d: (
                _main(d).pop("command"),
                _main(d).update(args=["--enable-elastic-ep", "-dpb", "ray"]),
            )
        ),
        "spec.services.worker.extraPodSpec.mainContainer.command",
        "required: vLLM elastic expert parallelism over Ray (--enable-elastic-ep with "
        "--data-parallel-backend ray) needs an explicit command",
    ),
    (
        "component-topology",
        _set(lambda d: _worker(d).update(topologyConstraint={"packDomain": "rack"})),
        "spec.topologyConstraint",
        "required when a component sets topologyConstraint (spec.components[1])",
    ),
    (
        "workload-provider",
        _set(lambda d: d["metadata"].update(annotations={"nvidia.com/workload-provider": "lws"})),
        "metadata.annotations[nvidia.com/workload-provider]",
        "must be 'component' or 'grove', got 'lws'",
    ),
]


@pytest.mark.parametrize(
    ("doc", "path", "message"), [c[1:] for c in ALPHA_ERRORS], ids=[c[0] for c in ALPHA_ERRORS]
)
def test_v1beta1_webhook_rules_apply_to_v1alpha1_in_its_spelling(
    doc: Doc, path: str, message: str
) -> None:
    alpha = convert(doc, "v1alpha1")
    result = validate_dgd(alpha)
    assert result.dgd is None and result.hub is None
    assert message in [p.message for p in result.errors if p.path == path], [
        str(p) for p in result.errors
    ]


def test_the_image_rules_are_v1beta1_only() -> None:
    alpha = convert(_set(lambda d: _main(d).update(image="vllm-runtime:latest")), "v1alpha1")
    assert validate_dgd(alpha).warnings == []


@pytest.mark.parametrize(
    ("beta", "alpha"),
    [
        (
            "spec.components[1].podTemplate.spec.containers[0]",
            "spec.services.worker.extraPodSpec.containers[0]",
        ),
        (
            "spec.components[1].podTemplate.spec.containers[1].command",
            "spec.services.worker.extraPodSpec.mainContainer.command",
        ),
        (
            "spec.components[1].podTemplate.spec.volumes",
            "spec.services.worker.extraPodSpec.volumes",
        ),
        (
            "spec.components[1].podTemplate.metadata.labels",
            "spec.services.worker.extraPodMetadata.labels",
        ),
        ("spec.components[1].type", "spec.services.worker.componentType"),
        ("spec.components[1].sharedMemorySize", "spec.services.worker.sharedMemory.size"),
        ("spec.components", "spec.services"),
    ],
)
def test_pod_template_paths_map_to_the_v1alpha1_spelling(beta: str, alpha: str) -> None:
    assert to_v1alpha1_path(beta, HUB) == alpha


def _containers(value: Any) -> set[int]:
    """ids of every dict and list in a JSON-shaped value (or a model's dumped fields)."""
    if isinstance(value, BaseModel):
        return set().union(*(_containers(getattr(value, f)) for f in type(value).model_fields))
    if isinstance(value, dict):
        return {id(value)}.union(*(_containers(v) for v in value.values()))
    if isinstance(value, list):
        return {id(value)}.union(*(_containers(v) for v in value))
    return set()


@pytest.mark.parametrize("path", v1beta1_graph_paths(), ids=lambda p: p.stem)
def test_validation_neither_changes_nor_shares_a_stored_graph(path: Path) -> None:
    """The reconcile validates the watch cache's own object, without copying it first."""
    for doc in dgd_documents(path):
        doc["metadata"].setdefault("namespace", "ns")
        frozen = copy.deepcopy(doc)
        result = validate_dgd(doc, creating=False, images=False, keep_hub=False)
        assert result.dgd is not None and result.hub is None
        assert doc == frozen
        assert not _containers(doc) & _containers(result.dgd)
