"""Generate the CustomResourceDefinitions from the pydantic API models.

    python -m dgd_operator.codegen.crds --write --crd-dir crds --crd-dir charts/dgd-operator/crds
    python -m dgd_operator.codegen.crds --check --crd-dir ...   # exit 1 when a file differs

Files: one YAML file per CRD in every `--crd-dir` (the repository keeps `crds/` and
byte-identical copies in the chart and in the package, `dgd_operator/crds/`, which the operator
applies on start; `make crds` names all three), and the vendored Kubernetes schemas
`dgd_operator/api/k8s_schemas.json` (package data, found beside the module).

The models give pydantic's JSON schema (`by_alias=True`, validation mode); a post-pass turns it
into a Kubernetes *structural* schema: references inlined, Optional as `nullable`, `const` as a
one-item `enum`, free-form objects as `x-kubernetes-preserve-unknown-fields`, no titles and no
`default: null`. Fields that embed Kubernetes core types (PodSpec, Container, EnvVar, Probe,
ResourceClaim) get the real Kubernetes 1.34 schemas, taken from the JSON schemas that the
`kubernetes-validate` package ships (a development dependency: only this generator needs it),
made structural the same way and stripped of descriptions to keep the CRD small.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import core_schema

from dgd_operator.api import k8s, v1beta1
from dgd_operator.api.constants import (
    API_GROUP,
    API_VERSION,
    API_VERSION_V1BETA1,
    DGD_KIND,
    DGD_PLURAL,
    DGDSA_KIND,
    DGDSA_PLURAL,
    DWM_KIND,
    DWM_PLURAL,
)
from dgd_operator.api.models import (
    MAX_SERVICES,
    QUANTITY_PATTERN,
    DynamoGraphDeployment,
    DynamoGraphDeploymentScalingAdapter,
)

DGD_FILE = "nvidia.com_dynamographdeployments.yaml"
DGDSA_FILE = "nvidia.com_dynamographdeploymentscalingadapters.yaml"
DWM_FILE = "nvidia.com_dynamoworkermetadatas.yaml"

# Where the committed CRDs send ConversionReviews: the chart's webhook Service in its default
# release. The operator rewrites it (and the caBundle) for the Service it actually runs behind;
# the local control plane installs the CRDs with the URL of its own webhook server instead.
CONVERSION_SERVICE = {"name": "dgd-operator-webhook", "namespace": "dgd-system"}
CONVERT_PATH = "/convert"

Schema = dict[str, Any]

# Dynamo's CEL rules, attached to the schema of a model.
CEL_RULES: dict[str, list[Schema]] = {
    "DynamoGraphDeploymentSpec": [
        {
            # optionalOldSelf: the rule also runs on create, where oldSelf has no value.
            "rule": "oldSelf.hasValue() || !has(self.restart)",
            "optionalOldSelf": True,
            "fieldPath": ".restart",
            "message": "spec.restart must be unset when the DynamoGraphDeployment is created",
        },
        # Dynamo's webhook rules, as CEL: there is no admission webhook to enforce them.
        {
            "rule": (
                "!has(self.restart) || !has(self.restart.strategy) || "
                "!has(self.restart.strategy.order) || size(self.restart.strategy.order) == 0 || "
                "self.restart.strategy.type != 'Parallel'"
            ),
            "fieldPath": ".restart.strategy.order",
            "message": "spec.restart.strategy.order must not be set when strategy.type is Parallel",
        },
        {
            "rule": (
                "!has(self.restart) || !has(self.restart.strategy) || "
                "!has(self.restart.strategy.order) || size(self.restart.strategy.order) == 0 || "
                "self.restart.strategy.type == 'Parallel' || (size(self.restart.strategy.order) == size(self.services) && "
                "self.services.all(s, s in self.restart.strategy.order))"
            ),
            "fieldPath": ".restart.strategy.order",
            "message": "spec.restart.strategy.order must list every service exactly once",
        },
    ],
    "IngressSpec": [
        {
            "rule": "!has(self.enabled) || !self.enabled || (has(self.host) && self.host != '')",
            "fieldPath": ".host",
            "message": "ingress.host is required when ingress.enabled is true",
        }
    ],
    "VolumeMount": [
        {
            "rule": (
                "(has(self.mountPoint) && self.mountPoint != '') || "
                "(has(self.useAsCompilationCache) && self.useAsCompilationCache)"
            ),
            "fieldPath": ".mountPoint",
            "message": "volumeMounts[].mountPoint is required unless useAsCompilationCache is true",
        }
    ],
    "SharedMemory": [
        {
            "rule": "!(has(self.disabled) && self.disabled && has(self.size))",
            "fieldPath": ".size",
            "message": "sharedMemory.size must be unset when sharedMemory.disabled is true",
        }
    ],
    "PVC": [
        {
            "rule": (
                "!has(self.create) || self.create == false || (has(self.size) && "
                "has(self.storageClass) && has(self.volumeAccessMode))"
            ),
            "message": "size, storageClass and volumeAccessMode are required when create is true",
        }
    ],
}
# Keys the API server does not accept in a CRD schema (or that only matter to clients).
_DROPPED_K8S_KEYS = (
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-patch-strategy",
    "x-kubernetes-unions",
    "$schema",
    "$id",
)
# list-map keys must be required or defaulted in a CRD; Kubernetes defaults these server-side.
_LIST_MAP_KEY_DEFAULTS = {"protocol": "TCP", "name": ""}


class CRDSchemaGenerator(GenerateJsonSchema):
    """pydantic's JSON schema generator, minus titles (noise in `kubectl explain`)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        """Never emit field titles."""
        return False

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        """Emit a model's schema without its title."""
        value = super().model_schema(schema)
        value.pop("title", None)
        return value

    def generate(
        self, schema: core_schema.CoreSchema, mode: JsonSchemaMode = "validation"
    ) -> JsonSchemaValue:
        """Generate, then drop titles left on definitions."""
        value = super().generate(schema, mode=mode)
        for definition in value.get("$defs", {}).values():
            definition.pop("title", None)
        value.pop("title", None)
        return value


