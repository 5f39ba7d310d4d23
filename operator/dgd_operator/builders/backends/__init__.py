"""Backend launch rules (vLLM, SGLang, TensorRT-LLM): argument injection for multinode and data parallel.

Public API (pure: plain dicts in, new dicts out, inputs never mutated; `resolve_backend` and
`gpus_per_pod` are in `api.engine_args`, the group names in `api.naming`)::

    backend = resolve_backend(service.component_type, main_container, dgd.spec.backend_framework)
    result = with_backend_launch(
        container, pod_spec,
        backend=backend, role="leader" | "worker" | "main",
        node_count=N, gpus_per_pod=gpus_per_pod(service.resources, backend),
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

from collections.abc import Mapping
from typing import Any

from dgd_operator.api.engine_args import Backend
from dgd_operator.api.tree import json_copy
from dgd_operator.builders.backends.addressing import (
    DgdGroupAddressing,
    GroveAddressing,
    LwsAddressing,
    MultinodeAddressing,
)
from dgd_operator.builders.backends.pod_edits import launch_scripts_configmap
from dgd_operator.builders.backends.sglang import sglang_launch
from dgd_operator.builders.backends.trtllm import trtllm_launch
from dgd_operator.builders.backends.types import BackendResult, LaunchOptions, Role
from dgd_operator.builders.backends.vllm import vllm_launch

__all__ = [
    "BackendResult",
    "DgdGroupAddressing",
    "GroveAddressing",
    "LaunchOptions",
    "LwsAddressing",
    "MultinodeAddressing",
    "Role",
    "launch_scripts_configmap",
    "with_backend_launch",
]

_DEFAULT_OPTIONS = LaunchOptions()


def with_backend_launch(
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
    """The container and pod spec with the backend's launch rules for one role; new dicts.

    `role="main"` (single-pod service) and `node_count <= 1` leave both dicts unchanged, as
    does `backend="noop"`. Raises `BackendError` for TensorRT-LLM multinode without an MPI
    secret name.
    """
    if backend == "vllm":
        return vllm_launch(
            container,
            pod_spec,
            role=role,
            node_count=node_count,
            gpus_per_pod=gpus_per_pod,
            annotations=annotations,
            dgd_name=dgd_name,
            addressing=addressing,
            options=options,
        )
    if backend == "sglang":
        return sglang_launch(
            container,
            pod_spec,
            role=role,
            node_count=node_count,
            dgd_name=dgd_name,
            addressing=addressing,
            options=options,
        )
    if backend == "trtllm":
        return trtllm_launch(
            container,
            pod_spec,
            role=role,
            node_count=node_count,
            gpus_per_pod=gpus_per_pod,
            dgd_name=dgd_name,
            addressing=addressing,
            mpi_secret_name=mpi_secret_name,
            options=options,
        )
    return BackendResult(_copy(container), _copy(pod_spec), [])


def _copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    return json_copy(dict(obj))
