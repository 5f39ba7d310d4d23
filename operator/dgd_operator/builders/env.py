"""Container environment: Dynamo's common and per-component env, merges, infrastructure env."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dgd_operator.api import constants
from dgd_operator.builders.components import component_defaults
from dgd_operator.builders.context import ServiceContext
from dgd_operator.builders.options import BuildOptions

EnvVar = dict[str, Any]


def env_var(name: str, value: str) -> EnvVar:
    """A literal `{name, value}` env var."""
    return {"name": name, "value": value}


def field_env(name: str, field_path: str) -> EnvVar:
    """A downward-API env var reading `field_path` of the pod."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def merge_envs(*layers: Iterable[EnvVar]) -> list[EnvVar]:
    """Union by name, later layers win, sorted by name (Dynamo's `MergeEnvs`).

    Each var of the result is a new dict (a shallow copy of the winner, made once at the end).
    """
    by_name: dict[str, EnvVar] = {}
    for layer in layers:
        for var in layer:
            by_name[str(var["name"])] = var
    return [dict(by_name[name]) for name in sorted(by_name)]


def add_missing_envs(env: Iterable[EnvVar], defaults: Iterable[EnvVar]) -> list[EnvVar]:
    """Add `defaults` whose names `env` lacks (existing values win); result sorted by name."""
    return merge_envs(defaults, env)


def common_env(ctx: ServiceContext) -> list[EnvVar]:
    """Env every main container gets (`getCommonContainer`)."""
    env: list[EnvVar] = [env_var("DYN_NAMESPACE", ctx.dynamo_namespace)]
    if ctx.component_type:
        # Dynamo passes the component *type*, not the service name.
        env.append(env_var("DYN_COMPONENT", ctx.component_type))
    env += [
        env_var("DYN_PARENT_DGD_K8S_NAME", ctx.graph.name),
        env_var("DYN_PARENT_DGD_K8S_NAMESPACE", ctx.graph.namespace),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_UID", "metadata.uid"),
    ]
    if ctx.worker_hash:
        # The generation's runtime namespace is `<DYN_NAMESPACE>-<suffix>` (§9).
        env.append(env_var(constants.ENV_WORKER_SUFFIX, ctx.worker_hash))
    if ctx.graph.kube_discovery:
        env.append(env_var("DYN_DISCOVERY_BACKEND", "kubernetes"))
        if ctx.container_discovery_mode:
            env.append(env_var("CONTAINER_NAME", "main"))
            env.append(env_var("DYN_KUBE_DISCOVERY_MODE", "container"))
    return env


def default_env(ctx: ServiceContext) -> list[EnvVar]:
    """Common env plus the component type's own env (reference §2.7), sorted."""
    extra = [env_var(name, value) for name, value in component_defaults(ctx.component_type).env]
    if ctx.component_type == constants.COMPONENT_FRONTEND:
        extra.append(env_var("DYN_NAMESPACE_PREFIX", ctx.dynamo_namespace))
    return merge_envs(common_env(ctx), extra)


def service_envs(ctx: ServiceContext) -> list[EnvVar]:
    """The DGD `envs` merged with the service `envs` (service wins)."""
    return merge_envs(ctx.graph.dgd.spec.envs, ctx.spec.envs)


def infrastructure_env(options: BuildOptions) -> list[EnvVar]:
    """NATS / etcd / model express / Prometheus addresses, only those the operator is configured with."""
    settings = (
        ("NATS_SERVER", options.nats_address),
        ("ETCD_ENDPOINTS", options.etcd_address),
        ("MODEL_EXPRESS_URL", options.model_express_url),
        ("PROMETHEUS_ENDPOINT", options.prometheus_endpoint),
    )
    return [env_var(name, value) for name, value in settings if value]