class SchemaError(ValueError):
    """A model cannot be expressed as a structural schema."""


# --- Kubernetes core schemas (generation time only) -------------------------------------------


def _kubernetes_definitions() -> dict[str, Schema]:
    import kubernetes_validate  # development dependency, needed only to generate

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = base / f"{k8s.KUBERNETES_SCHEMA_VERSION}-local" / "_definitions.json"
    definitions: dict[str, Schema] = json.loads(path.read_text())["$defs"]
    return definitions


class KubernetesSchemas:
    """Structural, description-free schemas of Kubernetes definitions (by their full name)."""

    def __init__(self, definitions: dict[str, Schema] | None = None) -> None:
        self._definitions = definitions if definitions is not None else _kubernetes_definitions()
        self._cache: dict[str, Schema] = {}

    def get(self, name: str) -> Schema:
        """The structural schema of one definition, e.g. `io.k8s.api.core.v1.PodSpec`."""
        if name not in self._cache:
            self._cache[name] = self._convert(self._definitions[name], (name,))
        return copy.deepcopy(self._cache[name])

    def _convert(self, schema: Schema, stack: tuple[str, ...]) -> Schema:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name in stack:  # a recursive type cannot be inlined: keep it open
                return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            return self._convert(self._definitions[name], (*stack, name))
        if "oneOf" in schema:
            # IntOrString and Quantity: the two scalar alternatives.
            result: Schema = {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": True,
            }
            if stack[-1].endswith("resource.Quantity"):
                result["pattern"] = QUANTITY_PATTERN
            return result
        result = {}
        for key, value in schema.items():
            if key in _DROPPED_K8S_KEYS or key == "description":
                continue
            if key == "type":
                types = [t for t in (value if isinstance(value, list) else [value]) if t != "null"]
                if len(types) != 1:
                    raise SchemaError(f"{stack[-1]}: ambiguous type {value}")
                result["type"] = types[0]
            elif key == "properties":
                result["properties"] = {k: self._convert(v, stack) for k, v in value.items()}
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                result[key] = self._convert(value, stack)
            else:
                result[key] = copy.deepcopy(value)
        if "properties" in result:
            result.setdefault("type", "object")
        if (
            result.get("type") == "object"
            and "properties" not in result
            and "additionalProperties" not in result
        ):
            result["x-kubernetes-preserve-unknown-fields"] = True
        if "type" not in result and "x-kubernetes-preserve-unknown-fields" not in result:
            raise SchemaError(f"{stack[-1]}: no type")
        if result.get("x-kubernetes-list-type") == "map":
            item = result["items"]
            for key in result.get("x-kubernetes-list-map-keys", []):
                prop = item["properties"][key]
                if key not in item.get("required", []) and "default" not in prop:
                    prop["default"] = _LIST_MAP_KEY_DEFAULTS[key]
        return result


