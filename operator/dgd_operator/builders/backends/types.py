"""Shared vocabulary of the backend launch rules: roles, ports, options and the result type.

Which engine a service runs (`Backend`, `BackendError`) is decided in `api.engine_args`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dgd_operator.api.k8s import Manifest

Role = Literal["main", "leader", "worker"]
"""`main`: a single-pod engine. `leader`/`worker`: node 0 / nodes 1..N-1 of a multinode group."""


# Ports fixed by Dynamo's launch rules (kept identical so images and docs line up).
RAY_PORT = 6379
VLLM_MP_MASTER_PORT = 29500
VLLM_DP_RPC_PORT = 13445
SGLANG_DIST_INIT_PORT = 29500
MPI_SSH_PORT = 2222

# The one ConfigMap (per DGD) that carries our launch helpers (`api.naming`); Dynamo's volume
# name and key are kept for the wait-for-leader script so pods look the same to people who
# know Dynamo.
LAUNCH_SCRIPTS_VOLUME = "wait-leader-script"
LAUNCH_SCRIPTS_MOUNT_PATH = "/scripts"
WAIT_FOR_LEADER_KEY = "wait-for-leader.py"
RAY_WAIT_KEY = "ray-wait.py"
WAIT_FOR_TCP_KEY = "wait-for-tcp.py"

DEFAULT_STARTUP_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class LaunchOptions:
    """How launch rewrites are rendered.

    `dynamo_compat=True` reproduces NVIDIA Dynamo's rewrites (no startup ordering: no
    wait-for-leader init containers beyond Dynamo's vLLM mp one, no Ray wait-for-all-nodes
    step, no mpirun wait for worker sshd, no `exec`). The default adds startup ordering for
    every backend (see `dgd_operator.builders.backends` module docs).

    Deliberate differences in both modes, where Dynamo's output would not run: a token
    containing `'` in a line evaluated directly by `sh -c` is not given the `'"'"'` rewrite;
    a shell-form vLLM Ray leader gets the executor flag inside its script instead of after
    `sh -c <script>`; vLLM's parallelism is read in every spelling vLLM accepts (`-tp 16`,
    `--tensor-parallel-size=16`, flags in `command`), where Dynamo reads only spaced long
    flags in `args` and would start such a graph without its multinode flags.
    """

    dynamo_compat: bool = False
    startup_timeout_seconds: int = DEFAULT_STARTUP_TIMEOUT_SECONDS
    """How long a worker waits for its leader, and a leader for its workers, before failing
    with a message (the container then restarts under the pod's restart policy)."""


@dataclass(frozen=True)
class BackendResult:
    """Output of `with_backend_launch`: new dicts, the inputs are never mutated.

    `extra_objects` are cluster objects the pods depend on (today: the launch-scripts
    ConfigMap). They carry apiVersion, kind, metadata.name and data only; the caller adds
    namespace, labels and ownerReferences, and de-duplicates by (kind, name) because every
    multinode service of a DGD returns the same ConfigMap.
    """

    container: Manifest
    pod_spec: Manifest
    extra_objects: list[Manifest] = field(default_factory=list)
