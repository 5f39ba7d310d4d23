"""TensorRT-LLM multinode launch: mpirun on the leader over SSH (port 2222) to sshd workers.

Both roles mount the MPI SSH key Secret at `/ssh-pk` and get
`OMPI_MCA_orte_keep_fqdn_hostnames=1`. The leader runs `mpirun -n <nodes x GPUs> -H <hosts>
... bash -c 'trtllm-llmapi-launch <original command line>'`, exporting (`-x`) a fixed list of
variables plus every env var of the container. Workers run sshd in the foreground; their
liveness/startup probes are removed and readiness becomes a TCP check of port 2222. Startup
ordering (ours): the leader waits until every worker's sshd accepts TCP before mpirun
(Dynamo's LWS DNS wait is kept in `dynamo_compat` for addressings that need it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dgd_operator.api.engine_args import BackendError
from dgd_operator.api.k8s import Manifest
from dgd_operator.api.tree import json_copy
from dgd_operator.builders.backends.addressing import MultinodeAddressing
from dgd_operator.builders.backends.pod_edits import (
    add_launch_scripts_volume,
    append_env,
    launch_scripts_configmap,
    mount_launch_scripts,
    remove_probes,
)
from dgd_operator.builders.backends.quoting import (
    is_python_interpreter,
    sh_join,
    single_quote_embed,
)
from dgd_operator.builders.backends.scripts import render
from dgd_operator.builders.backends.types import (
    LAUNCH_SCRIPTS_MOUNT_PATH,
    MPI_SSH_PORT,
    WAIT_FOR_TCP_KEY,
    BackendResult,
    LaunchOptions,
    Role,
)

MPI_EXPORTED_ENV = frozenset(
    {
        "CUDA_VISIBLE_DEVICES",
        "HF_DATASETS_CACHE",
        "HF_ENDPOINT",
        "HF_HOME",
        "HF_TOKEN",
        "HOME",
        "HUGGING_FACE_HUB_TOKEN",
        "LD_LIBRARY_PATH",
        "MODEL_PATH",
        "NCCL_DEBUG",
        "NCCL_IB_DISABLE",
        "NCCL_P2P_DISABLE",
        "PATH",
        "PYTHONPATH",
        "TENSORRT_LLM_CACHE_DIR",
        "TOKENIZERS_PARALLELISM",
        "TRANSFORMERS_CACHE",
        "TRTLLM_USE_UCX_KVCACHE",
        "USER",
    }
)
SSH_KEY_MOUNT_PATH = "/ssh-pk"


def original_command_line(container: Mapping[str, Any]) -> str:
    """The engine command line to run under `trtllm-llmapi-launch` (not yet single-quote safe)."""
    command: list[str] = list(container.get("command") or [])
    args: list[str] = list(container.get("args") or [])
    if command and is_python_interpreter(command[0]):
        return sh_join(command + args)
    if args:
        return " ".join(args)
    return " ".join(command)


def host_list(node_count: int, addressing: MultinodeAddressing) -> list[str]:
    """Leader first, then workers 1..N-1 (mpirun `-H`)."""
    return [addressing.leader_host()] + [addressing.worker_host(i) for i in range(1, node_count)]


def trtllm_launch(
    container: Mapping[str, Any],
    pod_spec: Mapping[str, Any],
    *,
    role: Role,
    node_count: int,
    gpus_per_pod: int,
    dgd_name: str,
    addressing: MultinodeAddressing,
    mpi_secret_name: str | None,
    options: LaunchOptions,
) -> BackendResult:
    """TensorRT-LLM launch rewrite for one role of a service (see module docs)."""
    out: Manifest = json_copy(dict(container))
    spec: Manifest = json_copy(dict(pod_spec))
    if node_count <= 1 or role == "main":
        return BackendResult(out, spec, [])
    if not mpi_secret_name:
        raise BackendError(
            "TensorRT-LLM multinode needs the MPI SSH secret name (operator setting)"
        )

    spec["volumes"] = [
        *(spec.get("volumes") or []),
        {"name": mpi_secret_name, "secret": {"secretName": mpi_secret_name, "defaultMode": 0o644}},
    ]
    out["volumeMounts"] = [
        *(out.get("volumeMounts") or []),
        {"name": mpi_secret_name, "mountPath": SSH_KEY_MOUNT_PATH, "readOnly": True},
    ]
    append_env(out, {"name": "OMPI_MCA_orte_keep_fqdn_hostnames", "value": "1"})
    extra: list[Manifest] = []

    if role == "worker":
        remove_probes(out, "livenessProbe", "startupProbe")
        out["readinessProbe"] = {
            "tcpSocket": {"port": MPI_SSH_PORT},
            "initialDelaySeconds": 20,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 10,
        }
        out["command"] = ["/bin/sh", "-c"]
        out["args"] = [
            render("sshd_worker.sh.j2", ssh_port=MPI_SSH_PORT, exec_sshd=not options.dynamo_compat)
        ]
        return BackendResult(out, spec, extra)

    hosts = host_list(node_count, addressing)
    env_names = sorted(
        MPI_EXPORTED_ENV | {str(e["name"]) for e in out.get("env") or [] if "name" in e}
    )
    dns_wait_hosts = hosts[1:] if options.dynamo_compat and addressing.needs_dns_wait() else []
    wait_workers = None
    if not options.dynamo_compat and node_count > 1:
        targets = " ".join(f"{h}:{MPI_SSH_PORT}" for h in hosts[1:])
        wait_workers = (
            f"python3 {LAUNCH_SCRIPTS_MOUNT_PATH}/{WAIT_FOR_TCP_KEY} --timeout {options.startup_timeout_seconds} "
            f"--what 'the sshd of every TensorRT-LLM worker' {targets}"
        )
        add_launch_scripts_volume(spec, dgd_name)
        mount_launch_scripts(out)
        extra.append(launch_scripts_configmap(dgd_name))
    out["command"] = ["/bin/sh", "-c"]
    out["args"] = [
        render(
            "mpirun_leader.sh.j2",
            ssh_port=MPI_SSH_PORT,
            dns_wait_hosts=dns_wait_hosts,
            wait_workers_command=wait_workers,
            total_ranks=node_count * gpus_per_pod,
            hosts=hosts,
            env_names=env_names,
            command_line=single_quote_embed(original_command_line(container)),
        )
    ]
    return BackendResult(out, spec, extra)
