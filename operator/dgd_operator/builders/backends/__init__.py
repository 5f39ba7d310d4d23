"""Backend launch rules (vLLM, SGLang, TensorRT-LLM): argument injection for multinode and data parallel.

Public API (pure: plain dicts in, new dicts out, inputs never mutated)::

    backend = resolve_backend(service.component_type, main_container, dgd.spec.backend_framework)
    result = apply_backend(
        container, pod_spec,
        backend=backend, role="leader" | "worker" | "main",
        node_count=N, gpus_per_pod=gpus_per_pod(service, backend),
        annotations=pod_template_annotations, dgd_name=D,
        addressing=DgdGroupAddressing(D, service_key, group_index),
        mpi_secret_name=options.mpi_ssh_secret_name,
    )
    result.container, result.pod_spec, result.extra_objects

`container` is the finished main container (env included: TRT-LLM exports every env name to
mpirun ranks); `pod_spec` is the PodSpec without the main container (volumes, initContainers
are appended to). `extra_objects` holds the launch-scripts ConfigMap when the pods need it.

Startup ordering (ours; `LaunchOptions(dynamo_compat=True)` turns it off and reproduces
Dynamo's rewrites byte for byte):

* every multinode worker that connects to its leader (vLLM Ray/mp/DP, SGLang) first waits in
  an init container until the leader's port accepts TCP (`wait-for-leader`, or Dynamo's
  `wait-for-leader-mp` for vLLM mp), failing with a message after the startup timeout;
* the vLLM Ray leader runs `ray start --head --port=6379 && python3 /scripts/ray-wait.py
  --nodes N --gpus-per-node G --timeout S && exec <engine> --distributed-executor-backend ray`:
  the engine starts only once all N nodes joined with their GPUs and a STRICT_SPREAD gang
  placement group was placed;
* the TensorRT-LLM leader waits until every worker's sshd (port 2222) accepts TCP, then mpirun.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from dgd_operator.builders.backends.addressing import (
    DgdGroupAddressing,
    GroveAddressing,
    LwsAddressing,
    MultinodeAddressing,
    leader_address,
    leader_statefulset_name,
    nodes_service_name,
    worker_address,
    worker_statefulset_name,
)
from dgd_operator.builders.backends.detect import WORKER_COMPONENT_TYPES, resolve_backend
from dgd_operator.builders.backends.podspec import (
    launch_scripts_configmap,
    launch_scripts_configmap_name,
)
from dgd_operator.builders.backends.sglang import apply_sglang
from dgd_operator.builders.backends.trtllm import apply_trtllm
from dgd_operator.builders.backends.types import (
    Backend,
    BackendError,
    BackendResult,
    LaunchOptions,
    Role,
)
from dgd_operator.builders.backends.vllm import apply_vllm

__all__ = [
    "WORKER_COMPONENT_TYPES",
    "Backend",
    "BackendError",
    "BackendResult",
    "DgdGroupAddressing",
    "GroveAddressing",
    "LaunchOptions",
    "LwsAddressing",
    "MultinodeAddressing",
    "Role",
    "apply_backend",
    "gpus_per_pod",
    "launch_scripts_configmap",
    "launch_scripts_configmap_name",
    "leader_address",
    "leader_statefulset_name",
    "nodes_service_name",
    "resolve_backend",
    "worker_address",
    "worker_statefulset_name",
]

_DEFAULT_OPTIONS = LaunchOptions()


def apply_backend(
    container: Mapping[str, Any],
    pod_spec: Mapping[str, Any],
    *,
    backend: Backend,
    role: Role,
    node_count: int,
    gpus_per_pod: int,
    annotations: Mapping[str, str],
    dgd_name: str,
    addressing: MultinodeAddressing,
    mpi_secret_name: str | None = None,
    options: LaunchOptions = _DEFAULT_OPTIONS,
) -> BackendResult:
    """Apply the backend's launch rules for one role of a service; returns new dicts.

    `role="main"` (single-pod service) and `node_count <= 1` leave both dicts unchanged, as
    does `backend="noop"`. Raises `BackendError` for TensorRT-LLM multinode without an MPI
    secret name.
    """
    if backend == "vllm":
        return apply_vllm(
            container, pod_spec, role=role, node_count=node_count, gpus_per_pod=gpus_per_pod,
            annotations=annotations, dgd_name=dgd_name, addressing=addressing, options=options,
        )
    if backend == "sglang":
        return apply_sglang(
            container, pod_spec, role=role, node_count=node_count, dgd_name=dgd_name,
            addressing=addressing, options=options,
        )
    if backend == "trtllm":
        return apply_trtllm(
            container, pod_spec, role=role, node_count=node_count, gpus_per_pod=gpus_per_pod,
            dgd_name=dgd_name, addressing=addressing, mpi_secret_name=mpi_secret_name, options=options,
        )
    return BackendResult(_copy(container), _copy(pod_spec), [])


def _copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(obj))


def _int_or_zero(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def gpus_per_pod(resources: Any, backend: Backend) -> int:
    """GPUs per pod as the launch rules count them, from a service's `Resources` model.

    TensorRT-LLM: `requests.gpu`, else `limits.gpu` (Dynamo). Others: `limits.gpu`, else
    `requests.gpu` (Dynamo reads only limits; requests-only services are counted too).
    Unset or non-integer values count as 0 (no GPU arithmetic, nothing injected).
    """
    if resources is None:
        return 0
    limits = getattr(getattr(resources, "limits", None), "gpu", None)
    requests = getattr(getattr(resources, "requests", None), "gpu", None)
    first, second = (requests, limits) if backend == "trtllm" else (limits, requests)
    return _int_or_zero(first) or _int_or_zero(second)
