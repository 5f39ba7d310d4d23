"""Pod spec and pod template of a component (reference §2.6 steps 10-14)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dgd_operator.api import constants
from dgd_operator.api.naming import discovery_service_account_name
from dgd_operator.api.tree import json_copy
from dgd_operator.builders.components import component_defaults
from dgd_operator.builders.container import (
    Container,
    Volume,
    build_main_container,
    ordered_container,
)
from dgd_operator.builders.context import ServiceContext
from dgd_operator.builders.env import merge_envs
from dgd_operator.builders.epp import add_missing_volumes, epp_volumes
from dgd_operator.builders.labels import pod_annotations, pod_labels
from dgd_operator.builders.merge import override_merge
from dgd_operator.builders.model_service import model_pod_annotations, model_pod_labels
from dgd_operator.builders.options import image_registry
from dgd_operator.builders.placement import (
    pack_affinity_terms,
    queue_placement,
    with_pack_affinity,
)
from dgd_operator.builders.sidecar import with_frontend_sidecar

PodSpec = dict[str, Any]
PodHook = Callable[[Container, PodSpec], tuple[Container, PodSpec]]
"""Last step before the main container joins the pod: gets the finished main container and the
pod spec without it (sidecars, volumes, ...) and returns new ones (Dynamo's backend
`UpdateContainer` / `UpdatePodSpec`, e.g. multinode launch rewrites)."""

SHARED_MEMORY_VOLUME = "shared-memory"
SHARED_MEMORY_PATH = "/dev/shm"
DEFAULT_FS_GROUP = 1000
DEFAULT_SERVICE_ACCOUNT = "default"

_POD_SPEC_KEY_ORDER = (
    "initContainers",
    "containers",
    "volumes",
    "serviceAccountName",
    "securityContext",
    "terminationGracePeriodSeconds",
    "restartPolicy",
    "imagePullSecrets",
)


def shared_memory(ctx: ServiceContext) -> tuple[Volume, dict[str, Any]] | None:
    """The `/dev/shm` emptyDir volume and mount, or None when `sharedMemory.disabled`."""
    settings = ctx.spec.shared_memory
    if settings is not None and settings.disabled:
        return None
    size = (
        settings.size if settings is not None else None
    ) or ctx.graph.options.default_shared_memory
    volume = {"name": SHARED_MEMORY_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": size}}
    return volume, {"name": SHARED_MEMORY_VOLUME, "mountPath": SHARED_MEMORY_PATH}


def image_pull_secrets(ctx: ServiceContext) -> list[str]:
    """Secrets matching the registry of `mainContainer.image`, unless discovery is disabled."""
    if (
        ctx.annotations.get(constants.ANNOTATION_DISABLE_PULL_SECRET_DISCOVERY, "").lower()
        == "true"
    ):
        return []
    main = ctx.spec.extra_pod_spec.main_container if ctx.spec.extra_pod_spec else None
    image = (main or {}).get("image")
    if not image:
        return []
    return list(ctx.graph.options.registry_secrets(image_registry(str(image))))


def base_pod_spec(ctx: ServiceContext) -> PodSpec:
    """Step 11: the operator's pod defaults, then `extraPodSpec` PodSpec fields merged over them."""
    defaults = component_defaults(ctx.component_type)
    grace = (
        defaults.termination_grace_period_seconds
        or ctx.graph.options.termination_grace_period_seconds
    )
    spec: PodSpec = {"terminationGracePeriodSeconds": grace, "restartPolicy": "Always"}
    if defaults.service_account:
        spec["serviceAccountName"] = defaults.service_account
    user = ctx.spec.extra_pod_spec.pod_spec() if ctx.spec.extra_pod_spec else {}
    merged = override_merge(spec, user)
    if ctx.component_type == constants.COMPONENT_EPP:
        merged["volumes"] = add_missing_volumes(list(merged.get("volumes") or []), epp_volumes(ctx))
    return merged


