"""Dynamo's create-time admission rules for a v1beta1 DGD that make sense offline (§5.1).

They read the raw wire document (so they still run when the model rejected some other field)
and anchor every problem at its v1beta1 path, e.g.
`spec.components[2].podTemplate.spec.containers[0].image`. Rules that need the cluster (the
Grove pathway, ClusterTopologyBindings, the InferencePool API, the operator's feature gates) are
left out: on dgd the fields they guard are not acted on, which `unacted.not_acted_on` says.
Everything both versions share (names, labels, annotations, embedded Kubernetes objects) is
checked on the v1alpha1 view by the existing rules; a v1alpha1 document gets these rules on its
v1beta1 conversion, as Dynamo's webhook sees every request as v1beta1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Final

from dgd_operator.api import constants
from dgd_operator.api.models import parse_quantity
from dgd_operator.api.v1beta1 import MAIN_CONTAINER
from dgd_operator.api.validation.errors import Problem, join, show, warning

GROVE_API_VERSION: Final = "grove.io/v1alpha1"
GROVE_UPDATE_STRATEGIES: Final = ("RollingRecreate", "OnDelete")
WORKLOAD_PROVIDERS: Final = ("component", "grove")
# Image tags Dynamo reads a runtime version from: semver with an optional leading v.
_SEMVER_TAG = re.compile(
    r"^[vV]?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_WORKER_TYPES: Final = ("worker", "prefill", "decode")
_NO_FAILOVER_TYPES: Final = ("epp", "frontend", "planner")


def v1beta1_problems(
    doc: Mapping[str, Any], *, creating: bool = True, images: bool = True
) -> Iterator[Problem]:
    """Dynamo's offline create-time webhook rules for the v1beta1 document `doc`.

    `images=False` leaves out the `main` image and runtime-version rules, which Dynamo applies
    at v1beta1 paths only to documents written in v1beta1.
    """
    metadata = _map(doc.get("metadata"))
    spec = _map(doc.get("spec"))
    components = [_map(c) for c in _list(spec.get("components"))]
    yield from metadata_annotation_problems(_map(metadata.get("annotations")))
    yield from _failover_discovery_mode(_map(metadata.get("annotations")), components)
    if not components:
        yield Problem("spec.components", "must have at least one component")
    yield from _provider_override_problems(spec, components)
    if not creating:
        yield from _restart_problems(spec, components)
    yield from _topology_problems(spec, components)
    for index, component in enumerate(components):
        yield from component_problems(f"spec.components[{index}]", component, spec, images=images)


def metadata_annotation_problems(annotations: Mapping[str, Any]) -> Iterator[Problem]:
    """The two enum-valued DGD annotations the v1alpha1 rules do not cover (same path in both
    versions, so v1alpha1 documents get them too)."""
    for key, allowed in (
        (constants.ANNOTATION_GROVE_UPDATE_STRATEGY, GROVE_UPDATE_STRATEGIES),
        (constants.ANNOTATION_WORKLOAD_PROVIDER, WORKLOAD_PROVIDERS),
    ):
        value = annotations.get(key)
        if value is not None and value not in allowed:
            choices = " or ".join(repr(a) for a in allowed)
            yield Problem(
                join("metadata.annotations", key), f"must be {choices}, got {show(value)}"
            )


def _failover_discovery_mode(
    annotations: Mapping[str, Any], components: list[Mapping[str, Any]]
) -> Iterator[Problem]:
    mode = annotations.get(constants.ANNOTATION_KUBE_DISCOVERY_MODE)
    for index, component in enumerate(components):
        failover = _map(_map(component.get("experimental")).get("failover"))
        if "failover" in _map(component.get("experimental")) and (
            failover.get("mode", "IntraPod") == "IntraPod"
        ):
            if mode != "container":
                yield Problem(
                    join("metadata.annotations", constants.ANNOTATION_KUBE_DISCOVERY_MODE),
                    "must be 'container' when a component uses intra-pod failover "
                    f"(spec.components[{index}].experimental.failover), got {show(mode)}",
                )
            return


# --- graph level ---------------------------------------------------------------------------------


def _provider_override_problems(
    spec: Mapping[str, Any], components: list[Mapping[str, Any]]
) -> Iterator[Problem]:
    typed_topology = "topologyConstraint" in spec or any(
        "topologyConstraint" in c for c in components
    )
    overrides: list[tuple[str, Any, str, tuple[str, ...]]] = [
        (
            "spec.providerOverride",
            spec.get("providerOverride"),
            "PodCliqueSet",
            ("spec", "template", "topologyConstraint"),
        )
    ]
    for index, component in enumerate(components):
        path = f"spec.components[{index}]"
        target = (
            "PodCliqueScalingGroupConfig"
            if uses_scaling_group(component)
            else "PodCliqueTemplateSpec"
        )
        overrides.append(
            (
                f"{path}.providerOverride",
                component.get("providerOverride"),
                target,
                ("topologyConstraint",),
            )
        )
        multinode = _map(component.get("multinode"))
        for role in ("leader", "worker"):
            overrides.append(
                (
                    f"{path}.multinode.{role}.providerOverride",
                    _map(multinode.get(role)).get("providerOverride"),
                    "PodCliqueTemplateSpec",
                    ("topologyConstraint",),
                )
            )
    for path, override, target, owned in overrides:
        if isinstance(override, Mapping):
            yield from _one_override(path, override, target, owned, typed_topology)


def _one_override(
    path: str,
    override: Mapping[str, Any],
    target: str,
    owned: tuple[str, ...],
    typed_topology: bool,
) -> Iterator[Problem]:
    api_version = override.get("apiVersion")
    if api_version is not None and api_version != GROVE_API_VERSION:
        yield Problem(
            f"{path}.apiVersion", f"must be {GROVE_API_VERSION!r}, got {show(api_version)}"
        )
    given = override.get("target")
    if given is not None and given != target:
        yield Problem(f"{path}.target", f"must be {target!r} here, got {show(given)}")
    value = override.get("value")
    if not isinstance(value, Mapping):
        return
    stray = _paths_outside(value, owned)
    if stray:
        allowed = ".".join(owned)
        yield Problem(
            f"{path}.value",
            f"may only set {allowed}; also sets {', '.join(stray)}",
        )
    elif typed_topology and _dig(value, owned) is not None:
        yield Problem(
            f"{path}.value",
            "a Grove topology override cannot be combined with spec.topologyConstraint or "
            "components[].topologyConstraint; use one or the other",
        )


def _paths_outside(value: Mapping[str, Any], owned: tuple[str, ...]) -> list[str]:
    """Keys of `value` off the single path `owned` (whose last key's content is opaque)."""
    stray: list[str] = []
    node: Any = value
    prefix: list[str] = []
    for key in owned:
        if not isinstance(node, Mapping):
            return stray
        stray.extend(".".join([*prefix, str(k)]) for k in node if k != key)
        prefix.append(key)
        node = node.get(key)
    return stray


def _restart_problems(
    spec: Mapping[str, Any], components: list[Mapping[str, Any]]
) -> Iterator[Problem]:
    strategy = _map(_map(spec.get("restart")).get("strategy"))
    order = [o for o in _list(strategy.get("order")) if isinstance(o, str)]
    if not order:
        return
    path = "spec.restart.strategy.order"
    if strategy.get("type") == "Parallel":
        yield Problem(path, "must not be set when strategy.type is Parallel")
        return
    names = sorted(str(c.get("name")) for c in components)
    duplicates = sorted({o for o in order if order.count(o) > 1})
    if duplicates:
        yield Problem(path, f"lists components more than once: [{', '.join(duplicates)}]")
    for index, name in enumerate(order):
        if name not in names:
            yield Problem(
                f"{path}[{index}]",
                f"{name!r} is not a component; expected one of [{', '.join(names)}]",
            )
    if len(set(order)) != len(names):
        yield Problem(
            path,
            f"must list each of the {len(names)} components once, lists {len(set(order))}",
        )


def _topology_problems(
    spec: Mapping[str, Any], components: list[Mapping[str, Any]]
) -> Iterator[Problem]:
    with_constraint = [i for i, c in enumerate(components) if "topologyConstraint" in c]
    graph = spec.get("topologyConstraint")
    if with_constraint and graph is None:
        yield Problem(
            "spec.topologyConstraint",
            f"required when a component sets topologyConstraint "
            f"(spec.components[{with_constraint[0]}])",
        )
    if isinstance(graph, Mapping) and not graph.get("packDomain") and not with_constraint:
        yield Problem(
            "spec.topologyConstraint.packDomain",
            "required unless a component sets its own topologyConstraint",
        )
    policy = _map(_map(spec.get("experimental")).get("kvTransferPolicy"))
    name = policy.get("clusterTopologyName")
    if isinstance(name, str) and name and not _DNS1123_SUBDOMAIN.match(name):
        yield Problem(
            "spec.experimental.kvTransferPolicy.clusterTopologyName",
            f"must be a DNS subdomain (lower-case letters, digits, '-' and '.'), got {name!r}",
        )


# --- component level -------------------------------------------------------------------------


def component_problems(
    path: str, component: Mapping[str, Any], spec: Mapping[str, Any], *, images: bool = True
) -> Iterator[Problem]:
    """The per-component rules of §5.1 for `spec.components[i]` at `path`."""
    containers = [
        _map(c)
        for c in _list(_map(_map(component.get("podTemplate")).get("spec")).get("containers"))
    ]
    main_index = next(
        (i for i, c in enumerate(containers) if c.get("name") == MAIN_CONTAINER), None
    )
    main = containers[main_index] if main_index is not None else {}
    main_path = f"{path}.podTemplate.spec.containers[{main_index}]"
    if images:
        yield from _image_problems(path, component, main_index, main)
    size = component.get("sharedMemorySize")
    if isinstance(size, str | int) and not isinstance(size, bool) and _quantity(size) < 0:
        yield Problem(f"{path}.sharedMemorySize", f"must not be negative, got {size}")
    yield from _epp_problems(path, component)
    yield from _frontend_sidecar_problems(path, component, containers)
    yield from _experimental_problems(path, component, spec, containers, main)
    yield from _power_limit_problems(path, component, containers)
    if (
        spec.get("backendFramework") == "vllm"
        and main_index is not None
        and _elastic_ep_over_ray(main)
        and not main.get("command")
    ):
        yield Problem(
            f"{main_path}.command",
            "required: vLLM elastic expert parallelism over Ray (--enable-elastic-ep with "
            "--data-parallel-backend ray) needs an explicit command",
        )


def uses_scaling_group(component: Mapping[str, Any]) -> bool:
    """Whether Grove would render the component as a PodCliqueScalingGroup (`UsesPCSG`)."""
    node_count = _map(component.get("multinode")).get("nodeCount", 2)
    experimental = _map(component.get("experimental"))
    gms = experimental.get("gpuMemoryService")
    return (
        ("multinode" in component and isinstance(node_count, int) and node_count > 1)
        or (isinstance(gms, Mapping) and gms.get("mode") == "InterPod")
        or _map(experimental.get("grove")).get("forceScalingGroup") is True
    )


def _image_problems(
    path: str, component: Mapping[str, Any], main_index: int | None, main: Mapping[str, Any]
) -> Iterator[Problem]:
    if main_index is None:
        yield Problem(
            f"{path}.podTemplate.spec.containers",
            f"needs a container named {MAIN_CONTAINER!r} with an image",
        )
        return
    image = main.get("image")
    if not isinstance(image, str) or not image:
        yield Problem(f"{path}.podTemplate.spec.containers[{main_index}].image", "required")
        return
    if not component.get("runtimeVersionOverride") and not _has_semver_tag(image):
        yield warning(
            f"{path}.runtimeVersionOverride",
            f"Dynamo's operator requires it (X.Y.Z) because the main image tag of {image!r} is "
            "not a semantic version; dgd accepts the graph without it",
        )


def _has_semver_tag(image: str) -> bool:
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        return False
    return bool(_SEMVER_TAG.match(name[colon + 1 :]))


def _epp_problems(path: str, component: Mapping[str, Any]) -> Iterator[Problem]:
    if component.get("type") != "epp":
        return
    node_count = _map(component.get("multinode")).get("nodeCount", 2)
    if "multinode" in component and isinstance(node_count, int) and node_count > 1:
        yield Problem(f"{path}.multinode", "an epp component cannot be multinode")
    replicas = component.get("replicas")
    if replicas is not None and replicas != 1:
        yield Problem(
            f"{path}.replicas",
            f"an epp component must have exactly 1 replica, got {show(replicas)}",
        )
    config = component.get("eppConfig")
    if config is None:
        yield Problem(f"{path}.eppConfig", "required for a component of type epp")
    elif (
        isinstance(config, Mapping)
        and isinstance(config.get("configMapRef"), Mapping)
        and not config["configMapRef"].get("name")
    ):
        yield Problem(f"{path}.eppConfig.configMapRef.name", "required")


def _frontend_sidecar_problems(
    path: str, component: Mapping[str, Any], containers: list[Mapping[str, Any]]
) -> Iterator[Problem]:
    sidecar = component.get("frontendSidecar")
    if sidecar is None:
        return
    if "podTemplate" not in component:
        yield Problem(f"{path}.podTemplate.spec.containers", "required when frontendSidecar is set")
        return
    if sidecar == "":
        yield Problem(f"{path}.frontendSidecar", "must not be empty")
        return
    names = [str(c.get("name")) for c in containers]
    if sidecar not in names:
        yield Problem(
            f"{path}.frontendSidecar",
            f"must name a podTemplate.spec.containers entry, got {show(sidecar)} "
            f"(containers: {', '.join(names) or 'none'})",
        )


def _experimental_problems(
    path: str,
    component: Mapping[str, Any],
    spec: Mapping[str, Any],
    containers: list[Mapping[str, Any]],
    main: Mapping[str, Any],
) -> Iterator[Problem]:
    experimental = _map(component.get("experimental"))
    base = f"{path}.experimental"
    kind = component.get("type")
    gpus = _gpu_limit(main)
    gms = experimental.get("gpuMemoryService")
    gms_mode = _map(gms).get("mode", "IntraPod") if isinstance(gms, Mapping) else None
    if isinstance(gms, Mapping):
        if kind not in _WORKER_TYPES:
            yield Problem(
                f"{base}.gpuMemoryService",
                f"only for worker, prefill or decode components, not type {show(kind)}",
            )
        if gpus < 1:
            yield Problem(
                f"{base}.gpuMemoryService",
                'needs container main to limit at least 1 "nvidia.com/gpu"',
            )
        if gms_mode == "IntraPod":
            names = {c.get("name") for c in containers}
            seen: set[str] = set()
            for index, client in enumerate(_list(gms.get("extraClientContainers"))):
                client_path = f"{base}.gpuMemoryService.extraClientContainers[{index}]"
                if client in seen:
                    yield Problem(client_path, f"duplicate value {show(client)}")
                elif client not in names:
                    yield Problem(
                        client_path, f"{show(client)} is not a podTemplate.spec.containers name"
                    )
                if isinstance(client, str):
                    seen.add(client)
        elif gms_mode == "InterPod" and spec.get("backendFramework") != "vllm":
            yield Problem(
                f"{base}.gpuMemoryService.mode",
                "the InterPod layout is supported only with spec.backendFramework vllm",
            )
    failover = experimental.get("failover")
    if isinstance(failover, Mapping):
        mode = failover.get("mode", "IntraPod")
        if gms_mode is None:
            yield Problem(f"{base}.failover", "requires experimental.gpuMemoryService")
        elif mode != gms_mode:
            yield Problem(
                f"{base}.failover.mode",
                f"must equal the gpuMemoryService mode {gms_mode!r}, got {show(mode)}",
            )
        if mode == "InterPod":
            if gpus < 1:
                yield Problem(
                    f"{base}.failover", 'needs container main to limit at least 1 "nvidia.com/gpu"'
                )
            if kind in _NO_FAILOVER_TYPES:
                yield Problem(f"{base}.failover", f"not allowed for type {show(kind)}")
    job = _map(_map(experimental.get("checkpoint")).get("job"))
    if job.get("gmsClientContainers") and gms_mode != "IntraPod":
        yield Problem(
            f"{base}.checkpoint.job.gmsClientContainers",
            "requires experimental.gpuMemoryService with mode IntraPod",
        )


def _power_limit_problems(
    path: str, component: Mapping[str, Any], containers: list[Mapping[str, Any]]
) -> Iterator[Problem]:
    template = _map(component.get("podTemplate"))
    value = _map(_map(template.get("metadata")).get("annotations")).get(
        constants.ANNOTATION_GPU_POWER_LIMIT
    )
    if value is None:
        return
    annotation_path = join(
        f"{path}.podTemplate.metadata.annotations", constants.ANNOTATION_GPU_POWER_LIMIT
    )
    if not isinstance(value, str) or not value.isdigit() or int(value) <= 0:
        yield Problem(
            annotation_path, f"must be a positive whole number of watts, got {show(value)}"
        )
        return
    pod_spec = _map(template.get("spec"))
    everything = containers + [_map(c) for c in _list(pod_spec.get("initContainers"))]
    uses_dra = "gpuMemoryService" in _map(component.get("experimental")) or any(
        _map(c.get("resources")).get("claims") for c in everything
    )
    if uses_dra:
        yield Problem(
            annotation_path,
            "cannot be combined with dynamic resource allocation (gpuMemoryService or "
            "resources.claims)",
        )


def _elastic_ep_over_ray(main: Mapping[str, Any]) -> bool:
    args = [a for a in _list(main.get("args")) if isinstance(a, str)]
    words = [w for a in args for w in a.split()]
    if "--enable-elastic-ep" not in words:
        return False
    for index, word in enumerate(words):
        for flag in ("--data-parallel-backend", "-dpb"):
            if word == f"{flag}=ray" or (
                word == flag and index + 1 < len(words) and words[index + 1] == "ray"
            ):
                return True
    return False


def _gpu_limit(main: Mapping[str, Any]) -> Decimal:
    value = _map(_map(main.get("resources")).get("limits")).get(constants.GPU_RESOURCE)
    return (
        _quantity(value)
        if isinstance(value, str | int) and not isinstance(value, bool)
        else Decimal(0)
    )


def _quantity(value: str | int) -> Decimal:
    try:
        return parse_quantity(str(value))
    except ValueError:
        return Decimal(0)  # the schema check reports the malformed quantity


def _dig(value: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    node: Any = value
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
