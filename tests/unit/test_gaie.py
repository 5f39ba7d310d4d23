"""The Gateway API Inference Extension objects, frontend sidecars, model Services and Istio
routes (issue 14 items 1-2): table tests per builder, and golden renders of Dynamo's GAIE
examples (v1beta1, read through the conversion's v1alpha1 view) with every object checked
against Kubernetes 1.34 (strict) and the InferencePool against its CRD schema.

Regenerate the goldens after an intended change with `UPDATE_GOLDEN=1`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests import peer_corpus
from tests.fixtures.catalog import load_graph

from dgd_operator.api import constants
from dgd_operator.api.conversion import convert
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.naming import model_hash
from dgd_operator.builders.context import GraphContext, ServiceContext
from dgd_operator.builders.epp import (
    INFERENCE_POOL_MISSING,
    build_destination_rule,
    build_epp_config_map,
    build_inference_pool,
    epp_problems,
)
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.graph import plan_graph
from dgd_operator.builders.model_service import build_model_services
from dgd_operator.builders.options import BuildOptions
from dgd_operator.builders.podspec import build_pod_template
from dgd_operator.builders.services import build_ingress, build_virtual_service
from dgd_operator.commands.render import dump_documents
from dgd_operator.reconcile.rollout import current_worker_hash
from dgd_operator.settings import load_settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "tests" / "golden" / "gaie"
CRD_PATH = REPO / "tests" / "fixtures" / "crds" / "inference.networking.k8s.io_inferencepools.yaml"
KUBERNETES_VERSION = "1.34.0"
GAIE_EXAMPLES = peer_corpus.cases(
    sorted(
        p
        for folder in (peer_corpus.EXAMPLES_DIR, peer_corpus.EXAMPLES_15_DIR)
        for p in folder.glob("*gaie*.yaml")
    )
)
# Checked by their own schemas below (InferencePool) or not at all (Istio, ours).
NON_CORE_GROUPS = ("nvidia.com/", "inference.networking.k8s.io/", "networking.istio.io/")


def graph_of(services: dict[str, Any], **metadata: Any) -> DynamoGraphDeployment:
    return DynamoGraphDeployment.model_validate(
        {"metadata": {"name": "g", **metadata}, "spec": {"services": services}}
    )


def ctx(
    services: dict[str, Any], name: str, options: BuildOptions | None = None, **metadata: Any
) -> ServiceContext:
    return GraphContext(graph_of(services, **metadata), "ns", options or BuildOptions()).service(
        name
    )


EPP_INLINE = {"componentType": "epp", "eppConfig": {"config": {"plugins": [{"type": "x"}]}}}
EPP_REF = {"componentType": "epp", "eppConfig": {"configMapRef": {"name": "mine", "key": "k"}}}
WORKER = {"componentType": "worker"}


def main(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "main")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- EPP ---------------------------------------------------------------------------------------


def test_epp_container_runs_the_image_entrypoint_with_pool_arguments() -> None:
    pod = build_pod_template(ctx({"Epp": EPP_INLINE, "w": WORKER}, "Epp"))
    container = main(pod)
    assert "command" not in container
    args = container["args"]
    assert args[args.index("--pool-name") + 1] == "g-pool"
    assert args[args.index("--pool-namespace") + 1] == "ns"
    assert args[args.index("--pool-group") + 1] == "inference.networking.k8s.io"
    assert args[-2:] == ["--config-file", "/etc/epp/epp-config-dynamo.yaml"]
    env = env_of(container)
    assert env["DYN_NAMESPACE_PREFIX"] == "ns-g" and env["DYN_ENFORCE_DISAGG"] == "false"
    assert env["USE_STREAMING"] == "true" and env["DYN_COMPONENT"] == "epp"
    assert [m["name"] for m in container["volumeMounts"]][:2] == ["epp-config", "hf-cache"]
    assert pod["spec"]["serviceAccountName"] == "epp-serviceaccount"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 130


def test_user_args_replace_the_epp_arguments_whole() -> None:
    epp = {**EPP_INLINE, "extraPodSpec": {"mainContainer": {"args": ["--own"]}}}
    assert main(build_pod_template(ctx({"Epp": epp}, "Epp")))["args"] == ["--own"]


@pytest.mark.parametrize(
    ("epp", "config_map", "key"),
    [
        pytest.param(EPP_INLINE, "g-epp-config", "epp-config-dynamo.yaml", id="inline"),
        pytest.param(EPP_REF, "mine", "k", id="reference"),
        pytest.param(
            {"componentType": "epp", "eppConfig": {"configMapRef": {"name": "mine"}}},
            "mine",
            "epp-config-dynamo.yaml",
            id="reference-default-key",
        ),
        pytest.param({"componentType": "epp"}, "g-epp-config", "epp-config-dynamo.yaml", id="none"),
    ],
)
def test_epp_config_volume(epp: dict[str, Any], config_map: str, key: str) -> None:
    volumes = {
        v["name"]: v for v in build_pod_template(ctx({"Epp": epp}, "Epp"))["spec"]["volumes"]
    }
    assert volumes["epp-config"]["configMap"] == {
        "name": config_map,
        "items": [{"key": key, "path": "epp-config-dynamo.yaml"}],
    }
    assert volumes["hf-cache"] == {"name": "hf-cache", "emptyDir": {}}


def test_user_volume_of_the_same_name_wins() -> None:
    own = {"name": "hf-cache", "persistentVolumeClaim": {"claimName": "hf"}}
    epp = {**EPP_INLINE, "extraPodSpec": {"volumes": [own]}}
    volumes = build_pod_template(ctx({"Epp": epp}, "Epp"))["spec"]["volumes"]
    assert [v for v in volumes if v["name"] == "hf-cache"] == [own]


@pytest.mark.parametrize(
    ("epp", "expected"),
    [
        pytest.param(
            EPP_INLINE,
            "apiVersion: inference.networking.x-k8s.io/v1alpha1\n"
            "kind: EndpointPickerConfig\nplugins:\n- type: x\n",
            id="inline",
        ),
        pytest.param(
            {"componentType": "epp", "eppConfig": {"config": {"kind": "Other", "a": 1}}},
            "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\na: 1\n",
            id="kind-filled-in",
        ),
        pytest.param(EPP_REF, None, id="reference-creates-nothing"),
    ],
)
def test_epp_config_map(epp: dict[str, Any], expected: str | None) -> None:
    config_map = build_epp_config_map(ctx({"Epp": epp}, "Epp"))
    if expected is None:
        assert config_map is None
        return
    assert config_map is not None
    assert config_map["metadata"]["name"] == "g-epp-config"
    assert config_map["metadata"]["labels"][constants.LABEL_COMPONENT_TYPE] == "epp"
    assert config_map["data"] == {"epp-config-dynamo.yaml": expected}


def test_config_map_ref_without_name_is_a_build_error() -> None:
    epp = {"componentType": "epp", "eppConfig": {"configMapRef": {"key": "k"}}}
    with pytest.raises(BuildError, match=r"eppConfig\.configMapRef\.name"):
        build_pod_template(ctx({"Epp": epp}, "Epp"))


def test_inference_pool_selects_the_graphs_workers_behind_the_epp_service() -> None:
    pool = build_inference_pool(ctx({"My.Epp": EPP_INLINE}, "My.Epp"))
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["metadata"]["name"] == "g-pool"
    assert pool["spec"] == {
        "targetPorts": [{"number": 8000}],
        "selector": {
            "matchLabels": {
                "nvidia.com/dynamo-component-class": "worker",
                "nvidia.com/dynamo-namespace": "ns-g",
            }
        },
        "endpointPickerRef": {"kind": "Service", "name": "g-my-epp", "port": {"number": 9002}},
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(BuildOptions(), None, id="no-mesh"),
        pytest.param(
            BuildOptions(istio_enabled=True),
            {"mode": "SIMPLE", "insecureSkipVerify": True},
            id="simple",
        ),
        pytest.param(
            BuildOptions(
                istio_enabled=True, istio_tls_mode="ISTIO_MUTUAL", istio_insecure_skip_verify=False
            ),
            {"mode": "ISTIO_MUTUAL", "insecureSkipVerify": False},
            id="istio-mutual",
        ),
        pytest.param(
            BuildOptions(
                istio_enabled=True,
                istio_tls_mode="MUTUAL",
                istio_client_certificate="/c",
                istio_private_key="/k",
                istio_ca_certificates="/ca",
            ),
            {
                "mode": "MUTUAL",
                "clientCertificate": "/c",
                "privateKey": "/k",
                "caCertificates": "/ca",
                "insecureSkipVerify": True,
            },
            id="mutual",
        ),
    ],
)
def test_destination_rule(options: BuildOptions, expected: dict[str, Any] | None) -> None:
    rule = build_destination_rule(ctx({"Epp": EPP_INLINE}, "Epp", options))
    if expected is None:
        assert rule is None
        return
    assert rule is not None
    assert rule["metadata"]["name"] == "g-epp"
    assert rule["spec"] == {
        "host": "g-epp.ns.svc.cluster.local",
        "trafficPolicy": {"tls": expected},
    }


@pytest.mark.parametrize(
    ("served", "kinds", "warnings"),
    [
        pytest.param(True, {"ConfigMap", "InferencePool"}, [], id="served"),
        pytest.param(False, {"ConfigMap"}, [INFERENCE_POOL_MISSING], id="not-served"),
    ],
)
def test_inference_pool_only_when_the_api_is_served(
    served: bool, kinds: set[str], warnings: list[str]
) -> None:
    dgd = graph_of({"Epp": EPP_INLINE, "w": WORKER})
    plan = plan_graph(dgd, "ns", BuildOptions(inference_pool_api=served))
    graph_owned = {o["kind"] for o in plan.objects if o["kind"] in ("ConfigMap", "InferencePool")}
    assert graph_owned == kinds
    assert [(p.path, p.message, p.severity) for p in plan.warnings] == [
        ("spec.services.Epp", m, "warning") for m in warnings
    ]


def test_graph_without_epp_has_no_epp_warning() -> None:
    graph = GraphContext(graph_of({"w": WORKER}), "ns", BuildOptions(inference_pool_api=False))
    assert epp_problems(graph) == []


@pytest.mark.parametrize(
    ("services", "service", "labelled"),
    [
        pytest.param({"Epp": EPP_INLINE, "w": WORKER}, "w", True, id="worker-with-epp"),
        pytest.param(
            {"Epp": EPP_INLINE, "p": {"componentType": "prefill"}}, "p", True, id="prefill"
        ),
        pytest.param({"w": WORKER}, "w", False, id="worker-without-epp"),
        pytest.param(
            {"Epp": EPP_INLINE, "f": {"componentType": "frontend"}}, "f", False, id="frontend"
        ),
        pytest.param({"Epp": EPP_INLINE}, "Epp", False, id="the-epp"),
    ],
)
def test_component_class_label(services: dict[str, Any], service: str, labelled: bool) -> None:
    dgd = graph_of(services)
    plan = plan_graph(dgd, "ns", BuildOptions())
    deployment = next(
        o
        for o in plan.objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == f"g-{service.lower()}"
    )
    for labels in (
        deployment["metadata"]["labels"],
        deployment["spec"]["template"]["metadata"]["labels"],
    ):
        assert (labels.get(constants.LABEL_COMPONENT_CLASS) == "worker") is labelled


@pytest.mark.parametrize(
    ("epp", "graph_annotations", "expected"),
    [
        pytest.param(EPP_INLINE, {}, "false", id="default"),
        pytest.param(
            EPP_INLINE,
            {constants.ANNOTATION_ISTIO_INJECT: "true"},
            "false",
            id="graph-wide-ignored",
        ),
        pytest.param(
            {
                **EPP_INLINE,
                "extraPodMetadata": {"annotations": {constants.ANNOTATION_ISTIO_INJECT: "true"}},
            },
            {},
            "true",
            id="component-wins",
        ),
        pytest.param(
            {**EPP_INLINE, "annotations": {constants.ANNOTATION_ISTIO_INJECT: "true"}},
            {},
            "true",
            id="service-annotation-wins",
        ),
    ],
)
def test_epp_pods_opt_out_of_istio_injection(
    epp: dict[str, Any], graph_annotations: dict[str, str], expected: str
) -> None:
    dgd = DynamoGraphDeployment.model_validate(
        {
            "metadata": {"name": "g"},
            "spec": {"annotations": graph_annotations, "services": {"Epp": epp}},
        }
    )
    template = build_pod_template(GraphContext(dgd, "ns", BuildOptions()).service("Epp"))
    assert template["metadata"]["annotations"][constants.ANNOTATION_ISTIO_INJECT] == expected


def test_epp_service_exists_without_kubernetes_discovery() -> None:
    dgd = graph_of({"Epp": EPP_INLINE})
    plan = plan_graph(dgd, "ns", BuildOptions(discovery_backend="etcd"))
    [service] = [o for o in plan.objects if o["kind"] == "Service"]
    assert service["metadata"]["name"] == "g-epp"
    assert service["spec"]["ports"] == [
        {
            "name": "grpc",
            "port": 9002,
            "targetPort": 9002,
            "appProtocol": "http2",
            "protocol": "TCP",
        }
    ]


# --- frontend sidecar -------------------------------------------------------------------------

SIDECAR_V1ALPHA1 = {
    "componentType": "worker",
    "frontendSidecar": {
        "image": "fe:1",
        "args": ["-m", "dynamo.frontend", "--router-mode", "direct"],
        "envFromSecret": "hf",
        "envs": [{"name": "DYN_LOG", "value": "debug"}, {"name": "DYNAMO_PORT", "value": "9"}],
    },
    "volumeMounts": [{"name": "models", "mountPoint": "/models"}],
}


def test_v1alpha1_sidecar_is_appended_as_a_frontend_of_the_component() -> None:
    options = BuildOptions(nats_address="nats://n:4222", model_express_url="http://mx:8080")
    pod = build_pod_template(ctx({"w": SIDECAR_V1ALPHA1}, "w", options))
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["main", "sidecar-frontend"]
    sidecar = pod["spec"]["containers"][1]
    assert sidecar["image"] == "fe:1" and sidecar["command"] == ["python3"]
    assert sidecar["args"] == ["-m", "dynamo.frontend", "--router-mode", "direct"]
    assert sidecar["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert sidecar["envFrom"] == [{"secretRef": {"name": "hf"}}]
    env = env_of(sidecar)
    assert env["DYN_COMPONENT"] == "frontend" and env["DYN_NAMESPACE_PREFIX"] == "ns-g"
    assert env["DYNAMO_PORT"] == "9" and env["DYN_LOG"] == "debug"  # the user's env wins
    assert env["NATS_SERVER"] == "nats://n:4222" and env["MODEL_EXPRESS_URL"] == "http://mx:8080"
    assert "DYN_SYSTEM_PORT" not in env  # worker defaults stay in main
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert [m["name"] for m in sidecar["volumeMounts"]] == ["models", "shared-memory"]


def test_v1beta1_sidecar_is_rebuilt_in_place() -> None:
    beta = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "g"},
        "spec": {
            "components": [
                {
                    "name": "w",
                    "type": "decode",
                    "frontendSidecar": "fe",
                    "podTemplate": {
                        "spec": {
                            "containers": [
                                {"name": "main", "image": "engine:1"},
                                {"name": "fe", "image": "fe:1", "args": ["--x"]},
                                {"name": "logs", "image": "tail:1"},
                            ]
                        }
                    },
                }
            ]
        },
    }
    dgd = DynamoGraphDeployment.model_validate(convert(beta, "v1alpha1"))
    pod = build_pod_template(GraphContext(dgd, "ns", BuildOptions()).service("w"))
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"main", "fe", "logs"}
    assert containers["fe"]["command"] == ["python3"] and containers["fe"]["args"] == ["--x"]
    assert env_of(containers["fe"])["DYN_COMPONENT"] == "frontend"
    assert containers["logs"] == {"name": "logs", "image": "tail:1"}


def test_v1beta1_sidecar_naming_no_container_is_a_build_error() -> None:
    payload = {"version": 1, "spec": {"components": [{"name": "w", "frontendSidecar": "nope"}]}}
    with pytest.raises(BuildError, match=r"frontendSidecar.*nope"):
        build_pod_template(
            ctx(
                {"w": WORKER}, "w", annotations={constants.ANNOTATION_DGD_SPEC: json.dumps(payload)}
            )
        )


def test_sidecar_registers_under_its_own_name_in_container_discovery_mode() -> None:
    pod = build_pod_template(
        ctx(
            {"w": SIDECAR_V1ALPHA1},
            "w",
            annotations={constants.ANNOTATION_KUBE_DISCOVERY_MODE: "container"},
        )
    )
    sidecar = pod["spec"]["containers"][1]
    assert env_of(sidecar)["CONTAINER_NAME"] == "sidecar-frontend"
    assert env_of(main(pod))["CONTAINER_NAME"] == "main"


# --- modelRef ---------------------------------------------------------------------------------


def test_model_ref_labels_pods_and_one_headless_service_per_model() -> None:
    model = "Qwen/Qwen3-0.6B"
    services = {
        "a": {**WORKER, "modelRef": {"name": model}},
        "b": {**WORKER, "modelRef": {"name": model, "revision": "r"}},
        "c": {**WORKER, "modelRef": {"name": "other/model"}},
        "d": WORKER,
    }
    graph = GraphContext(graph_of(services), "ns", BuildOptions())
    digest = model_hash(model)
    assert len(digest) == 8
    built = build_model_services(graph)
    # Sorted by model name; the hash is sha256's first 8 hex digits, as Dynamo's.
    assert [s["metadata"]["name"] for s in built] == [
        "dynamo-model-fb68f5a6",
        f"dynamo-model-{model_hash('other/model')}",
    ]
    service = next(s for s in built if s["metadata"]["name"] == f"dynamo-model-{digest}")
    assert service["metadata"]["annotations"] == {constants.ANNOTATION_BASE_MODEL: model}
    assert service["spec"] == {
        "clusterIP": "None",
        "selector": {constants.LABEL_BASE_MODEL_HASH: digest},
        "ports": [{"name": "system", "port": 9090, "targetPort": 9090, "protocol": "TCP"}],
    }
    template = build_pod_template(graph.service("a"))
    assert template["metadata"]["labels"][constants.LABEL_BASE_MODEL_HASH] == digest
    assert template["metadata"]["annotations"][constants.ANNOTATION_BASE_MODEL] == model
    plain = build_pod_template(graph.service("d"))
    assert constants.LABEL_BASE_MODEL_HASH not in plain["metadata"]["labels"]


# --- ingress defaults and VirtualService ------------------------------------------------------

FRONTEND = {"componentType": "frontend"}
OWN_VS: dict[str, Any] = {
    **FRONTEND,
    "ingress": {
        "enabled": True,
        "host": "chat",
        "hostSuffix": "example.com",
        "useVirtualService": True,
        "virtualServiceGateway": "istio-system/public",
    },
}


@pytest.mark.parametrize(
    ("frontend", "options", "ingress_host", "vs"),
    [
        pytest.param(FRONTEND, BuildOptions(), None, None, id="nothing"),
        pytest.param(
            FRONTEND,
            BuildOptions(
                ingress_enabled=True,
                ingress_controller_class_name="nginx",
                ingress_tls_secret_name="tls",
                ingress_host_suffix="example.com",
            ),
            "g.example.com",
            None,
            id="default-ingress",
        ),
        pytest.param(
            FRONTEND,
            BuildOptions(istio_gateway="istio-system/gw", ingress_host_suffix="example.com"),
            None,
            ("g.example.com", "istio-system/gw"),
            id="default-virtual-service",
        ),
        pytest.param(
            OWN_VS, BuildOptions(), None, ("chat.example.com", "istio-system/public"), id="own"
        ),
        pytest.param(
            {**OWN_VS, "ingress": {**OWN_VS["ingress"], "useVirtualService": False}},
            BuildOptions(istio_gateway="istio-system/gw"),
            None,
            None,
            id="own-replaces-default",
        ),
    ],
)
def test_frontend_routes(
    frontend: dict[str, Any],
    options: BuildOptions,
    ingress_host: str | None,
    vs: tuple[str, str] | None,
) -> None:
    service = ctx({"Frontend": frontend}, "Frontend", options)
    ingress = build_ingress(service)
    assert (ingress["spec"]["rules"][0]["host"] if ingress else None) == ingress_host
    if ingress is not None:
        assert ingress["spec"]["tls"] == [{"hosts": [ingress_host], "secretName": "tls"}]
    virtual = build_virtual_service(service)
    if vs is None:
        assert virtual is None
        return
    assert virtual is not None
    assert virtual["metadata"]["name"] == "g-frontend"
    assert virtual["spec"] == {
        "hosts": [vs[0]],
        "gateways": [vs[1]],
        "http": [
            {
                "match": [{"uri": {"prefix": "/"}}],
                "route": [{"destination": {"host": "g-frontend", "port": {"number": 8000}}}],
            }
        ],
    }


def test_settings_reach_the_builders() -> None:
    settings = load_settings(
        {
            "DGD_MODEL_EXPRESS_URL": "http://mx:8080",
            "DGD_PROMETHEUS_ENDPOINT": "http://prom:9090",
            "DGD_INGRESS_ENABLED": "true",
            "DGD_INGRESS_CLASS_NAME": "nginx",
            "DGD_INGRESS_TLS_SECRET_NAME": "tls",
            "DGD_INGRESS_HOST_SUFFIX": "example.com",
            "DGD_ISTIO_ENABLED": "true",
            "DGD_ISTIO_GATEWAY": "istio-system/gw",
            "DGD_ISTIO_TLS_MODE": "istio_mutual",
        }
    )
    assert not settings.to_build_options().inference_pool_api  # until discovery says so
    options = settings.to_build_options(inference_pool_api=False)
    assert options == BuildOptions(
        model_express_url="http://mx:8080",
        prometheus_endpoint="http://prom:9090",
        ingress_enabled=True,
        ingress_controller_class_name="nginx",
        ingress_tls_secret_name="tls",
        ingress_host_suffix="example.com",
        istio_enabled=True,
        istio_gateway="istio-system/gw",
        istio_tls_mode="ISTIO_MUTUAL",
        inference_pool_api=False,
    )
    env = env_of(main(build_pod_template(ctx({"w": WORKER}, "w", options))))
    assert env["MODEL_EXPRESS_URL"] == "http://mx:8080"
    assert env["PROMETHEUS_ENDPOINT"] == "http://prom:9090"


# --- golden renders of Dynamo's GAIE examples and of our EPP graph ----------------------------


def render_v1beta1(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator builds for a v1beta1 DGD: its v1alpha1 view, rendered."""
    view = convert(doc, "v1alpha1") if doc["apiVersion"].endswith("/v1beta1") else doc
    dgd = DynamoGraphDeployment.model_validate(view)
    generation = current_worker_hash(dgd)  # workers run as a generation, as `dgd render` shows
    worker_hash = generation[0] if generation else None
    return plan_graph(dgd, "default", BuildOptions(), worker_hash=worker_hash).objects


