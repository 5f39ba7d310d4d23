"""Conversion of DGD and DGDSA objects between `nvidia.com/v1alpha1` and `nvidia.com/v1beta1`.

v1beta1 is the hub (what is stored and what the operator works on), v1alpha1 a spoke. The rules
are Dynamo's (`../shared/reference/dynamo-v1beta1.md` §3), on plain wire dicts as a
ConversionReview carries them. Conversion is pure: it never reads cluster state and never
mutates its input.

What one version cannot hold travels in Dynamo's two annotations, so objects stored by Dynamo's
operator read back the same through ours and the other way round:

* `nvidia.com/dgd-spec` on a v1beta1 object holds a sparse *v1alpha1* spec (alpha-only fields
  such as `pvcs` or service `annotations`, odd shapes, and the "origin splits" that tell the way
  down which values of the merged `main` container came from dedicated alpha fields); on a
  v1alpha1 view it holds a sparse *v1beta1* spec (component order, which components had a pod
  template, and whatever else alpha cannot say). Envelope: `{"version":1,"spec":...}`.
* `nvidia.com/dgd-status` on a v1beta1 object holds the alpha `componentName` values that the
  v1beta1 status cannot express (plain JSON of a sparse status).

Each conversion reads the payload the opposite direction left, drops both keys, converts the
live fields (live values always win), restores target-only data from the payload and writes a
fresh payload only when something would otherwise be lost. Beyond Dynamo's rules, every
component is checked to convert back to exactly its source; one that would not (an unusual
shape Dynamo's rules flatten) is saved whole in the payload and restored whole while the live
object still matches it, so an unchanged object always survives a round trip exactly. That
also keeps a service's or component's unknown fields (which an API server would have pruned);
an unknown graph-level field is a `ConversionError` naming its path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from dgd_operator.api.constants import (
    ANNOTATION_DGD_SPEC,
    ANNOTATION_DGD_STATUS,
    API_GROUP,
    CONVERSION_PAYLOAD_VERSION,
    DGD_KIND,
    DGDSA_KIND,
    GPU_RESOURCE,
    GROUP_VERSION,
    GROUP_VERSION_V1BETA1,
)
from dgd_operator.api.models import FRONTEND_SIDECAR_CONTAINER, parse_quantity
from dgd_operator.api.tree import json_copy
from dgd_operator.api.v1beta1 import MAIN_CONTAINER

V1ALPHA1: Final = GROUP_VERSION
V1BETA1: Final = GROUP_VERSION_V1BETA1
SIDECAR_FRONTEND: Final = FRONTEND_SIDECAR_CONTAINER
MAIN: Final = MAIN_CONTAINER
GPU: Final = GPU_RESOURCE

Obj = dict[str, Any]

# Graph-level keys copied unchanged between the versions.
_GRAPH_VERBATIM = (
    "providerOverride",
    "annotations",
    "labels",
    "priorityClassName",
    "backendFramework",
    "restart",
    "experimental",
)
_ALPHA_SPEC_KEYS = frozenset((*_GRAPH_VERBATIM, "services", "envs", "topologyConstraint", "pvcs"))
_BETA_SPEC_KEYS = frozenset((*_GRAPH_VERBATIM, "components", "env", "topologyConstraint"))
# Component keys copied unchanged.
_COMPONENT_VERBATIM = (
    "providerOverride",
    "runtimeVersionOverride",
    "globalDynamoNamespace",
    "replicas",
    "minAvailable",
    "multinode",
    "modelRef",
    "topologyConstraint",
    "eppConfig",
)
# Service fields v1beta1 has no place for: kept in the payload only.
_ALPHA_ONLY = ("annotations", "labels", "dynamoNamespace", "autoscaling", "ingress")
# Dedicated alpha field -> the `main` container field it is projected into.
_PROJECTED = (
    ("envs", "env"),
    ("envFromSecret", "envFrom"),
    ("resources", "resources"),
    ("volumeMounts", "volumeMounts"),
    ("livenessProbe", "livenessProbe"),
    ("readinessProbe", "readinessProbe"),
)
_PROJECTED_CONTAINER_KEYS = frozenset(field for _, field in _PROJECTED)
_PROMOTED_SUB_TYPES = ("prefill", "decode")
_MODES_UP = {"intraPod": "IntraPod", "interPod": "InterPod"}
_MODES_DOWN = {beta: alpha for alpha, beta in _MODES_UP.items()}


class ConversionError(ValueError):
    """An object cannot be converted; the message names the field path."""


# --- entry points ----------------------------------------------------------------------------


def convert(obj: Obj, to_version: str) -> Obj:
    """Return `obj` converted to `to_version` (`v1beta1`, `nvidia.com/v1alpha1`, ...).

    DynamoGraphDeployments and their scaling adapters of either version are converted; any
    other object, or one already at the target version, is returned as an unchanged copy.
    """
    target = to_version if "/" in to_version else f"{API_GROUP}/{to_version}"
    if target not in (V1ALPHA1, V1BETA1):
        raise ConversionError(f"cannot convert to {to_version!r}: expected v1alpha1 or v1beta1")
    source = obj.get("apiVersion")
    kind = obj.get("kind")
    if kind not in (DGD_KIND, DGDSA_KIND) or source not in (V1ALPHA1, V1BETA1) or source == target:
        return json_copy(obj)
    if kind == DGDSA_KIND:
        return scaling_adapter_to(obj, target)
    if target == V1BETA1:
        return dgd_to_v1beta1(obj)
    return dgd_to_v1alpha1(obj)


def dgd_to_v1beta1(obj: Obj) -> Obj:
    """Convert a v1alpha1 DynamoGraphDeployment (wire dict) up to v1beta1."""
    obj = _own_metadata(obj)
    out = _envelope(obj, V1BETA1)
    hub_text, hub_status_text = _take_payloads(out)
    hub = _read_spec_payload(hub_text)
    if hub_status_text is not None:
        _read_status_payload(hub_status_text)  # nothing beta-only lives in status; must parse
    if obj.get("spec") is not None:
        spec, spoke = _spec_up(_mapping(obj["spec"], "spec"), hub, alpha_origin=hub_text is None)
        out["spec"] = spec
        if spoke:
            _annotate(out, ANNOTATION_DGD_SPEC, _write_spec_payload(spoke))
    elif "spec" in obj:
        out["spec"] = None
    if obj.get("status") is not None:
        status, saved = _status_up(_mapping(obj["status"], "status"))
        out["status"] = status
        if saved:
            _annotate(out, ANNOTATION_DGD_STATUS, _json(saved))
    elif "status" in obj:
        out["status"] = None
    fresh: Obj = _fresh(out)
    return fresh


def dgd_to_v1alpha1(obj: Obj) -> Obj:
    """Convert a v1beta1 DynamoGraphDeployment (wire dict) down to v1alpha1."""
    obj = _own_metadata(obj)
    out = _envelope(obj, V1ALPHA1)
    spoke_text, spoke_status_text = _take_payloads(out)
    spoke = _read_spec_payload(spoke_text)
    saved_status = _read_status_payload(spoke_status_text) if spoke_status_text else {}
    if obj.get("spec") is not None:
        spec, hub = _spec_down(_mapping(obj["spec"], "spec"), spoke, markers=spoke_text is None)
        out["spec"] = spec
        if hub:
            _annotate(out, ANNOTATION_DGD_SPEC, _write_spec_payload(hub))
    elif "spec" in obj:
        out["spec"] = None
    if obj.get("status") is not None:
        out["status"] = _status_down(_mapping(obj["status"], "status"), saved_status)
    elif "status" in obj:
        out["status"] = None
    fresh: Obj = _fresh(out)
    return fresh


def scaling_adapter_to(obj: Obj, target: str) -> Obj:
    """Convert a DynamoGraphDeploymentScalingAdapter: `dgdRef.serviceName` <-> `componentName`."""
    out = json_copy(obj)
    out["apiVersion"] = target
    ref = (out.get("spec") or {}).get("dgdRef")
    if isinstance(ref, dict):
        old, new = (
            ("serviceName", "componentName")
            if target == V1BETA1
            else ("componentName", "serviceName")
        )
        if old in ref:
            ref[new] = ref.pop(old)
    return out


def status_to_v1beta1(status: Obj) -> Obj:
    """A v1alpha1-shaped DGD status in the v1beta1 shape (`services` -> `components`, ...).

    For statuses the operator calculates itself, written natively at v1beta1 as Dynamo's
    controller does: the deprecated `componentName` is not kept (v1alpha1 readers get the last
    of `componentNames` back, `status_to_v1alpha1`), which is all the operator ever means by it.
    """
    out, _ = _status_up(json_copy(status))
    return out


def rolling_update_to_v1alpha1(rolling_update: Obj) -> Obj:
    """`status.rollingUpdate` in v1alpha1 spelling (`updatedComponents` -> `updatedServices`)."""
    renamed: Obj = _rename(rolling_update, "updatedComponents", "updatedServices")
    return renamed


def status_to_v1alpha1(status: Obj, annotations: Obj | None = None) -> Obj:
    """The v1alpha1 view of a v1beta1 DGD status (`annotations`: the object's, whose
    `nvidia.com/dgd-status` payload restores what v1beta1 could not hold)."""
    text = (annotations or {}).get(ANNOTATION_DGD_STATUS)
    try:
        saved = _read_status_payload(text) if isinstance(text, str) else {}
    except ConversionError:
        saved = {}  # an unreadable payload restores nothing (the status is still readable)
    return _status_down(json_copy(status), saved)


# --- annotations and payloads -----------------------------------------------------------------


def _own_metadata(obj: Obj) -> Obj:
    """`obj` with its own top level, `metadata` and `metadata.annotations`: the only parts a
    conversion edits in place (the payload annotations are taken out). Everything else is
    only read, and the result is copied whole at the end (`_fresh`), so the input is never
    changed and never shared, without copying the object twice.
    """
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta = out["metadata"] = dict(meta)
        if isinstance(meta.get("annotations"), dict):
            meta["annotations"] = dict(meta["annotations"])
    return out


def _envelope(obj: Obj, api_version: str) -> Obj:
    """Top-level keys other than spec and status, in their original order, new apiVersion."""
    out: Obj = {}
    for key, value in obj.items():
        if key == "apiVersion":
            out[key] = api_version
        elif key not in ("spec", "status"):
            out[key] = value
    out.setdefault("apiVersion", api_version)
    return out


def _take_payloads(obj: Obj) -> tuple[str | None, str | None]:
    annotations = (obj.get("metadata") or {}).get("annotations")
    if not isinstance(annotations, dict):
        return None, None
    spec = annotations.pop(ANNOTATION_DGD_SPEC, None)
    status = annotations.pop(ANNOTATION_DGD_STATUS, None)
    if not annotations and (spec is not None or status is not None):
        del obj["metadata"]["annotations"]
    return spec, status


def _annotate(obj: Obj, key: str, value: str) -> None:
    metadata = obj.setdefault("metadata", {})
    metadata.setdefault("annotations", {})[key] = value


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _write_spec_payload(spec: Obj) -> str:
    return _json({"version": CONVERSION_PAYLOAD_VERSION, "spec": spec})


def _read_spec_payload(text: str | None) -> Obj:
    """The sparse spec in a payload; `{}` when absent or unreadable (Dynamo ignores those too)."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    spec = data.get("spec", data)  # a payload without "spec" is a bare legacy spec
    return spec if isinstance(spec, dict) else {}