def build_pod_spec(
    ctx: ServiceContext,
    *,
    extra_env: list[dict[str, Any]] | None = None,
    pod_hook: PodHook | None = None,
) -> PodSpec:
    """The complete pod spec of a component.

    `extra_env` (e.g. a multinode pod's rank and leader address) is merged into the main
    container's env over everything else; `pod_hook` runs last (see `PodHook`).
    """
    container, pvc_volumes = build_main_container(ctx)
    if extra_env:
        container["env"] = merge_envs(container.get("env") or [], extra_env)
    spec = base_pod_spec(ctx)
    user_pod = ctx.spec.extra_pod_spec.pod_spec() if ctx.spec.extra_pod_spec else {}
    if user_pod.get("securityContext") is None:
        spec["securityContext"] = {"fsGroup": DEFAULT_FS_GROUP}
    if not spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        # Always explicit: an omitted field is not cleared by server-side apply (the API server
        # mirrors it into the deprecated serviceAccount), so pods would keep naming an account
        # the operator prunes when discovery moves to etcd. `default` is Dynamo's fallback.
        spec["serviceAccountName"] = (
            discovery_service_account_name(ctx.graph.name)
            if ctx.graph.kube_discovery
            else DEFAULT_SERVICE_ACCOUNT
        )

    priority_class = ctx.graph.dgd.spec.priority_class_name
    if priority_class and not user_pod.get("priorityClassName"):
        # The graph's priority for every pod (a service's own extraPodSpec value wins); a
        # multinode group's PodGroup copies its pods' value, as the gang scheduler requires.
        spec["priorityClassName"] = priority_class
    scheduler = queue_placement(ctx.graph.dgd.metadata.annotations).scheduler_name
    if scheduler and not user_pod.get("schedulerName"):
        spec["schedulerName"] = scheduler
    spec = with_pack_affinity(
        spec,
        pack_affinity_terms(ctx.graph.dgd, ctx.service, ctx.graph.options.topology_domain_keys),
    )

    volumes: list[Volume] = [*(spec.get("volumes") or []), *pvc_volumes]
    shm = shared_memory(ctx)
    if shm is not None:
        shm_volume, shm_mount = shm
        volumes = [v for v in volumes if v.get("name") != SHARED_MEMORY_VOLUME] + [shm_volume]
        mounts = [
            m
            for m in container.get("volumeMounts") or []
            if m.get("name") != SHARED_MEMORY_VOLUME and m.get("mountPath") != SHARED_MEMORY_PATH
        ]
        container["volumeMounts"] = [*mounts, shm_mount]
    if volumes:
        spec["volumes"] = volumes

    pull_secrets = [dict(s) for s in spec.get("imagePullSecrets") or []]
    for name in image_pull_secrets(ctx):
        if all(s.get("name") != name for s in pull_secrets):
            pull_secrets.append({"name": name})
    if pull_secrets:
        spec["imagePullSecrets"] = pull_secrets
    if pod_hook is not None:
        container, spec = pod_hook(container, spec)
    main = ordered_container(container)
    spec["containers"] = with_frontend_sidecar(
        ctx, [*json_copy(spec.get("containers") or []), main], main
    )
    return ordered_pod_spec(spec)


def build_pod_template(
    ctx: ServiceContext,
    *,
    extra_labels: dict[str, str] | None = None,
    extra_env: list[dict[str, Any]] | None = None,
    pod_hook: PodHook | None = None,
) -> dict[str, Any]:
    """PodTemplateSpec: labels/annotations of §2.6 and the pod spec. `extra_labels` win (e.g. role)."""
    queue = queue_placement(ctx.graph.dgd.metadata.annotations)
    metadata: dict[str, Any] = {
        "labels": pod_labels(ctx, {**queue.labels, **model_pod_labels(ctx), **(extra_labels or {})})
    }
    annotations = {**pod_annotations(ctx), **queue.annotations, **model_pod_annotations(ctx)}
    if annotations:
        metadata["annotations"] = annotations
    spec = build_pod_spec(ctx, extra_env=extra_env, pod_hook=pod_hook)
    return {"metadata": metadata, "spec": spec}


def ordered_pod_spec(spec: PodSpec) -> PodSpec:
    """The same pod spec with keys in a stable, readable order."""
    ordered = {key: spec[key] for key in _POD_SPEC_KEY_ORDER if key in spec}
    ordered.update({k: v for k, v in spec.items() if k not in ordered})
    return ordered
