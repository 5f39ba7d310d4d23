"""Field paths of one DGD in both spellings: v1alpha1 `spec.services.<name>...` and v1beta1
`spec.components[<i>]...`.

Most checks run on the v1alpha1 view of a graph (what the builders consume), but a user who
wrote v1beta1 must be told the field in the version they wrote. `to_v1beta1_path` maps a
v1alpha1 path of the down-converted view back onto the v1beta1 document (`api.conversion`'s
rules, reference §3.3); `to_v1alpha1_path` maps the other way for the few v1beta1 paths the
not-acted-on warnings name. Paths with no counterpart (alpha-only fields kept in the
`nvidia.com/dgd-spec` annotation) are reported as they are, and the message says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from dgd_operator.api.v1beta1 import MAIN_CONTAINER

OTHER_SPELLING_NOTE: Final = (
    " (path in the v1alpha1 spelling: v1beta1 has no such field; the value is kept in "
    "the nvidia.com/dgd-spec annotation)"
)

_SERVICE = re.compile(r"^spec\.services\.([A-Za-z0-9][-A-Za-z0-9]*)(.*)$")
_COMPONENT = re.compile(r"^spec\.components\[(\d+)\](.*)$")
_INDEX = re.compile(r"^\[(\d+)\](.*)$")
# Service fields copied verbatim into the component (conversion's `_COMPONENT_VERBATIM`).
_VERBATIM = frozenset(
    (
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
)
# Dedicated v1alpha1 fields projected into container `main`: alpha key -> container key, and
# whether the rest of the path still means the same inside the container.
_PROJECTED: Final = {
    "envs": ("env", True),
    "envFromSecret": ("envFrom", False),
    "resources": ("resources", False),
    "volumeMounts": ("volumeMounts", False),
    "livenessProbe": ("livenessProbe", True),
    "readinessProbe": ("readinessProbe", True),
}
_WHOLE: Final = {
    "componentType": "type",
    "subComponentType": "type",
    "sharedMemory": "sharedMemorySize",
    "scalingAdapter": "scalingAdapter",
    "frontendSidecar": "frontendSidecar",
}
_EXPERIMENTAL: Final = ("gpuMemoryService", "failover", "checkpoint")
_GRAPH_RENAMES: Final = {
    "spec.envs": "spec.env",
    "spec.services": "spec.components",
    "spec.topologyConstraint.topologyProfile": "spec.topologyConstraint.clusterTopologyName",
}


def to_v1beta1_path(path: str, hub: Mapping[str, Any]) -> tuple[str, bool]:
    """(`path` of the v1alpha1 view in the spelling of the v1beta1 document `hub`, mapped?).

    Returns the path unchanged and False when v1beta1 has no field for it.
    """
    match = _SERVICE.match(path)
    if match is None:
        for alpha, beta in _GRAPH_RENAMES.items():
            if path == alpha or path.startswith((alpha + ".", alpha + "[")):
                return beta + path[len(alpha) :], True
        # metadata, apiVersion and the graph fields both versions share; pvcs are alpha-only
        return path, not path.startswith("spec.pvcs")
    name, rest = match.groups()
    components = _components(hub)
    index = next((i for i, c in enumerate(components) if c.get("name") == name), None)
    if index is None:
        return path, False
    mapped = _component_rest(rest, components[index])
    if mapped is None:
        return path, False
    return f"spec.components[{index}]{mapped}", True


def to_v1alpha1_path(path: str, hub: Mapping[str, Any]) -> str:
    """A v1beta1 path of `hub` in the v1alpha1 spelling (components by name, experimental
    fields at the service level); paths that need no change are returned as they are."""
    match = _COMPONENT.match(path)
    if match is None:
        for alpha, beta in _GRAPH_RENAMES.items():
            if path == beta or path.startswith((beta + ".", beta + "[")):
                return alpha + path[len(beta) :]
        return path
    index, rest = int(match.group(1)), match.group(2)
    components = _components(hub)
    name = components[index].get("name") if index < len(components) else None
    if not isinstance(name, str):
        return path
    return f"spec.services.{name}{_service_rest(rest, components[index])}"


def _service_rest(rest: str, component: Mapping[str, Any]) -> str:
    """A path inside one component in the v1alpha1 spelling of its service."""
    key, tail = _split_key(rest) if rest else ("", "")
    if key == "experimental":
        inner, inner_tail = _split_key(tail) if tail else ("", "")
        if inner in _EXPERIMENTAL:
            return f".{inner}{inner_tail}"
    if key == "type":
        return ".componentType"
    if key == "sharedMemorySize":
        return ".sharedMemory.size"
    if key != "podTemplate":
        return rest
    part, inner = _split_key(tail) if tail else ("", "")
    if part == "metadata":
        return ".extraPodMetadata" + inner
    if part != "spec":
        return rest
    field, after = _split_key(inner) if inner else ("", "")
    if field != "containers":
        return ".extraPodSpec" + inner
    match = _INDEX.match(after)
    containers = _containers(component)
    if match is None or int(match.group(1)) >= len(containers):
        return ".extraPodSpec"
    index, container_tail = int(match.group(1)), match.group(2)
    if containers[index].get("name") == MAIN_CONTAINER:
        return ".extraPodSpec.mainContainer" + container_tail
    others = [i for i, c in enumerate(containers) if c.get("name") != MAIN_CONTAINER]
    return f".extraPodSpec.containers[{others.index(index)}]{container_tail}"


def main_container_path(component: Mapping[str, Any]) -> str:
    """`.podTemplate.spec.containers[<j>]` of container `main`, or of the list when it has none."""
    containers = _containers(component)
    for index, container in enumerate(containers):
        if container.get("name") == MAIN_CONTAINER:
            return f".podTemplate.spec.containers[{index}]"
    return ".podTemplate.spec.containers"


def _component_rest(rest: str, component: Mapping[str, Any]) -> str | None:
    if not rest:
        return ""
    key, tail = _split_key(rest)
    if key in _VERBATIM:
        return rest
    if key in _WHOLE:
        return f".{_WHOLE[key]}"
    if key in _EXPERIMENTAL:
        return f".experimental.{key}" + ("" if tail.startswith(".enabled") else tail)
    if key in _PROJECTED:
        field, keeps_tail = _PROJECTED[key]
        main = main_container_path(component)
        if not main.endswith("]"):
            return main
        return f"{main}.{field}" + (tail if keeps_tail else "")
    if key == "extraPodMetadata":
        return ".podTemplate.metadata" + tail
    if key == "extraPodSpec":
        return _pod_spec_rest(tail, component)
    return None


def _pod_spec_rest(tail: str, component: Mapping[str, Any]) -> str:
    """`extraPodSpec` + tail: `mainContainer` is container `main`, `containers[k]` the k-th
    other container, everything else the pod spec itself."""
    key, inner = _split_key(tail)
    if key == "mainContainer":
        return main_container_path(component) + inner
    if key == "containers":
        match = _INDEX.match(inner)
        others = [
            i for i, c in enumerate(_containers(component)) if c.get("name") != MAIN_CONTAINER
        ]
        if match is not None and int(match.group(1)) < len(others):
            return f".podTemplate.spec.containers[{others[int(match.group(1))]}]{match.group(2)}"
        return ".podTemplate.spec.containers"
    return ".podTemplate.spec" + tail


def _split_key(rest: str) -> tuple[str, str]:
    """`.key.more` -> (`key`, `.more`); `.key[0]` -> (`key`, `[0]`); `[a.b]x` -> (`a.b`, `x`)."""
    if rest.startswith("["):
        end = rest.find("]")
        return (rest[1:end], rest[end + 1 :]) if end > 0 else (rest, "")
    body = rest[1:]
    cut = min((i for i in (body.find("."), body.find("[")) if i >= 0), default=len(body))
    return body[:cut], body[cut:]


def _components(hub: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = hub.get("spec")
    components = spec.get("components") if isinstance(spec, Mapping) else None
    if not isinstance(components, list):
        return []
    return [c if isinstance(c, Mapping) else {} for c in components]


def _containers(component: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    template = component.get("podTemplate")
    spec = template.get("spec") if isinstance(template, Mapping) else None
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list):
        return []
    return [c if isinstance(c, Mapping) else {} for c in containers]