# --- pydantic schema -> structural schema -----------------------------------------------------


def pod_template_schema() -> Schema:
    """A PodTemplateSpec: open metadata (labels, annotations) and a full PodSpec."""
    return {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "spec": k8s.definition(k8s.POD_SPEC),
        },
    }


def _config_map_key_selector() -> Schema:
    return {
        "type": "object",
        "required": ["key"],
        "properties": {
            "key": {"type": "string"},
            "name": {"type": "string", "default": ""},
            "optional": {"type": "boolean"},
        },
        "x-kubernetes-map-type": "atomic",
    }


# Kubernetes definitions the v1beta1 models embed that the vendored file does not hold whole.
_COMPOSED_DEFINITIONS: dict[str, Callable[[], Schema]] = {
    k8s.CORE + "PodTemplateSpec": pod_template_schema,
    k8s.CORE + "ConfigMapKeySelector": _config_map_key_selector,
}


def _embedded(name: str, is_list: bool) -> Schema:
    if name in _COMPOSED_DEFINITIONS:
        schema = _COMPOSED_DEFINITIONS[name]()
        return {"type": "array", "items": schema} if is_list else schema
    return k8s.embedded_field_schema(name, is_list)


def model_schema(
    model: type[BaseModel],
    *,
    embedded: dict[tuple[str, str], tuple[str, bool]] | None = None,
    cel_rules: dict[str, list[Schema]] | None = None,
) -> Schema:
    """The structural openAPIV3Schema of one API model.

    `embedded` (model, wire name) -> Kubernetes definition and `cel_rules` (keyed by model name,
    or `Model.wireName` for one property) default to those of the v1alpha1 models.
    """
    embedded = k8s.EMBEDDED_FIELDS if embedded is None else embedded
    cel_rules = CEL_RULES if cel_rules is None else cel_rules
    raw = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=CRDSchemaGenerator
    )
    definitions: dict[str, Schema] = raw.pop("$defs", {})
    for name, definition in definitions.items():
        for (model_name, field_name), (k8s_name, is_list) in embedded.items():
            if model_name == name and field_name in definition.get("properties", {}):
                prop = definition["properties"][field_name]
                description = prop.get("description")
                prop.clear()
                prop.update(_embedded(k8s_name, is_list))
                if description:
                    prop["description"] = description
        if name in cel_rules:
            definition["x-kubernetes-validations"] = copy.deepcopy(cel_rules[name])
        for key, rules in cel_rules.items():
            owner, _, prop_name = key.partition(".")
            if owner == name and prop_name in definition.get("properties", {}):
                target = definition["properties"][prop_name]
                target["x-kubernetes-validations"] = copy.deepcopy(rules)
    if "ExtraPodSpec" in definitions:
        original = definitions["ExtraPodSpec"]
        definitions["ExtraPodSpec"] = k8s.extra_pod_spec_schema(
            original.get("description", ""),
            original["properties"]["mainContainer"].get("description", ""),
        )
    return _structural(raw, definitions, ())


