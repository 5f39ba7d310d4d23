"""The endpoint picker (EPP) of the Gateway API Inference Extension and what points at it.

A component of type `epp` (at most one per graph) runs the inference scheduler a Gateway asks
which worker pod serves a request (`dynamo-v1beta1.md` §8). Beyond its Deployment and Service
the graph gets:

- the ConfigMap `<dgd>-epp-config` with the `EndpointPickerConfig` document, when the config is
  given inline (`eppConfig.config`); a referenced ConfigMap (`eppConfig.configMapRef`) is only
  mounted;
- the InferencePool `<dgd>-pool` (`inference.networking.k8s.io/v1`) selecting the graph's
  worker-class pods (label `nvidia.com/dynamo-component-class: worker` + Dynamo namespace) on
  the port their frontend sidecar serves, with the EPP Service as its endpoint picker. Only when
  the API server serves that API (`BuildOptions.inference_pool_api`); otherwise a warning;
- with the Istio mesh, a DestinationRule for the EPP Service (TLS to its gRPC port).

This module also holds the EPP's container and pod defaults that depend on the graph (its
arguments name the pool), which `container.py` and `podspec.py` apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from dgd_operator.api import constants
from dgd_operator.api.k8s import Manifest
from dgd_operator.api.naming import epp_config_map_name, inference_pool_name
from dgd_operator.api.tree import json_copy
from dgd_operator.api.validation.errors import Problem, warning
from dgd_operator.builders.components import EPP_GRPC_PORT, EPP_HEALTH_PORT, FRONTEND_PORT
from dgd_operator.builders.context import GraphContext, ServiceContext
from dgd_operator.builders.env import EnvVar, env_var
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.labels import object_metadata

EPP_CONFIG_FILE = "epp-config-dynamo.yaml"
EPP_CONFIG_DIR = "/etc/epp"
EPP_CONFIG_VOLUME = "epp-config"
HF_CACHE_VOLUME = "hf-cache"
HF_CACHE_PATH = "/home/nonroot/.cache"
EPP_LOG_VERBOSITY = "4"
POOL_TARGET_PORT = FRONTEND_PORT
"""Worker pods serve HTTP on the frontend port through their frontend sidecar."""


@dataclass(frozen=True)
class EppConfigSource:
    """Where the EPP's config file comes from: a ConfigMap name and the key holding the file."""

    config_map: str
    key: str
    inline: dict[str, Any] | None
    """The inline `eppConfig.config` (the operator renders the ConfigMap), else None."""


def epp_config_source(ctx: ServiceContext) -> EppConfigSource:
    """`eppConfig.configMapRef` (mounted as is) or the `<dgd>-epp-config` ConfigMap we render.

    Without `eppConfig` the pod still mounts `<dgd>-epp-config`, as Dynamo does; nothing
    creates it, so such a graph waits for the user to provide it.
    """
    raw = ctx.spec.epp_config or {}
    ref = raw.get("configMapRef")
    if isinstance(ref, dict):
        name = ref.get("name")
        if not isinstance(name, str) or not name:
            raise BuildError(f"{ctx.path}.eppConfig.configMapRef.name", "required")
        key = ref.get("key")
        return EppConfigSource(name, key if isinstance(key, str) and key else EPP_CONFIG_FILE, None)
    config = raw.get("config")
    if config is not None and not isinstance(config, dict):
        raise BuildError(f"{ctx.path}.eppConfig.config", "must be an object")
    return EppConfigSource(epp_config_map_name(ctx.graph.name), EPP_CONFIG_FILE, config)


# --- container and pod defaults ------------------------------------------------------------


def epp_args(ctx: ServiceContext) -> list[str]:
    """The EPP's arguments: its pool, gRPC ports and config file (user `args` replace them)."""
    return [
        "--pool-name",
        inference_pool_name(ctx.graph.name),
        "--pool-namespace",
        ctx.graph.namespace,
        "--pool-group",
        constants.INFERENCE_POOL_GROUP,
        "-v",
        EPP_LOG_VERBOSITY,
        "--zap-encoder",
        "json",
        "--grpc-port",
        str(EPP_GRPC_PORT),
        "--grpc-health-port",
        str(EPP_HEALTH_PORT),
        "--config-file",
        f"{EPP_CONFIG_DIR}/{EPP_CONFIG_FILE}",
    ]


def epp_env(ctx: ServiceContext) -> list[EnvVar]:
    """Graph-dependent EPP env: the Dynamo namespace it discovers workers in."""
    return [
        env_var("DYN_ENFORCE_DISAGG", "false"),
        env_var("DYN_NAMESPACE_PREFIX", ctx.dynamo_namespace),
    ]


def epp_volume_mounts() -> list[dict[str, Any]]:
    """The config directory (read-only) and a writable model-tokenizer cache."""
    return [
        {"name": EPP_CONFIG_VOLUME, "mountPath": EPP_CONFIG_DIR, "readOnly": True},
        {"name": HF_CACHE_VOLUME, "mountPath": HF_CACHE_PATH},
    ]