def strict_schema(schema: Any) -> Any:
    """The CRD schema with unknown fields forbidden (the API server would prune them)."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


def inference_pool_validator() -> Any:
    import jsonschema

    crd = yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))
    [version] = [
        v for v in crd["spec"]["versions"] if v["name"] == constants.INFERENCE_POOL_VERSION
    ]
    return jsonschema.Draft7Validator(strict_schema(version["schema"]["openAPIV3Schema"]))


def check_objects(objects: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    pools = [o for o in objects if o["kind"] == constants.INFERENCE_POOL_KIND]
    validator = inference_pool_validator()
    for pool in pools:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(pool)]
        assert not errors, errors
    for obj in objects:
        if str(obj["apiVersion"]).startswith(NON_CORE_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )


@pytest.mark.parametrize("example", GAIE_EXAMPLES)
def test_gaie_example_golden(example: Path) -> None:
    [doc] = [d for d in yaml.safe_load_all(example.read_text(encoding="utf-8")) if d]
    objects = render_v1beta1(doc)
    kinds = [o["kind"] for o in objects]
    assert {"ConfigMap", "InferencePool"} <= set(kinds)
    check_objects(objects)
    rendered = dump_documents(objects)
    golden = _golden_path(example)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run with UPDATE_GOLDEN=1"
    assert rendered == golden.read_text(encoding="utf-8"), f"{golden.name} changed"


def _golden_path(example: Path) -> Path:
    """The committed render of `example`: Dynamo 1.5's examples share test_render_golden's set."""
    if example.parent.name == peer_corpus.V1BETA1_DIR:
        return REPO / "tests" / "golden" / peer_corpus.V1BETA1_DIR / example.name
    return GOLDEN_DIR / f"{example.parent.name}__{example.name}"


@pytest.mark.parametrize("stem", ["gaie-epp", "model-sidecar"])
def test_own_gaie_graphs_pass_the_schemas(stem: str) -> None:
    objects = render_v1beta1(load_graph(stem))
    assert any(o["kind"] == constants.INFERENCE_POOL_KIND for o in objects)
    check_objects(objects)


def test_inference_pool_schema_check_catches_unknown_fields() -> None:
    pool = build_inference_pool(ctx({"Epp": EPP_INLINE}, "Epp"))
    bad = copy.deepcopy(pool)
    bad["spec"]["endpointPickerRef"]["portNumber"] = 9002
    assert not list(inference_pool_validator().iter_errors(pool))
    assert list(inference_pool_validator().iter_errors(bad))