def _structural(schema: Schema, definitions: dict[str, Schema], stack: tuple[str, ...]) -> Schema:
    schema = dict(schema)
    if "$ref" in schema:
        name = schema.pop("$ref").rsplit("/", 1)[-1]
        if name in stack:
            raise SchemaError(f"recursive model {name} cannot be inlined")
        target = _structural(definitions[name], definitions, (*stack, name))
        # The field's own description wins over the model's docstring.
        return {**target, **{k: v for k, v in schema.items() if k != "allOf"}}
    if "allOf" in schema and len(schema["allOf"]) == 1:
        inner = _structural(schema.pop("allOf")[0], definitions, stack)
        return {**inner, **_structural(schema, definitions, stack)}
    for variants_key in ("anyOf", "oneOf"):
        if variants_key in schema and not schema.get("x-kubernetes-int-or-string"):
            variants = schema.pop(variants_key)
            non_null = [v for v in variants if v.get("type") != "null"]
            if len(non_null) != 1:
                raise SchemaError(f"unions are not structural: {variants}")
            merged = {
                **_structural(non_null[0], definitions, stack),
                **_structural(schema, definitions, stack),
            }
            if len(non_null) != len(variants):
                merged["nullable"] = True
            return merged
    result: Schema = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key == "default" and value in (None, False, [], {}):
            # Only meaningful defaults go to the API server: an empty default would be
            # written into every stored object and show up in `kubectl get -o yaml`.
            continue
        if key == "prefixItems":
            raise SchemaError("tuples are not structural")
        if key == "const":
            result["enum"] = [value]
            result.setdefault("type", _json_type(value))
        elif key == "properties":
            result["properties"] = {k: _structural(v, definitions, stack) for k, v in value.items()}
        elif key == "items" and isinstance(value, dict):
            result["items"] = _structural(value, definitions, stack)
        elif key == "additionalProperties":
            if value is False:
                continue  # pruning discards unknown fields anyway
            if value is True or value == {}:
                result["x-kubernetes-preserve-unknown-fields"] = True
            else:
                result["additionalProperties"] = _structural(value, definitions, stack)
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            result["minimum"] = value
            result["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            result["maximum"] = value
            result["exclusiveMaximum"] = True
        elif key == "maxLength" and schema.get("type") == "object":
            result["maxProperties"] = value
        elif key == "minLength" and schema.get("type") == "object":
            result["minProperties"] = value
        else:
            result[key] = value
    if (
        result.get("type") == "object"
        and "properties" not in result
        and "additionalProperties" not in result
    ):
        result["x-kubernetes-preserve-unknown-fields"] = True
    return result


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "string"


# --- the CRDs ----------------------------------------------------------------------------


# `gpuMemoryService.extraClientPods` is reserved (a CEL rule keeps it empty): an open object there
# instead of a second full PodTemplateSpec keeps the CRD a third smaller.
_V1BETA1_EMBEDDED = {
    key: value
    for key, value in v1beta1.EMBEDDED_FIELDS.items()
    if key != ("ExtraClientPod", "podTemplate")
}


def _object_schema(
    model: type[BaseModel], tweak: Callable[[Schema], None], version: str = API_VERSION
) -> Schema:
    if version == API_VERSION_V1BETA1:
        schema = model_schema(model, embedded=_V1BETA1_EMBEDDED, cel_rules=v1beta1.CEL_RULES)
    else:
        schema = model_schema(model)
    properties = schema["properties"]
    properties["apiVersion"] = {
        "type": "string",
        "description": f"APIVersion of this object: `{API_GROUP}/{version}`.",
    }
    properties["kind"] = {
        "type": "string",
        "description": f"Kind of this object: `{model.__name__}`.",
    }
    properties["metadata"] = {"type": "object"}
    schema["required"] = ["spec"]
    tweak(schema)
    return schema


def _dgd_tweaks(schema: Schema) -> None:
    services = schema["properties"]["spec"]["properties"]["services"]
    services["maxProperties"] = MAX_SERVICES
    services["minProperties"] = 1  # Dynamo's webhook: at least one service
    state = schema["properties"]["status"]["properties"]["state"]
    state["default"] = "initializing"
    state.pop("nullable", None)


def _dgd_v1beta1_tweaks(schema: Schema) -> None:
    # Dynamo's v1beta1 CRD has no top-level `required` (an empty spec is refused by the
    # webhook, which asks for at least one component).
    schema.pop("required", None)
    components = schema["properties"]["spec"]["properties"]["components"]
    components["maxItems"] = v1beta1.MAX_COMPONENTS
    components.setdefault("x-kubernetes-list-type", "map")
    components.setdefault("x-kubernetes-list-map-keys", ["name"])
    state = schema["properties"]["status"]["properties"]["state"]
    state["default"] = "initializing"
    state.pop("nullable", None)
    schema["properties"]["status"]["required"] = ["state"]


def _no_tweaks(schema: Schema) -> None:
    """The scaling adapter's schema needs nothing beyond what the model says."""


def _dwm_schema() -> Schema:
    """DynamoWorkerMetadata: `spec.data` is the runtime's document, kept whole (§6.1)."""
    return {
        "type": "object",
        "description": (
            "A DynamoWorkerMetadata is the discovery document one Dynamo runtime process "
            "publishes (endpoints, model cards, event channels); named after its pod and "
            "owned by it. The operator never reads it."
        ),
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            },
        },
    }


