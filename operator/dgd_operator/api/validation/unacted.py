"""Fields users write that dgd accepts but does not act on (yet), one warning each.

Dynamo's schema has fields for machinery dgd does not run: the Grove workload provider (gang
scheduling, topology packing, provider overrides), the endpoint picker's InferencePool,
checkpoint/restore, the GPU memory service. (`priorityClassName` and `topologyConstraint` are
acted on: `builders.placement.placement_warnings` says how.) dgd keeps them (they are in the CRDs, survive
conversion and round-trip), but silently ignoring them would surprise a user, so `dgd
validate`, the admission webhook (as warnings) and a status condition name each one and say
what happens instead. `not_acted_on` is the one pure source for all three.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from dgd_operator.api import constants
from dgd_operator.api.conversion import ConversionError, convert
from dgd_operator.api.validation.errors import Problem, warning
from dgd_operator.api.validation.paths import to_v1alpha1_path

_NO_GROVE: Final = "dgd renders Deployments and StatefulSets, not Grove objects"

# (v1beta1 path relative to the spec or the component, what happens instead)
_GRAPH_FIELDS: Final = (
    ("providerOverride", f"not acted on: {_NO_GROVE}, so this Grove fragment is not applied"),
    (
        "experimental.kvTransferPolicy",
        "not acted on: workers get no topology labels or KV-transfer domain, so transfers "
        "between prefill and decode are not steered by topology",
    ),
)
_COMPONENT_FIELDS: Final = (
    (
        "providerOverride",
        f"not acted on: {_NO_GROVE}, so this Grove fragment is not applied",
    ),
    (
        "minAvailable",
        "not acted on yet (a Grove gang minimum): dgd starts the pods independently, "
        "without a gang minimum",
    ),
    (
        "multinode.leader.providerOverride",
        f"not acted on: {_NO_GROVE}, so this Grove fragment is not applied",
    ),
    (
        "multinode.worker.providerOverride",
        f"not acted on: {_NO_GROVE}, so this Grove fragment is not applied",
    ),
    (
        "runtimeVersionOverride",
        "accepted and checked by admission only: dgd derives nothing from the runtime "
        "version (the image runs as written)",
    ),
    (
        "experimental.gpuMemoryService",
        "not acted on: no GPU memory service or DRA claim is set up; the engine loads "
        "the model itself",
    ),
    (
        "experimental.failover",
        "not acted on: no standby engines are started",
    ),
    (
        "experimental.grove",
        f"not acted on: {_NO_GROVE}",
    ),
    (
        "experimental.checkpoint",
        "not acted on: workers start normally and load the model; no checkpoint is taken "
        "or restored",
    ),
)


def not_acted_on(doc: Mapping[str, Any]) -> list[Problem]:
    """Warnings for the fields of DGD `doc` (v1alpha1 or v1beta1) that dgd does not act on.

    Each names the field in the version `doc` is written in and says what happens instead.
    Pure; never raises (a document that cannot be converted gets no warnings: validation
    reports why).
    """
    api_version = doc.get("apiVersion")
    if api_version == constants.GROUP_VERSION_V1BETA1:
        return not_acted_on_v1beta1(doc)
    if api_version != constants.GROUP_VERSION:
        return []
    try:
        hub = convert(dict(doc), constants.GROUP_VERSION_V1BETA1)
    except (ConversionError, AttributeError, TypeError, KeyError, ValueError):
        return []
    problems: list[Problem] = []
    for problem in not_acted_on_v1beta1(hub):
        problems.append(warning(to_v1alpha1_path(problem.path, hub), problem.message))
    return problems


def not_acted_on_v1beta1(hub: Mapping[str, Any]) -> list[Problem]:
    """`not_acted_on` for a v1beta1 wire dict, with v1beta1 paths."""
    spec = hub.get("spec")
    if not isinstance(spec, Mapping):
        return []
    problems = list(_present("spec", spec, _GRAPH_FIELDS))
    components = spec.get("components")
    for index, component in enumerate(components if isinstance(components, list) else []):
        if isinstance(component, Mapping):
            problems.extend(_present(f"spec.components[{index}]", component, _COMPONENT_FIELDS))
    return problems


def _present(
    base: str, value: Mapping[str, Any], fields: tuple[tuple[str, str], ...]
) -> list[Problem]:
    found: list[Problem] = []
    for relative, message in fields:
        node: Any = value
        for key in relative.split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None and _counts(relative, node):
            found.append(warning(f"{base}.{relative}", message))
    return found


def _counts(relative: str, value: Any) -> bool:
    """False for values that ask for nothing (`experimental.grove: {}`, a disabled checkpoint)."""
    check: Callable[[Any], bool] = _ASKS_FOR_SOMETHING.get(relative, lambda _: True)
    return check(value)


_ASKS_FOR_SOMETHING: Final[dict[str, Callable[[Any], bool]]] = {
    "experimental.grove": lambda v: isinstance(v, Mapping) and v.get("forceScalingGroup") is True,
    "experimental.checkpoint": lambda v: isinstance(v, Mapping) and v.get("enabled") is True,
}