def epp_volumes(ctx: ServiceContext) -> list[dict[str, Any]]:
    """The config ConfigMap volume (file always at `epp-config-dynamo.yaml`) and the cache."""
    source = epp_config_source(ctx)
    return [
        {
            "name": EPP_CONFIG_VOLUME,
            "configMap": {
                "name": source.config_map,
                "items": [{"key": source.key, "path": EPP_CONFIG_FILE}],
            },
        },
        {"name": HF_CACHE_VOLUME, "emptyDir": {}},
    ]


def add_missing_volumes(
    volumes: list[dict[str, Any]], defaults: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`volumes` plus each default whose name is not taken (user volumes win)."""
    names = {v.get("name") for v in volumes}
    return [*volumes, *(json_copy(v) for v in defaults if v["name"] not in names)]


# --- objects owned by the graph --------------------------------------------------------------


def _epp_labels(ctx: ServiceContext) -> dict[str, str]:
    return {
        constants.LABEL_GRAPH: ctx.graph.name,
        constants.LABEL_COMPONENT: ctx.service,
        constants.LABEL_COMPONENT_TYPE: constants.COMPONENT_EPP,
        constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
    }


def epp_config_document(config: dict[str, Any]) -> str:
    """The config file: the inline config as an `EndpointPickerConfig` YAML document."""
    document = {
        "apiVersion": constants.EPP_CONFIG_API_VERSION,
        "kind": constants.EPP_CONFIG_KIND,
        **{k: v for k, v in config.items() if k not in ("apiVersion", "kind")},
    }
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def build_epp_config_map(ctx: ServiceContext) -> Manifest | None:
    """`<dgd>-epp-config` for an inline `eppConfig.config`; None for a referenced ConfigMap."""
    source = epp_config_source(ctx)
    if source.inline is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_metadata(ctx.graph, source.config_map, _epp_labels(ctx)),
        "data": {EPP_CONFIG_FILE: epp_config_document(source.inline)},
    }


def build_inference_pool(ctx: ServiceContext) -> Manifest:
    """`<dgd>-pool`: the graph's worker pods behind the EPP Service."""
    return {
        "apiVersion": constants.INFERENCE_POOL_GROUP_VERSION,
        "kind": constants.INFERENCE_POOL_KIND,
        "metadata": object_metadata(
            ctx.graph, inference_pool_name(ctx.graph.name), _epp_labels(ctx)
        ),
        "spec": {
            "targetPorts": [{"number": POOL_TARGET_PORT}],
            "selector": {
                "matchLabels": {
                    constants.LABEL_COMPONENT_CLASS: constants.COMPONENT_CLASS_WORKER,
                    constants.LABEL_DYNAMO_NAMESPACE: ctx.dynamo_namespace,
                }
            },
            "endpointPickerRef": {
                "kind": "Service",
                "name": ctx.service_object_name,
                "port": {"number": EPP_GRPC_PORT},
            },
        },
    }


def build_destination_rule(ctx: ServiceContext) -> Manifest | None:
    """With the Istio mesh: TLS settings for traffic to the EPP Service; else None."""
    options = ctx.graph.options
    if not options.istio_enabled:
        return None
    tls: dict[str, Any] = {"mode": options.istio_tls_mode}
    if options.istio_tls_mode == "MUTUAL":
        for key, value in (
            ("clientCertificate", options.istio_client_certificate),
            ("privateKey", options.istio_private_key),
            ("caCertificates", options.istio_ca_certificates),
        ):
            if value:
                tls[key] = value
    tls["insecureSkipVerify"] = options.istio_insecure_skip_verify
    host = f"{ctx.service_object_name}.{ctx.graph.namespace}.svc.cluster.local"
    return {
        "apiVersion": constants.ISTIO_NETWORKING_GROUP_VERSION,
        "kind": constants.DESTINATION_RULE_KIND,
        "metadata": object_metadata(ctx.graph, ctx.service_object_name, _epp_labels(ctx)),
        "spec": {"host": host, "trafficPolicy": {"tls": tls}},
    }


def build_epp_objects(ctx: ServiceContext) -> list[Manifest]:
    """The graph-owned objects of an EPP component: config, pool (if served), DestinationRule."""
    objects: list[Manifest] = []
    config_map = build_epp_config_map(ctx)
    if config_map is not None:
        objects.append(config_map)
    if ctx.graph.options.inference_pool_api:
        objects.append(build_inference_pool(ctx))
    rule = build_destination_rule(ctx)
    if rule is not None:
        objects.append(rule)
    return objects


INFERENCE_POOL_MISSING = (
    f"the API server does not serve {constants.INFERENCE_POOL_GROUP_VERSION} "
    f"{constants.INFERENCE_POOL_KIND}: no InferencePool is created for this endpoint picker; "
    "install the Gateway API Inference Extension CRDs"
)


def epp_problems(graph: GraphContext) -> list[Problem]:
    """Warnings about the graph's EPP (today: the InferencePool API is not served)."""
    if graph.epp_service is None or graph.options.inference_pool_api:
        return []
    return [warning(f"spec.services.{graph.epp_service}", INFERENCE_POOL_MISSING)]