def _version(
    name: str,
    schema: Schema,
    *,
    storage: bool,
    columns: list[Schema],
    subresources: Schema | None,
    deprecation: str | None = None,
) -> Schema:
    version: Schema = {
        "name": name,
        "served": True,
        "storage": storage,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": columns,
    }
    if subresources is not None:
        version["subresources"] = subresources
    if deprecation:
        version["deprecated"] = True
        version["deprecationWarning"] = deprecation
    return version


def deprecation_warning(kind: str) -> str:
    """The API server's `Warning:` on every v1alpha1 request of `kind`."""
    return f"{API_GROUP}/{API_VERSION} {kind} is deprecated; use {API_GROUP}/{API_VERSION_V1BETA1} {kind}"


def webhook_conversion(client_config: Schema) -> Schema:
    """`spec.conversion` sending ConversionReviews v1 to `client_config`."""
    return {
        "strategy": "Webhook",
        "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": client_config},
    }


def default_conversion() -> Schema:
    """The committed CRDs' conversion: the chart's webhook Service (see CONVERSION_SERVICE)."""
    service = {**CONVERSION_SERVICE, "path": CONVERT_PATH, "port": 443}
    return webhook_conversion({"service": service})


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    versions: list[Schema],
    description: str,
    conversion: Schema | None = None,
    categories: list[str] | None = None,
) -> Schema:
    for version in versions:
        openapi = version["schema"]["openAPIV3Schema"]
        version["schema"]["openAPIV3Schema"] = {**openapi, "description": description}
    names: Schema = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": short_names,
    }
    if categories:
        names["categories"] = categories
    spec: Schema = {"group": API_GROUP, "names": names, "scope": "Namespaced"}
    if conversion is not None:
        spec["conversion"] = conversion
    spec["versions"] = versions
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/part-of": "dgd"},
            # Helm never deletes them on uninstall (Dynamo's CRDs say the same).
            "annotations": {"helm.sh/resource-policy": "keep"},
        },
        "spec": spec,
    }