def _read_status_payload(text: str | None) -> Obj:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConversionError(
            f"metadata.annotations[{ANNOTATION_DGD_STATUS}]: not JSON: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConversionError(f"metadata.annotations[{ANNOTATION_DGD_STATUS}]: not a JSON object")
    return data


# --- graph level ------------------------------------------------------------------------------


def _spec_up(spec: Obj, hub: Obj, *, alpha_origin: bool) -> tuple[Obj, Obj]:
    _check_keys(spec, _ALPHA_SPEC_KEYS, "spec")
    out: Obj = {}
    spoke: Obj = {}
    for key in _GRAPH_VERBATIM:
        if key in spec:
            out[key] = spec[key]
    if "envs" in spec:
        out["env"] = spec["envs"]
    if "topologyConstraint" in spec:
        out["topologyConstraint"] = _rename(
            spec["topologyConstraint"], "topologyProfile", "clusterTopologyName"
        )
    if spec.get("pvcs"):
        # Dynamo marshals a PVC's zero size as "0"; keep its payload shape.
        spoke["pvcs"] = [
            {**pvc, "size": pvc.get("size", "0")} if isinstance(pvc, dict) else pvc
            for pvc in spec["pvcs"]
        ]
    if spec.get("services") is not None:
        services = _mapping(spec["services"], "spec.services")
        hub_entries = _hub_entries(hub)
        components: list[Obj] = []
        saved: Obj = {}
        for name in _component_order(list(services), list(hub_entries)):
            service = services[name]
            if service is None:
                saved[name] = None  # a null service: no component, remembered
                continue
            path = f"spec.services.{name}"
            component, entry = _component_from_service(
                name,
                _mapping(service, path),
                hub_entries.get(name),
                alpha_origin=alpha_origin,
                path=path,
            )
            components.append(component)
            if entry:
                saved[name] = entry
        out["components"] = components
        if saved:
            spoke["services"] = saved
    elif "services" in spec:
        out["components"] = None
    return out, spoke


def _spec_down(spec: Obj, spoke: Obj, *, markers: bool) -> tuple[Obj, Obj]:
    _check_keys(spec, _BETA_SPEC_KEYS, "spec")
    out: Obj = {}
    hub: Obj = {}
    for key in _GRAPH_VERBATIM:
        if key in spec:
            out[key] = spec[key]
    if "env" in spec:
        out["envs"] = spec["env"]
    if "topologyConstraint" in spec:
        out["topologyConstraint"] = _rename(
            spec["topologyConstraint"], "clusterTopologyName", "topologyProfile"
        )
    if isinstance(spoke.get("pvcs"), list) and spoke["pvcs"]:
        out["pvcs"] = [_strip_zero_size(pvc) for pvc in spoke["pvcs"]]
    if spec.get("components") is not None:
        components = spec["components"]
        if not isinstance(components, list):
            raise ConversionError("spec.components: must be a list")
        saved_services: Obj = spoke["services"] if isinstance(spoke.get("services"), dict) else {}
        services: Obj = {}
        converted: list[tuple[Obj | None, Obj]] = []
        names: list[str] = []
        for index, component in enumerate(components):
            path = f"spec.components[{index}]"
            component = _mapping(component, path)
            name = component.get("name")
            if not isinstance(name, str) or not name:
                raise ConversionError(f"{path}.name: required")
            if name in services:
                raise ConversionError(f"{path}.name: duplicate component name {name!r}")
            names.append(name)
            entry = saved_services.get(name)
            service, hub_entry = _service_from_component(
                component, entry if isinstance(entry, dict) else None, markers=markers, path=path
            )
            services[name] = service
            converted.append((hub_entry, component))
        for name, entry in saved_services.items():
            if entry is None and name not in services:
                services[name] = None
        out["services"] = services
        if names != sorted(names):
            # The order is kept by listing every component; a name alone would also say "had a
            # pod template", so a component without one is listed whole.
            hub_list = [
                entry if entry is not None else _order_entry(component)
                for entry, component in converted
            ]
        else:
            hub_list = [entry for entry, _ in converted if entry is not None]
        if hub_list:
            hub["components"] = hub_list
    elif "components" in spec:
        out["services"] = None
    return out, hub


def _order_entry(component: Obj) -> Obj:
    if "podTemplate" in component:
        return {"name": component["name"]}
    return json_copy(component)


def _hub_entries(hub: Obj) -> dict[str, Obj]:
    entries = hub.get("components")
    if not isinstance(entries, list):
        return {}
    return {e["name"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)}


def _component_order(names: list[str], hub_order: list[str]) -> list[str]:
    """Sorted (Go byte order), unless the hub payload preserved a different order."""
    if hub_order and hub_order != sorted(hub_order):
        kept = [name for name in hub_order if name in names]
        return kept + sorted(name for name in names if name not in hub_order)
    return sorted(names)


# --- component level: the wrappers that guarantee exact round trips ---------------------------


def _component_from_service(
    name: str, service: Obj, hub_entry: Obj | None, *, alpha_origin: bool, path: str
) -> tuple[Obj, Obj]:
    """(component, sparse alpha payload entry) for one service."""
    component, entry = _service_up(name, service, record_origin=alpha_origin, path=path)
    if hub_entry is not None:
        saved_view = _down_or_none(hub_entry)
        if (
            saved_view is not None
            and _service_up(name, saved_view, record_origin=False, path=path)[0] == component
        ):
            # A component saved whole on the way down, and the view still shows it unchanged
            # (compared after projecting both up, so alpha-only detail does not count).
            return json_copy(hub_entry), entry
        _restore_hub_leaves(component, hub_entry)
    elif alpha_origin and _component_down(component, entry, path=path) != service:
        entry = json_copy(service)  # Dynamo's rules would flatten something: keep it all
    return component, entry


def _service_from_component(
    component: Obj, entry: Obj | None, *, markers: bool, path: str
) -> tuple[Obj, Obj | None]:
    """(service, hub payload entry or None) for one component."""
    name = component["name"]
    service: Obj | None = None
    if entry is not None:
        try:
            # A whole service saved on the way up maps to this component, and (unlike a sparse
            # entry) is not what the up rules would have saved for itself.
            up_component, resaved = _service_up(name, entry, record_origin=True, path=path)
            if up_component == component and resaved != entry:
                service = json_copy(entry)
        except (ConversionError, AttributeError, TypeError):
            pass
    if service is None:
        service = _component_down(component, entry, path=path)
    back, _ = _service_up(name, service, record_origin=False, path=path)
    if back == component:
        return service, ({"name": name} if markers and "podTemplate" in component else None)
    sparse = _sparse_hub_entry(component)
    _restore_hub_leaves(back, sparse)
    if back == component:
        return service, sparse
    return service, json_copy(component)  # nothing sparse says it: keep it whole


def _sparse_hub_entry(component: Obj) -> Obj:
    """Dynamo's sparse hub entry: the v1beta1-only leaves alpha cannot carry."""
    entry: Obj = {"name": component["name"]}
    if isinstance(component.get("frontendSidecar"), str):
        entry["frontendSidecar"] = component["frontendSidecar"]
    grove = (component.get("experimental") or {}).get("grove")
    if grove is not None:
        entry["experimental"] = {"grove": grove}
    names = [c.get("name") for c in _containers(component.get("podTemplate"))]
    if names and names[0] != MAIN:
        entry["podTemplate"] = {"spec": {"containers": [{"name": n} for n in names]}}
    return entry


def _down_or_none(component: Obj) -> Obj | None:
    try:
        return _component_down(component, None, path="")
    except (ConversionError, KeyError, TypeError, AttributeError):
        return None


def _restore_hub_leaves(component: Obj, hub_entry: Obj) -> None:
    """Put back v1beta1-only leaves a (possibly Dynamo-written) hub entry carries."""
    if "podTemplate" not in component:
        component["podTemplate"] = {}  # the component had a pod template (Dynamo's marker)
    grove = (hub_entry.get("experimental") or {}).get("grove")
    if grove is not None and "grove" not in (component.get("experimental") or {}):
        component.setdefault("experimental", {})["grove"] = json_copy(grove)
    sidecar = hub_entry.get("frontendSidecar")
    containers = _containers(component["podTemplate"])
    if (
        isinstance(sidecar, str)
        and "frontendSidecar" not in component
        and any(c.get("name") == sidecar for c in containers)
    ):
        component["frontendSidecar"] = sidecar
    order = [c.get("name") for c in _containers(hub_entry.get("podTemplate") or {})]
    if (
        order
        and containers
        and sorted(map(str, order)) == sorted(str(c.get("name")) for c in containers)
    ):
        by_name = {c.get("name"): c for c in containers}
        component["podTemplate"]["spec"]["containers"] = [by_name[n] for n in order]


def _containers(pod_template: Any) -> list[Obj]:
    if not isinstance(pod_template, dict):
        return []
    spec = pod_template.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    return [c for c in containers or [] if isinstance(c, dict)]


# --- component level: Dynamo's rules -----------------------------------------------------------


def _service_up(name: str, service: Obj, *, record_origin: bool, path: str) -> tuple[Obj, Obj]:
    """Dynamo's up rules for one service: (component, sparse alpha entry to save)."""
    component: Obj = {"name": name}
    entry: Obj = {}
    service_name = service.get("serviceName")
    if service_name and service_name != name:
        entry["serviceName"] = service_name
    kind, sub = service.get("componentType"), service.get("subComponentType")
    if kind == "worker" and sub in _PROMOTED_SUB_TYPES:
        component["type"] = sub
    else:
        if kind:
            component["type"] = kind
        if sub:
            entry["subComponentType"] = sub
    for key in _COMPONENT_VERBATIM:
        if key in service:
            component[key] = service[key]

    shm = service.get("sharedMemory")
    if isinstance(shm, dict):
        size, save = _shared_memory_up(shm)
        if size is not None:
            component["sharedMemorySize"] = size
        if save:
            entry["sharedMemory"] = shm
    adapter = service.get("scalingAdapter")
    if isinstance(adapter, dict):
        if adapter.get("enabled"):
            component["scalingAdapter"] = {}
        else:
            entry["scalingAdapter"] = {}  # Dynamo's marshalled form of `enabled: false`

    experimental: Obj = {}
    for key in ("gpuMemoryService", "failover"):
        value = service.get(key)
        if isinstance(value, dict):
            if value.get("enabled"):
                experimental[key] = _with_mode(
                    {k: v for k, v in value.items() if k != "enabled"}, _MODES_UP
                )
            else:
                entry[key] = value
    if service.get("checkpoint") is not None:
        experimental["checkpoint"] = service["checkpoint"]
    if experimental:
        component["experimental"] = experimental
    for key in _ALPHA_ONLY:
        if key in service and service[key] is not None:
            entry[key] = service[key]

    mounts = [m for m in service.get("volumeMounts") or [] if isinstance(m, dict)]
    cache_mounts = [m for m in mounts if m.get("useAsCompilationCache")]
    if cache_mounts:
        component["compilationCache"] = _cache_of(cache_mounts[0])
        if len(cache_mounts) > 1:
            entry["volumeMounts"] = service["volumeMounts"]

    pod_spec = service.get("extraPodSpec")
    pod_meta = service.get("extraPodMetadata")
    sidecar = service.get("frontendSidecar")
    creates_template = any(
        (
            service.get("resources"),
            service.get("envs"),
            service.get("envFromSecret"),
            any(not m.get("useAsCompilationCache") for m in mounts),
            service.get("livenessProbe") is not None,
            service.get("readinessProbe") is not None,
            pod_spec,
            pod_meta,
            sidecar is not None,
        )
    )
    if pod_meta == {}:
        entry["extraPodMetadata"] = {}
    if pod_spec == {}:
        entry["extraPodSpec"] = {}
    if not creates_template:
        return component, entry

    pod_spec = pod_spec if isinstance(pod_spec, dict) else {}
    main_in = pod_spec.get("mainContainer") or {}
    if not isinstance(main_in, dict):
        raise ConversionError(f"{path}.extraPodSpec.mainContainer: must be a mapping")
    main = _main_up(service, main_in, mounts)
    template_spec = {k: v for k, v in pod_spec.items() if k not in ("mainContainer", "containers")}
    containers: list[Obj] = [main]
    for index, container in enumerate(pod_spec.get("containers") or []):
        if isinstance(container, dict) and container.get("name") == MAIN:
            raise ConversionError(
                f"{path}.extraPodSpec.containers[{index}]: a container named main conflicts with "
                "the main container; use extraPodSpec.mainContainer"
            )
        containers.append(container)
    if isinstance(sidecar, dict):
        component["frontendSidecar"] = SIDECAR_FRONTEND
        entry["frontendSidecar"] = sidecar
        if not any(isinstance(c, dict) and c.get("name") == SIDECAR_FRONTEND for c in containers):
            containers.append(_sidecar_container(sidecar))
    template_spec["containers"] = containers
    template: Obj = {}
    if pod_meta:
        template["metadata"] = {k: pod_meta[k] for k in ("annotations", "labels") if k in pod_meta}
    template["spec"] = template_spec
    component["podTemplate"] = template

    if record_origin:
        stub: Obj = {}
        for dedicated, field in _PROJECTED:
            if service.get(dedicated) or main_in.get(field):
                if service.get(dedicated):
                    entry[dedicated] = service[dedicated]
                if main_in.get(field):
                    stub[field] = main_in[field]
        if stub or any(service.get(dedicated) for dedicated, _ in _PROJECTED):
            # Dynamo's marshalled shape: the container's name and resources are always there.
            entry["extraPodSpec"] = {"mainContainer": {"name": "", "resources": {}, **stub}}
    return component, entry


def _main_up(service: Obj, main_in: Obj, mounts: list[Obj]) -> Obj:
    """The `main` container: mainContainer merged over the dedicated fields."""
    main: Obj = {"name": MAIN}
    for key, value in main_in.items():
        if key != "name" and key not in _PROJECTED_CONTAINER_KEYS:
            main[key] = value
    env = _merge_env(service.get("envs") or [], main_in.get("env") or [])
    if env:
        main["env"] = env
    env_from = _env_from_up(service.get("envFromSecret"), main_in.get("envFrom"))
    if env_from:
        main["envFrom"] = env_from
    resources = _merge_resources(_resources_up(service.get("resources")), main_in.get("resources"))
    if resources:
        main["resources"] = resources
    volume_mounts = list(main_in.get("volumeMounts") or []) + [_mount_up(m) for m in mounts]
    if volume_mounts:
        main["volumeMounts"] = volume_mounts
    for probe in ("livenessProbe", "readinessProbe"):
        merged = _deep_merge(service.get(probe), main_in.get(probe))
        if merged is not None:
            main[probe] = merged
    return main


def _component_down(component: Obj, entry: Obj | None, *, path: str) -> Obj:
    """Dynamo's down rules for one component, using the saved alpha entry when there is one."""
    entry = entry or {}
    service: Obj = {}
    kind = component.get("type")
    if kind in _PROMOTED_SUB_TYPES:
        service["componentType"] = "worker"
        service["subComponentType"] = kind
    else:
        if kind is not None:
            service["componentType"] = kind
        if entry.get("subComponentType"):
            service["subComponentType"] = entry["subComponentType"]
    if entry.get("serviceName"):
        service["serviceName"] = entry["serviceName"]
    for key in _COMPONENT_VERBATIM:
        if key in component:
            service[key] = component[key]

    size = component.get("sharedMemorySize")
    saved_shm = entry.get("sharedMemory")
    if isinstance(saved_shm, dict) and _shared_memory_up(saved_shm)[0] == size:
        service["sharedMemory"] = saved_shm
    elif size is not None:
        service["sharedMemory"] = {"disabled": True} if _is_zero(size) else {"size": size}
    if component.get("scalingAdapter") is not None:
        service["scalingAdapter"] = {"enabled": True}
    elif "scalingAdapter" in entry:
        service["scalingAdapter"] = {"enabled": False}

    experimental = component.get("experimental") or {}
    for key in ("gpuMemoryService", "failover"):
        if isinstance(experimental.get(key), dict):
            service[key] = {"enabled": True, **_with_mode(experimental[key], _MODES_DOWN)}
        elif entry.get(key) is not None:
            service[key] = entry[key]
    if experimental.get("checkpoint") is not None:
        service["checkpoint"] = experimental["checkpoint"]
    for key in _ALPHA_ONLY:
        if key in entry:
            service[key] = entry[key]

    cache = component.get("compilationCache")
    template = component.get("podTemplate")
    if isinstance(template, dict):
        metadata = template.get("metadata") or {}
        pod_meta = {k: metadata[k] for k in ("annotations", "labels") if k in metadata}
        if pod_meta:
            service["extraPodMetadata"] = pod_meta
        template_spec = template.get("spec") or {}
        containers = [c for c in template_spec.get("containers") or [] if isinstance(c, dict)]
        main = next((c for c in containers if c.get("name") == MAIN), None)
        others = [c for c in containers if c is not main]
        if (
            component.get("frontendSidecar") == SIDECAR_FRONTEND
            and entry.get("frontendSidecar") is not None
        ):
            sidecar = next((c for c in others if c.get("name") == SIDECAR_FRONTEND), None)
            if sidecar is not None:
                others.remove(sidecar)
                service["frontendSidecar"] = _sidecar_down(sidecar)
        pod_spec = {k: v for k, v in template_spec.items() if k != "containers"}
        if others:
            pod_spec["containers"] = others
        if main is not None:
            main_out, dedicated = _split_main(main, entry, cache)
            service.update(dedicated)
            if main_out:
                pod_spec["mainContainer"] = main_out
        elif cache is not None:
            service["volumeMounts"] = [_flagged_mount(cache)]
        if pod_spec:
            service["extraPodSpec"] = pod_spec
    elif cache is not None:
        saved_mounts = entry.get("volumeMounts")
        if isinstance(saved_mounts, list) and _first_cache(saved_mounts) == cache:
            service["volumeMounts"] = saved_mounts
        else:
            service["volumeMounts"] = [_flagged_mount(cache)]
    if "extraPodMetadata" not in service and entry.get("extraPodMetadata") == {}:
        service["extraPodMetadata"] = {}
    if "extraPodSpec" not in service and entry.get("extraPodSpec") == {}:
        service["extraPodSpec"] = {}
    return service


def _split_main(main: Obj, entry: Obj, cache: Obj | None) -> tuple[Obj, Obj]:
    """Split the live `main` container into (mainContainer, dedicated alpha fields).

    Where the saved origin (dedicated value + mainContainer value) still merges to the live
    value, the split is restored exactly; otherwise the live value goes to its default place.
    """
    stub = (entry.get("extraPodSpec") or {}).get("mainContainer") or {}
    stub = stub if isinstance(stub, dict) else {}
    main_out = {k: v for k, v in main.items() if k != "name" and k not in _PROJECTED_CONTAINER_KEYS}
    dedicated: Obj = {}

    def origin(dedicated_key: str, field: str) -> tuple[Any, Any]:
        saved, in_main = entry.get(dedicated_key), stub.get(field)
        return (saved or None), (in_main or None)

    live = main.get("env") or []
    saved, in_main = origin("envs", "env")
    if (saved or in_main) and _merge_env(saved or [], in_main or []) == live:
        _put(dedicated, "envs", saved)
        _put(main_out, "env", in_main)
    elif live:
        dedicated["envs"] = live

    live = main.get("envFrom")
    saved, in_main = origin("envFromSecret", "envFrom")
    if (saved or in_main) and _env_from_up(saved, in_main) == live:
        _put(dedicated, "envFromSecret", saved)
        _put(main_out, "envFrom", in_main)
    elif live:
        main_out["envFrom"] = live

    live = main.get("resources") or {}
    saved, in_main = origin("resources", "resources")
    if (saved or in_main) and _merge_resources(_resources_up(saved), in_main) == live:
        _put(dedicated, "resources", saved)
        _put(main_out, "resources", in_main)
    elif live:
        resources = _resources_down(live)
        if resources:
            dedicated["resources"] = resources

    live = main.get("volumeMounts") or []
    saved, in_main = origin("volumeMounts", "volumeMounts")
    if (
        (saved or in_main)
        and list(in_main or []) + [_mount_up(m) for m in saved or []] == live
        and _first_cache(saved or []) == cache
    ):
        _put(dedicated, "volumeMounts", saved)
        _put(main_out, "volumeMounts", in_main)
    elif all(isinstance(m, dict) and set(m) <= {"name", "mountPath"} for m in live):
        mounts = _mounts_down(live, cache)
        if mounts:
            dedicated["volumeMounts"] = mounts
    else:
        # Mounts with fields alpha's volumeMounts cannot hold (readOnly, subPath...) stay whole.
        main_out["volumeMounts"] = live
        if cache is not None:
            dedicated["volumeMounts"] = [_flagged_mount(cache)]

    for probe in ("livenessProbe", "readinessProbe"):
        live_probe = main.get(probe)
        saved_probe, in_main_probe = entry.get(probe), stub.get(probe)
        if (saved_probe is not None or in_main_probe is not None) and _deep_merge(
            saved_probe, in_main_probe
        ) == live_probe:
            _put(dedicated, probe, saved_probe)
            _put(main_out, probe, in_main_probe)
        elif live_probe is not None:
            dedicated[probe] = live_probe
    return main_out, dedicated


# --- field helpers ---------------------------------------------------------------------------


def _shared_memory_up(shm: Obj) -> tuple[Any, bool]:
    """(`sharedMemorySize` or None, whether the alpha shape must be saved)."""
    size = shm.get("size")
    zero = size is None or _is_zero(size)
    if shm.get("disabled"):
        return "0", not zero
    if zero:
        return None, True
    return size, False


def _is_zero(quantity: Any) -> bool:
    try:
        return parse_quantity(str(quantity)) == 0
    except ValueError:
        return False


def _with_mode(value: Obj, modes: dict[str, str]) -> Obj:
    out = dict(value)
    if isinstance(out.get("mode"), str):
        out["mode"] = modes.get(out["mode"], out["mode"])
    return out


def _cache_of(mount: Obj) -> Obj:
    cache: Obj = {"pvcName": mount.get("name")}
    if mount.get("mountPoint"):
        cache["mountPath"] = mount["mountPoint"]
    return cache


def _first_cache(mounts: Iterable[Any]) -> Obj | None:
    for mount in mounts:
        if isinstance(mount, dict) and mount.get("useAsCompilationCache"):
            return _cache_of(mount)
    return None


def _flagged_mount(cache: Obj) -> Obj:
    mount: Obj = {"name": cache.get("pvcName")}
    if cache.get("mountPath"):
        mount["mountPoint"] = cache["mountPath"]
    mount["useAsCompilationCache"] = True
    return mount


def _mount_up(mount: Obj) -> Obj:
    return {"name": mount.get("name"), "mountPath": mount.get("mountPoint") or ""}


def _mounts_down(live: list[Obj], cache: Obj | None) -> list[Obj]:
    """`main` mounts as alpha volumeMounts; the compilation cache's own mount is flagged once."""
    out: list[Obj] = []
    cache_placed = False
    for mount in live:
        path = mount.get("mountPath") or ""
        if (
            cache is not None
            and not cache_placed
            and mount.get("name") == cache.get("pvcName")
            and path == (cache.get("mountPath") or "")
        ):
            out.append(_flagged_mount(cache))
            cache_placed = True
        else:
            out.append({"name": mount.get("name"), "mountPoint": path})
    if cache is not None and not cache_placed:
        out.append(_flagged_mount(cache))
    return out


def _merge_env(dedicated: list[Any], in_main: list[Any]) -> list[Any]:
    """Dedicated entries first; a mainContainer entry of the same name replaces one in place."""
    by_name = {e.get("name"): e for e in in_main if isinstance(e, dict)}
    names = {e.get("name") for e in dedicated if isinstance(e, dict)}
    merged = [by_name.get(e.get("name"), e) if isinstance(e, dict) else e for e in dedicated]
    return merged + [e for e in in_main if not isinstance(e, dict) or e.get("name") not in names]


def _env_from_up(secret: Any, in_main: Any) -> Any:
    if in_main:
        return in_main
    if secret:
        return [{"secretRef": {"name": secret}}]
    return None


def _resources_up(resources: Any) -> Obj:
    """Dynamo's compact ResourceItem form as Kubernetes requests/limits; bad quantities dropped."""
    if not isinstance(resources, dict):
        return {}
    out: Obj = {}
    for side in ("requests", "limits"):
        item = resources.get(side)
        if not isinstance(item, dict):
            continue
        values: Obj = {}
        for key in ("cpu", "memory"):
            _put_quantity(values, key, item.get(key))
        if item.get("gpu") not in (None, ""):
            _put_quantity(values, item.get("gpuType") or GPU, item["gpu"])
        for key, value in (item.get("custom") or {}).items():
            _put_quantity(values, key, value)
        if values:
            out[side] = values
    if resources.get("claims"):
        out["claims"] = resources["claims"]
    return out


def _put_quantity(values: Obj, key: str, value: Any) -> None:
    if value is None or value == "":
        return
    if isinstance(value, str):
        try:
            parse_quantity(value)
        except ValueError:
            return  # Dynamo drops what it cannot parse (the payload keeps the original)
    values[key] = value


def _merge_resources(base: Obj, over: Any) -> Obj:
    out = dict(base)
    if not isinstance(over, dict):
        return out
    for key, value in over.items():
        if key in ("requests", "limits") and isinstance(value, dict):
            merged = {**(out.get(key) or {}), **value}
            if merged:
                out[key] = merged
        elif value:
            out[key] = value
    return out


def _resources_down(live: Obj) -> Obj:
    out: Obj = {}
    for side in ("requests", "limits"):
        values = live.get(side)
        if not isinstance(values, dict) or not values:
            continue
        item: Obj = {}
        custom: Obj = {}
        for key, value in values.items():
            text = value if isinstance(value, str) else str(value)
            if key in ("cpu", "memory"):
                item[key] = text
            elif key == GPU:
                item["gpu"] = text
            else:
                custom[key] = text
        if custom:
            item["custom"] = custom
        out[side] = item
    if live.get("claims"):
        out["claims"] = live["claims"]
    return out


def _deep_merge(base: Any, over: Any) -> Any:
    if over is None:
        return base
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _deep_merge(base.get(key), value)
        return merged
    return over


def _sidecar_container(spec: Obj) -> Obj:
    container: Obj = {"name": SIDECAR_FRONTEND}
    if spec.get("image"):
        container["image"] = spec["image"]
    if spec.get("args"):
        container["args"] = spec["args"]
    if spec.get("envs"):
        container["env"] = spec["envs"]
    if spec.get("envFromSecret"):
        container["envFrom"] = [{"secretRef": {"name": spec["envFromSecret"]}}]
    return container


def _sidecar_down(container: Obj) -> Obj:
    spec: Obj = {}
    if container.get("image"):
        spec["image"] = container["image"]
    if container.get("args"):
        spec["args"] = container["args"]
    if container.get("env"):
        spec["envs"] = container["env"]
    for source in container.get("envFrom") or []:
        name = ((source or {}).get("secretRef") or {}).get("name")
        if name:
            spec["envFromSecret"] = name
            break
    return spec


def _strip_zero_size(pvc: Any) -> Any:
    """Drop the `size: "0"` Dynamo marshals for a PVC without a size."""
    if isinstance(pvc, dict) and pvc.get("size") in ("0", 0):
        return {k: v for k, v in pvc.items() if k != "size"}
    return pvc


def _rename(value: Any, old: str, new: str) -> Any:
    if not isinstance(value, dict) or old not in value:
        return value
    return {(new if k == old else k): v for k, v in value.items()}


def _fresh(value: Obj) -> Obj:
    """A copy sharing no dict or list between two places (YAML would print anchors), nor
    with the input."""
    return json_copy(value)


def _put(target: Obj, key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _mapping(value: Any, path: str) -> Obj:
    if not isinstance(value, dict):
        raise ConversionError(f"{path}: must be a mapping")
    return value


def _check_keys(value: Obj, known: frozenset[str], path: str) -> None:
    unknown = sorted(set(value) - known)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConversionError(f"{where}: unknown field, no counterpart in the other version")


# --- status ----------------------------------------------------------------------------------


def _status_up(status: Obj) -> tuple[Obj, Obj]:
    """(v1beta1 status, sparse alpha status to save, or {})."""
    out: Obj = {}
    saved: Obj = {}
    for key, value in status.items():
        if key == "services":
            out["components"] = None if value is None else {}
            for name, replica in (value or {}).items():
                component, keep = _replica_up(replica)
                out["components"][name] = component
                if keep is not None:
                    saved[name] = keep
        elif key == "rollingUpdate" and isinstance(value, dict):
            out[key] = _rename(value, "updatedServices", "updatedComponents")
        else:
            out[key] = value
    if not saved:
        return out, {}
    # Dynamo's payload is a marshalled status: zero-valued required fields appear.
    return out, {"state": "", "services": saved}


def _replica_up(replica: Any) -> tuple[Any, Obj | None]:
    if not isinstance(replica, dict):
        return replica, None
    out = {k: v for k, v in replica.items() if k != "componentName"}
    name = replica.get("componentName") or None
    names = replica.get("componentNames") or []
    if not names and name:
        out["componentNames"] = [name]
    if names:
        lossless = replica.get("componentName") == names[-1]
    else:
        lossless = "componentName" not in replica
    if lossless:
        return out, None
    keep: Obj = {
        "componentKind": "",
        "componentName": name or "",
        "replicas": 0,
        "updatedReplicas": 0,
    }
    if "componentNames" in replica:
        keep["componentNames"] = names
    return out, keep


def _status_down(status: Obj, saved: Obj) -> Obj:
    saved_services: Obj = saved["services"] if isinstance(saved.get("services"), dict) else {}
    out: Obj = {}
    for key, value in status.items():
        if key == "components":
            out["services"] = None if value is None else {}
            for name, replica in (value or {}).items():
                out["services"][name] = _replica_down(replica, saved_services.get(name))
        elif key == "rollingUpdate" and isinstance(value, dict):
            out[key] = rolling_update_to_v1alpha1(value)
        else:
            out[key] = value
    return out


def _replica_down(replica: Any, keep: Any) -> Any:
    if not isinstance(replica, dict):
        return replica
    out = dict(replica)
    live = replica.get("componentNames") or []
    if isinstance(keep, dict):
        name = keep.get("componentName") or None
        names = keep.get("componentNames")
        if (names or ([name] if name else [])) == live:
            out.pop("componentNames", None)
            if names is not None:
                out["componentNames"] = names
            if name:
                out["componentName"] = name
            return out
    if live:
        out["componentName"] = live[-1]
    return out
