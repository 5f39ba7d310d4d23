"""The main container of a component, built in Dynamo's order (reference §2.6 steps 1-9)."""

from __future__ import annotations

from typing import Any

from dgd_operator.api import constants
from dgd_operator.api.models import ResourceItem, Resources
from dgd_operator.api.tree import json_copy
from dgd_operator.builders.components import component_defaults
from dgd_operator.builders.context import ServiceContext
from dgd_operator.builders.env import (
    add_missing_envs,
    default_env,
    env_var,
    infrastructure_env,
    merge_envs,
    service_envs,
)
from dgd_operator.builders.epp import epp_args, epp_env, epp_volume_mounts
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.merge import PROBE_KEYS, is_empty, merge_into, merge_probe

Container = dict[str, Any]
Volume = dict[str, Any]

MAIN_CONTAINER = "main"
VLLM_COMPILATION_CACHE = "/root/.cache/vllm"

# Key order of the rendered container, for readable output; unknown keys follow.
_CONTAINER_KEY_ORDER = (
    "name",
    "image",
    "imagePullPolicy",
    "workingDir",
    "command",
    "args",
    "ports",
    "env",
    "envFrom",
    "resources",
    "volumeMounts",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
)


def default_container(ctx: ServiceContext) -> Container:
    """Step 1: the component type's base container named `main`."""
    defaults = component_defaults(ctx.component_type)
    container: Container = {"name": MAIN_CONTAINER}
    if defaults.command:
        container["command"] = list(defaults.command)
    if defaults.args:
        container["args"] = list(defaults.args)
    if defaults.ports:
        container["ports"] = json_copy(list(defaults.ports))
    container["env"] = default_env(ctx)
    if ctx.component_type == constants.COMPONENT_EPP:
        container["args"] = epp_args(ctx)
        container["env"] = merge_envs(container["env"], epp_env(ctx))
        container["volumeMounts"] = epp_volume_mounts()
    for key, probe in zip(
        PROBE_KEYS,
        (defaults.liveness_probe, defaults.readiness_probe, defaults.startup_probe),
        strict=True,
    ):
        if probe is not None:
            container[key] = json_copy(probe)
    return container


def merge_main_container(base: Container, user: Container) -> Container:
    """Step 2: `extraPodSpec.mainContainer` over the defaults (override merge).

    Lists replace, nested objects merge, `env` merges by name (user wins), probes deep-merge,
    except `startupProbe`, which replaces the default whole. `base` is merged into in place
    (callers pass the `default_container` they built for it): copying it cost a twentieth
    of a graph's build.
    """
    plain = {k: v for k, v in user.items() if k not in ("env", *PROBE_KEYS)}
    # `plain` holds neither env nor probes, so those of `base` read below are the defaults.
    merged = base
    merge_into(merged, plain)
    if not is_empty(user.get("env")):
        merged["env"] = merge_envs(base.get("env") or [], user["env"])
    for key in ("livenessProbe", "readinessProbe"):
        if not is_empty(user.get(key)):
            merged[key] = merge_probe(base.get(key), user[key])
    if not is_empty(user.get("startupProbe")):
        merged["startupProbe"] = json_copy(user["startupProbe"])
    # Deliberate: the container stays `main` (discovery, status and multinode code look for it).
    merged["name"] = MAIN_CONTAINER
    return merged


def resource_list(item: ResourceItem | None) -> dict[str, str]:
    """Dynamo's compact ResourceItem as a Kubernetes ResourceList."""
    if item is None:
        return {}
    quantities: dict[str, str] = {}
    if item.cpu:
        quantities["cpu"] = item.cpu
    if item.memory:
        quantities["memory"] = item.memory
    if item.gpu:
        quantities[item.gpu_type or constants.GPU_RESOURCE] = item.gpu
    quantities.update(item.custom)
    return quantities


def apply_resources(container: Container, resources: Resources | None) -> None:
    """Step 5: DGD `resources` keys overwrite `mainContainer.resources`; claims are appended."""
    if resources is None:
        return
    current: dict[str, Any] = json_copy(container.get("resources") or {})
    for field_name, item in (("requests", resources.requests), ("limits", resources.limits)):
        quantities = resource_list(item)
        if quantities:
            current[field_name] = {**(current.get(field_name) or {}), **quantities}
    if resources.claims:
        current["claims"] = [*(current.get("claims") or []), *json_copy(resources.claims)]
    if current:
        container["resources"] = current


def apply_volume_mounts(ctx: ServiceContext, container: Container) -> list[Volume]:
    """Step 9: one PVC volume + mount per `volumeMounts[]`; returns the volumes to add.

    A compilation-cache mount defaults to vLLM's cache directory and sets `VLLM_CACHE_ROOT`.
    """
    volumes: list[Volume] = []
    mounts: list[dict[str, Any]] = list(container.get("volumeMounts") or [])
    for index, mount in enumerate(ctx.spec.volume_mounts):
        path = mount.mount_point
        if mount.use_as_compilation_cache and ctx.backend_framework == "vllm":
            path = path or VLLM_COMPILATION_CACHE
            container["env"] = merge_envs(
                container.get("env") or [], [env_var("VLLM_CACHE_ROOT", path)]
            )
        if not path:
            raise BuildError(
                f"{ctx.path}.volumeMounts[{index}].mountPoint",
                "required (only vLLM workers have a default compilation cache path)",
            )
        volumes.append({"name": mount.name, "persistentVolumeClaim": {"claimName": mount.name}})
        mounts.append({"name": mount.name, "mountPath": path})
    if mounts:
        container["volumeMounts"] = mounts
    return volumes


def build_main_container(ctx: ServiceContext) -> tuple[Container, list[Volume]]:
    """The main container (steps 1-9 of §2.6) and the PVC volumes it needs."""
    container = default_container(ctx)
    extra = ctx.spec.extra_pod_spec
    if extra is not None and extra.main_container:
        container = merge_main_container(container, extra.main_container)
    container["env"] = merge_envs(container.get("env") or [], service_envs(ctx))
    if ctx.spec.liveness_probe:
        container["livenessProbe"] = json_copy(ctx.spec.liveness_probe)
    if ctx.spec.readiness_probe:
        container["readinessProbe"] = json_copy(ctx.spec.readiness_probe)
    apply_resources(container, ctx.spec.resources)
    if ctx.spec.env_from_secret:
        container["envFrom"] = [
            *(container.get("envFrom") or []),
            {"secretRef": {"name": ctx.spec.env_from_secret}},
        ]
    container["env"] = add_missing_envs(container["env"], infrastructure_env(ctx.graph.options))
    volumes = apply_volume_mounts(ctx, container)
    return ordered_container(container), volumes


def ordered_container(container: Container) -> Container:
    """The same container with keys in a stable, readable order."""
    ordered = {key: container[key] for key in _CONTAINER_KEY_ORDER if key in container}
    ordered.update({k: v for k, v in container.items() if k not in ordered})
    return ordered