def build_crds(conversion: Schema | None = None) -> dict[str, Schema]:
    """Every CRD as plain dicts, keyed by file name.

    DGD and DGDSA serve v1beta1 (storage) and v1alpha1 (deprecated), converted by the webhook
    at `conversion` (default: the chart's Service, `default_conversion()`).
    """
    conversion = conversion or default_conversion()
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    dgd_columns: list[Schema] = [
        {
            "name": "Ready",
            "type": "string",
            "description": "Ready condition of the graph",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {
            "name": "State",
            "type": "string",
            "description": "State of the graph: initializing, pending, successful or failed",
            "jsonPath": ".status.state",
        },
        {
            "name": "Backend",
            "type": "string",
            "description": "Backend framework",
            "jsonPath": ".spec.backendFramework",
        },
        age,
        {
            "name": "Message",
            "type": "string",
            "description": "Why the graph is (not) ready: the Ready condition's message",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
            "priority": 1,
        },
    ]
    dgd = _crd(
        kind=DGD_KIND,
        plural=DGD_PLURAL,
        short_names=["dgd"],
        categories=["dynamo"],
        conversion=copy.deepcopy(conversion),
        versions=[
            _version(
                API_VERSION,
                _object_schema(DynamoGraphDeployment, _dgd_tweaks),
                storage=False,
                columns=copy.deepcopy(dgd_columns),
                subresources={"status": {}},
                deprecation=deprecation_warning(DGD_KIND),
            ),
            _version(
                API_VERSION_V1BETA1,
                _object_schema(
                    v1beta1.DynamoGraphDeployment, _dgd_v1beta1_tweaks, API_VERSION_V1BETA1
                ),
                storage=True,
                columns=dgd_columns,
                subresources={"status": {}},
            ),
        ],
        description=(
            "A DynamoGraphDeployment is a graph of LLM inference components (frontend, "
            "prefill and decode workers, planner) that the dgd operator runs as "
            "Deployments, StatefulSets and Services."
        ),
    )
    scale = {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }

    def adapter_columns(ref: str, title: str) -> list[Schema]:
        return [
            {"name": "DGD", "type": "string", "jsonPath": ".spec.dgdRef.name"},
            {"name": title, "type": "string", "jsonPath": f".spec.dgdRef.{ref}"},
            {"name": "REPLICAS", "type": "integer", "jsonPath": ".status.replicas"},
            {**age, "name": "AGE"},
        ]

    dgdsa = _crd(
        kind=DGDSA_KIND,
        plural=DGDSA_PLURAL,
        short_names=["dgdsa"],
        categories=["dynamo"],
        conversion=copy.deepcopy(conversion),
        versions=[
            _version(
                API_VERSION,
                _object_schema(DynamoGraphDeploymentScalingAdapter, _no_tweaks),
                storage=False,
                columns=adapter_columns("serviceName", "SERVICE"),
                subresources=copy.deepcopy(scale),
                deprecation=deprecation_warning(DGDSA_KIND),
            ),
            _version(
                API_VERSION_V1BETA1,
                _object_schema(
                    v1beta1.DynamoGraphDeploymentScalingAdapter, _no_tweaks, API_VERSION_V1BETA1
                ),
                storage=True,
                columns=adapter_columns("componentName", "COMPONENT"),
                subresources=scale,
            ),
        ],
        description=(
            "A DynamoGraphDeploymentScalingAdapter exposes the replicas of one "
            "DynamoGraphDeployment component through the /scale subresource, for HPA, KEDA "
            "or a planner."
        ),
    )
    dwm = _crd(
        kind=DWM_KIND,
        plural=DWM_PLURAL,
        short_names=["dwm"],
        versions=[
            _version(API_VERSION, _dwm_schema(), storage=True, columns=[age], subresources=None)
        ],
        description=_dwm_schema()["description"],
    )
    return {DGD_FILE: dgd, DGDSA_FILE: dgdsa, DWM_FILE: dwm}


HEADER = "# Generated by `make crds` (dgd_operator.codegen.crds) from dgd_operator.api.models. Do not edit.\n"


def render(crd: Schema) -> str:
    """Deterministic YAML text of one CRD."""
    return HEADER + yaml.safe_dump(crd, sort_keys=True, default_flow_style=False, width=100)


def rendered_crds(conversion: Schema | None = None) -> dict[str, str]:
    """File name -> YAML text for every CRD (conversion: see `build_crds`)."""
    return {name: render(crd) for name, crd in build_crds(conversion).items()}


def vendored_k8s_schemas(kubernetes: KubernetesSchemas | None = None) -> str:
    """The text of `dgd_operator/api/k8s_schemas.json`, converted from kubernetes-validate."""
    kubernetes = kubernetes or KubernetesSchemas()
    document = {
        "comment": "Generated by `make crds` (dgd_operator.codegen.crds) from kubernetes-validate. Do not edit.",
        "kubernetesVersion": k8s.KUBERNETES_SCHEMA_VERSION,
        "definitions": {name: kubernetes.get(name) for name in k8s.VENDORED_DEFINITIONS},
    }
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def _clear_caches() -> None:
    for function in (k8s._vendored, k8s._extra_pod_spec, k8s._field_schema):
        function.cache_clear()


def main(argv: list[str] | None = None) -> int:
    """Write or check the vendored Kubernetes schemas and the committed CRD files."""
    parser = argparse.ArgumentParser(
        prog="python -m dgd_operator.codegen.crds", description=(__doc__ or "").split("\n\n")[0]
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the committed files")
    mode.add_argument("--check", action="store_true", help="fail when a committed file differs")
    parser.add_argument(
        "--crd-dir",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="directory holding the CRD files (repeat for each copy)",
    )
    args = parser.parse_args(argv)
    stale: list[Path] = []

    def sync(path: Path, text: str) -> None:
        if path.exists() and path.read_text() == text:
            return
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path} ({len(text) // 1024} KiB)")
        else:
            stale.append(path)

    sync(k8s.SCHEMA_FILE, vendored_k8s_schemas())
    _clear_caches()
    for name, text in rendered_crds().items():
        for directory in args.crd_dir:
            sync(directory / name, text)
    for path in stale:
        print(
            f"{path} is out of date: run `make crds`",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
