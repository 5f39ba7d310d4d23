"""The generated CRDs: no drift from the models, and structurally sound for the API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dgd_operator.api import k8s
from dgd_operator.codegen import crds

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the API server accepts in a CRD's openAPIV3Schema (apiextensions.k8s.io/v1 JSONSchemaProps).
ALLOWED_KEYS = {
    "type", "format", "description", "properties", "required", "items", "additionalProperties",
    "enum", "default", "nullable", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "minProperties", "maxProperties",
    "anyOf", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
    "x-kubernetes-validations", "x-kubernetes-embedded-resource",
}  # fmt: skip


Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return crds.rendered_crds()


def _load(text: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.load(text, Loader=Loader)  # Loader is a safe loader
    return crd


def _version(text: str, name: str = "v1alpha1") -> dict[str, Any]:
    crd = _load(text)
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == name]
    found: dict[str, Any] = version
    return found


def _schema(text: str, version: str = "v1alpha1") -> dict[str, Any]:
    schema: dict[str, Any] = _version(text, version)["schema"]["openAPIV3Schema"]
    return schema


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*")


def test_vendored_kubernetes_schemas_match_kubernetes_validate() -> None:
    pytest.importorskip("kubernetes_validate")
    assert k8s.SCHEMA_FILE.read_text() == crds.vendored_k8s_schemas(), (
        "dgd_operator/api/k8s_schemas.json is stale: run `make crds`"
    )


CRD_DIRS = [
    "crds",
    "charts/dgd-operator/crds",
    "operator/dgd_operator/crds",
]  # what `make crds` writes


@pytest.mark.parametrize("directory", CRD_DIRS)
def test_committed_crds_match_the_models(directory: str, rendered: dict[str, str]) -> None:
    for name, text in rendered.items():
        committed = (REPO_ROOT / directory / name).read_text()
        assert committed == text, f"{directory}/{name} is stale: run `make crds`"


def test_generation_is_deterministic(rendered: dict[str, str]) -> None:
    assert crds.rendered_crds() == rendered


def test_check_mode_passes_on_a_clean_tree(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("kubernetes_validate")
    dirs = [arg for d in CRD_DIRS for arg in ("--crd-dir", str(REPO_ROOT / d))]
    assert crds.main(["--check", *dirs]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("name", "version"),
    [
        (crds.DGD_FILE, "v1alpha1"),
        (crds.DGD_FILE, "v1beta1"),
        (crds.DGDSA_FILE, "v1alpha1"),
        (crds.DGDSA_FILE, "v1beta1"),
        (crds.DWM_FILE, "v1alpha1"),
    ],
)
def test_schema_is_structural(name: str, version: str, rendered: dict[str, str]) -> None:
    schema = _schema(rendered[name], version)
    for path, node in _walk(schema):
        assert set(node) <= ALLOWED_KEYS, f"{path}: {sorted(set(node) - ALLOWED_KEYS)}"
        assert "$ref" not in node and "title" not in node and "const" not in node
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert "anyOf" not in node, path
        assert "type" in node, f"{path} has no type"
        if "properties" in node:
            assert node["type"] == "object", path
            for required in node.get("required", []):
                assert required in node["properties"], f"{path}: required {required} missing"
        if node["type"] == "object" and path != ".metadata":  # the API server owns metadata
            assert (
                "properties" in node
                or "additionalProperties" in node
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), path
            assert node.get("additionalProperties") is not False, path
        if "default" in node:
            assert node["default"] is not None, path
        if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
            node.get("exclusiveMinimum"), bool
        ):
            pytest.fail(f"{path}: numeric exclusiveMinimum")
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key], (
                    f"{path}: list-map key {key} is neither required nor defaulted"
                )


def test_crd_size_allows_client_side_apply(rendered: dict[str, str]) -> None:
    # `kubectl apply` (client side) stores the object as compact JSON in an annotation,
    # and annotations are limited to 256 KiB in total; etcd objects to ~1.5 MB.
    for text in rendered.values():
        crd = _load(text)
        assert len(json.dumps(crd, separators=(",", ":"))) < 200 * 1024
        assert len(text) < 1024 * 1024


def test_dgd_crd_shape(rendered: dict[str, str]) -> None:
    crd = _load(rendered[crds.DGD_FILE])
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "dynamographdeployments.nvidia.com"
    spec = crd["spec"]
    assert spec["group"] == "nvidia.com" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "DynamoGraphDeployment"
    assert spec["names"]["shortNames"] == ["dgd"]
    assert "dynamo" in spec["names"]["categories"]
    alpha, beta = spec["versions"]
    assert (alpha["name"], alpha["served"], alpha["storage"]) == ("v1alpha1", True, False)
    assert (beta["name"], beta["served"], beta["storage"]) == ("v1beta1", True, True)
    assert alpha["deprecated"] is True and "deprecated" not in beta
    assert alpha["deprecationWarning"] == (
        "nvidia.com/v1alpha1 DynamoGraphDeployment is deprecated; "
        "use nvidia.com/v1beta1 DynamoGraphDeployment"
    )
    for version in (alpha, beta):
        assert version["subresources"] == {"status": {}}
        columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
        assert columns == {
            "Ready": '.status.conditions[?(@.type=="Ready")].status',
            "State": ".status.state",
            "Backend": ".spec.backendFramework",
            "Age": ".metadata.creationTimestamp",
            "Message": '.status.conditions[?(@.type=="Ready")].message',
        }
        # The Ready message (why the graph is not ready) only at `-o wide`.
        wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")]
        assert wide == ["Message"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


@pytest.mark.parametrize("name", [crds.DGD_FILE, crds.DGDSA_FILE])
def test_conversion_goes_to_the_webhook(name: str, rendered: dict[str, str]) -> None:
    conversion = _load(rendered[name])["spec"]["conversion"]
    assert conversion == {
        "strategy": "Webhook",
        "webhook": {
            "conversionReviewVersions": ["v1"],
            "clientConfig": {
                "service": {
                    "name": "dgd-operator-webhook",
                    "namespace": "dgd-system",
                    "path": "/convert",
                    "port": 443,
                }
            },
        },
    }
    url = {"url": "https://127.0.0.1:9443/convert", "caBundle": "Q0E="}
    built = crds.build_crds(crds.webhook_conversion(url))[name]["spec"]["conversion"]
    assert built["webhook"]["clientConfig"] == url


def test_v1beta1_dgd_schema(rendered: dict[str, str]) -> None:
    schema = _schema(rendered[crds.DGD_FILE], "v1beta1")
    assert "required" not in schema
    spec = schema["properties"]["spec"]
    components = spec["properties"]["components"]
    assert components["maxItems"] == 25
    assert components["x-kubernetes-list-type"] == "map"
    assert components["x-kubernetes-list-map-keys"] == ["name"]
    component = components["items"]["properties"]
    for name in ("minAvailable", "runtimeVersionOverride", "providerOverride", "experimental"):
        assert name in component, name
    pod_spec = component["podTemplate"]["properties"]["spec"]
    assert "containers" in pod_spec["required"]
    assert [r["message"] for r in spec["x-kubernetes-validations"]] == [
        "spec.restart must be unset when the DynamoGraphDeployment is created",
        "at most one component may have type epp",
        "component names must be unique case-insensitively",
    ]
    status = schema["properties"]["status"]
    assert status["required"] == ["state"]
    replica = status["properties"]["components"]["additionalProperties"]["properties"]
    for name in ("componentKind", "componentNames", "runtimeNamespace", "readyReplicas"):
        assert name in replica, name


def test_worker_metadata_crd(rendered: dict[str, str]) -> None:
    crd = _load(rendered[crds.DWM_FILE])
    assert crd["metadata"]["name"] == "dynamoworkermetadatas.nvidia.com"
    spec = crd["spec"]
    assert spec["names"]["shortNames"] == ["dwm"] and "conversion" not in spec
    [version] = spec["versions"]
    assert (version["name"], version["storage"]) == ("v1alpha1", True)
    assert "subresources" not in version
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Age"]
    data_spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert data_spec["required"] == ["data"]
    assert data_spec["properties"]["data"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def test_dgd_schema_content(rendered: dict[str, str]) -> None:
    schema = _schema(rendered[crds.DGD_FILE])
    spec = schema["properties"]["spec"]
    services = spec["properties"]["services"]
    assert services["maxProperties"] == 25
    service = services["additionalProperties"]
    assert service["properties"]["replicas"] == {
        "description": service["properties"]["replicas"]["description"],
        "minimum": 0,
        "nullable": True,
        "type": "integer",
    }
    assert service["properties"]["multinode"]["properties"]["nodeCount"]["minimum"] == 2
    assert service["properties"]["multinode"]["properties"]["nodeCount"]["default"] == 2
    assert spec["properties"]["backendFramework"]["enum"] == ["sglang", "vllm", "trtllm"]
    assert spec["properties"]["pvcs"]["maxItems"] == 100
    for key in ("description",):
        for name in ("services", "envs", "pvcs", "restart", "backendFramework"):
            assert spec["properties"][name].get(key), f"spec.{name} lacks a {key}"
    for name, prop in service["properties"].items():
        assert prop.get("description"), f"spec.services.*.{name} lacks a description"
    status = schema["properties"]["status"]["properties"]
    assert status["state"]["enum"] == ["initializing", "pending", "successful", "failed"]
    assert status["state"]["default"] == "initializing"


def test_dgd_cel_rules(rendered: dict[str, str]) -> None:
    schema = _schema(rendered[crds.DGD_FILE])
    spec = schema["properties"]["spec"]
    restart_rule, parallel_rule, order_rule = spec["x-kubernetes-validations"]
    assert restart_rule["rule"] == "oldSelf.hasValue() || !has(self.restart)"
    assert restart_rule["optionalOldSelf"] is True
    assert restart_rule["fieldPath"] == ".restart"
    assert "self.restart.strategy.type != 'Parallel'" in parallel_rule["rule"]
    assert "self.services.all(s, s in self.restart.strategy.order)" in order_rule["rule"]
    assert spec["properties"]["services"]["minProperties"] == 1
    service = spec["properties"]["services"]["additionalProperties"]["properties"]
    [ingress_rule] = service["ingress"]["x-kubernetes-validations"]
    assert ingress_rule["fieldPath"] == ".host"
    [mount_rule] = service["volumeMounts"]["items"]["x-kubernetes-validations"]
    assert "useAsCompilationCache" in mount_rule["rule"]
    [pvc_rule] = spec["properties"]["pvcs"]["items"]["x-kubernetes-validations"]
    assert (
        "has(self.size) && has(self.storageClass) && has(self.volumeAccessMode)" in pvc_rule["rule"]
    )
    shm = spec["properties"]["services"]["additionalProperties"]["properties"]["sharedMemory"]
    [shm_rule] = shm["x-kubernetes-validations"]
    assert shm_rule["rule"] == "!(has(self.disabled) && self.disabled && has(self.size))"


def test_embedded_kubernetes_types(rendered: dict[str, str]) -> None:
    schema = _schema(rendered[crds.DGD_FILE])
    spec = schema["properties"]["spec"]
    service = spec["properties"]["services"]["additionalProperties"]["properties"]
    extra = service["extraPodSpec"]
    assert "containers" in extra["properties"] and "containers" not in extra.get("required", [])
    assert "tolerations" in extra["properties"] and "volumes" in extra["properties"]
    main = extra["properties"]["mainContainer"]
    assert "required" not in main
    assert main["properties"]["ports"]["items"]["properties"]["containerPort"]["type"] == "integer"
    assert main["properties"]["ports"]["items"]["properties"]["protocol"]["default"] == "TCP"
    assert service["envs"]["items"]["required"] == ["name"]
    assert spec["properties"]["envs"]["items"]["required"] == ["name"]
    port = service["livenessProbe"]["properties"]["httpGet"]["properties"]["port"]
    assert port["x-kubernetes-int-or-string"] is True
    assert service["resources"]["properties"]["claims"]["items"]["required"] == ["name"]
    size = service["sharedMemory"]["properties"]["size"]
    assert size["x-kubernetes-int-or-string"] is True and "pattern" in size


def test_dgdsa_crd(rendered: dict[str, str]) -> None:
    crd = _load(rendered[crds.DGDSA_FILE])
    spec = crd["spec"]
    assert spec["names"]["shortNames"] == ["dgdsa"]
    version = _version(rendered[crds.DGDSA_FILE])
    beta = _version(rendered[crds.DGDSA_FILE], "v1beta1")
    assert beta["storage"] is True and version["deprecated"] is True
    assert [c["jsonPath"] for c in beta["additionalPrinterColumns"]][1] == (
        ".spec.dgdRef.componentName"
    )
    assert beta["subresources"] == version["subresources"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "DGD", "SERVICE", "REPLICAS", "AGE",
    ]  # fmt: skip
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert schema["required"] == ["replicas", "dgdRef"]
    assert schema["properties"]["replicas"]["minimum"] == 0


def test_generator_rejects_non_structural_models() -> None:
    from pydantic import BaseModel

    class Pair(BaseModel):
        pair: tuple[int, str]

    class Left(BaseModel):
        a: int

    class Right(BaseModel):
        b: str

    class Either(BaseModel):
        value: Left | Right

    for model in (Pair, Either):
        with pytest.raises(crds.SchemaError):
            crds.model_schema(model)
