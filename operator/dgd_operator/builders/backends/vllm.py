"""vLLM multinode launch: Ray or multiprocessing (mp) for TP/PP across nodes, or data parallel.

Decision for a multinode group (Dynamo's rules, `api.engine_args.vllm_multinode_mode`). The
flags are read with the parser topology admission uses (`api.engine_args`), in every spelling
vLLM accepts (`-tp 8`, `--tensor-parallel-size=8`, `--tensor_parallel_size 8`, ...), where
Dynamo reads only spaced `--flag value` in `args`; a flag that is absent or not a number
(`$TP`) counts as 1:

1. TP x PP > GPUs per pod (GPUs > 0): one engine spans the nodes.
   * mp when annotation `nvidia.com/vllm-distributed-executor-backend` is `mp` (any case), or
     it is absent/invalid and `nvidia.com/dynamo-operator-origin-version` is >= 1.0.0 (a DGD
     created by a Dynamo 1.x operator); `ray` in the annotation forces Ray.
   * otherwise Ray (our default, as in Dynamo before 1.0).
2. TP x PP x DP > GPUs per pod: data parallel with hybrid load balancing, DP ranks split per pod.
3. Otherwise nothing is injected.

Workers lose their liveness/readiness/startup probes (nothing serves on them). mp sets
`VLLM_NIXL_SIDE_CHANNEL_HOST` to the pod IP. mp workers get Dynamo's `wait-for-leader-mp`
init container. Startup ordering (ours, off in `dynamo_compat`): Ray/DP workers also wait for
the leader's port in an init container, and the Ray leader starts the engine only after all
nodes joined with their GPUs (`ray-wait.py`, between `ray start --head` and the engine).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dgd_operator.api import constants
from dgd_operator.api.engine_args import Parallelism, launch_parallelism, vllm_multinode_mode
from dgd_operator.api.k8s import Manifest
from dgd_operator.api.tree import json_copy
from dgd_operator.builders.backends.addressing import MultinodeAddressing
from dgd_operator.builders.backends.inject import (
    inject_flags_into_container_command,
    insert_after_framework_token,
)
from dgd_operator.builders.backends.pod_edits import (
    add_launch_scripts_volume,
    add_wait_for_leader_init,
    append_env,
    launch_scripts_configmap,
    mount_launch_scripts,
    remove_probes,
    shell_script_index,
)
from dgd_operator.builders.backends.quoting import bash_c_quote, sh_join
from dgd_operator.builders.backends.scripts import render
from dgd_operator.builders.backends.types import (
    LAUNCH_SCRIPTS_MOUNT_PATH,
    RAY_PORT,
    RAY_WAIT_KEY,
    VLLM_DP_RPC_PORT,
    VLLM_MP_MASTER_PORT,
    BackendResult,
    LaunchOptions,
    Role,
)

EXECUTOR_FLAG = "--distributed-executor-backend"
ALL_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _semver(version: str) -> tuple[int, int, int, bool] | None:
    match = re.fullmatch(
        r"v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?", version.strip()
    )
    if match is None:
        return None
    # A pre-release sorts before its release: the 4th element is True for a full release.
    return int(match[1]), int(match[2]), int(match[3]), match[4] is None


def origin_version_at_least(annotations: Mapping[str, str], minimum: tuple[int, int, int]) -> bool:
    """True when the origin-version annotation is a valid semver >= `minimum` (else False)."""
    parsed = _semver(annotations.get(constants.ANNOTATION_ORIGIN_VERSION, ""))
    return parsed is not None and parsed >= (*minimum, True)


def use_mp_executor(annotations: Mapping[str, str]) -> bool:
    """mp vs Ray for a multinode TP/PP engine (override annotation, then origin version)."""
    override = annotations.get(constants.ANNOTATION_VLLM_EXECUTOR)
    if override is not None:
        if override.lower() == "mp":
            return True
        if override.lower() == "ray":
            return False
    return origin_version_at_least(annotations, (1, 0, 0))


def command_line_has(container: Mapping[str, Any], flag: str, value: str) -> bool:
    """True when command+args (split on whitespace) carry `flag value` or `flag=value`."""
    tokens = [
        t
        for part in [*(container.get("command") or []), *(container.get("args") or [])]
        for t in str(part).split()
    ]
    for index, token in enumerate(tokens):
        if token == f"{flag}={value}" or (
            token == flag and index + 1 < len(tokens) and tokens[index + 1] == value
        ):
            return True
    return False


def vllm_launch(
    container: Mapping[str, Any],
    pod_spec: Mapping[str, Any],
    *,
    role: Role,
    node_count: int,
    gpus_per_pod: int,
    annotations: Mapping[str, str],
    dgd_name: str,
    addressing: MultinodeAddressing,
    options: LaunchOptions,
) -> BackendResult:
    """vLLM launch rewrite for one role of a service (see module docs)."""
    out: Manifest = json_copy(dict(container))
    spec: Manifest = json_copy(dict(pod_spec))
    extra: list[Manifest] = []
    if node_count <= 1 or role == "main":
        return BackendResult(out, spec, extra)

    found = launch_parallelism(out, "vllm")
    mode = vllm_multinode_mode(found, gpus_per_pod)
    mp = use_mp_executor(annotations)
    timeout = None if options.dynamo_compat else options.startup_timeout_seconds

    if mode == "distributed":
        if mp:
            out = _inject_mp(out, role, node_count, addressing, options)
        else:
            out = _inject_ray(
                out, spec, role, node_count, gpus_per_pod, dgd_name, addressing, options
            )
            if not options.dynamo_compat:
                extra.append(launch_scripts_configmap(dgd_name))
                if role == "worker":
                    add_wait_for_leader_init(
                        spec,
                        name="wait-for-leader",
                        image=out.get("image"),
                        leader_host=addressing.leader_host_for_script(),
                        port=RAY_PORT,
                        dgd_name=dgd_name,
                        timeout=timeout,
                        what="the Ray head of the leader",
                    )
    elif mode == "data-parallel":
        out = _inject_data_parallel(out, role, gpus_per_pod, found, addressing, options)
        if not options.dynamo_compat and role == "worker":
            extra.append(launch_scripts_configmap(dgd_name))
            add_wait_for_leader_init(
                spec,
                name="wait-for-leader",
                image=out.get("image"),
                leader_host=addressing.leader_host_for_script(),
                port=VLLM_DP_RPC_PORT,
                dgd_name=dgd_name,
                timeout=timeout,
                what="the data-parallel RPC port of the leader",
            )

    if mp:
        append_env(
            out,
            {
                "name": "VLLM_NIXL_SIDE_CHANNEL_HOST",
                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
            },
        )
    if role == "worker":
        remove_probes(out, *ALL_PROBES)
        if command_line_has(out, EXECUTOR_FLAG, "mp"):
            extra.append(launch_scripts_configmap(dgd_name))
            add_wait_for_leader_init(
                spec,
                name="wait-for-leader-mp",
                image=out.get("image"),
                leader_host=addressing.leader_host_for_script(),
                port=VLLM_MP_MASTER_PORT,
                dgd_name=dgd_name,
                timeout=timeout,
                what="the vLLM master port of the leader",
            )
    return BackendResult(out, spec, _unique(extra))


def _unique(objects: list[Manifest]) -> list[Manifest]:
    seen: set[tuple[str, str]] = set()
    result = []
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if key not in seen:
            seen.add(key)
            result.append(obj)
    return result


def _inject_mp(
    container: Manifest,
    role: Role,
    node_count: int,
    addressing: MultinodeAddressing,
    options: LaunchOptions,
) -> Manifest:
    flags = (
        f"{EXECUTOR_FLAG} mp --nnodes {node_count} --master-addr {addressing.leader_host()} "
        f"--master-port {VLLM_MP_MASTER_PORT}"
    )
    needs_shell = False
    if role == "leader":
        flags += " --node-rank 0"
    else:
        flags += f" --node-rank {addressing.worker_rank()} --headless"
        needs_shell = addressing.worker_rank_needs_shell()
    return inject_flags_into_container_command(
        container,
        flags,
        needs_shell=needs_shell,
        framework="vllm",
        args_only_exec_form=not options.dynamo_compat,
    )


def _inject_data_parallel(
    container: Manifest,
    role: Role,
    gpus_per_pod: int,
    found: Parallelism,
    addressing: MultinodeAddressing,
    options: LaunchOptions,
) -> Manifest:
    local = gpus_per_pod // found.world
    # The engine already reads the total `--data-parallel-size` from its own flags (the mode
    # is only data-parallel when that size exceeds one pod); only the per-pod split is added.
    parts = ["--data-parallel-hybrid-lb", f"--data-parallel-size-local {local}"]
    if role == "leader":
        parts.append("--data-parallel-start-rank 0")
        needs_shell = False
    else:
        parts.append(
            f"--data-parallel-start-rank $(( {local} * {addressing.rank_arithmetic_operand()} ))"
        )
        needs_shell = True
    parts.append(f"--data-parallel-address {addressing.leader_host()}")
    parts.append(f"--data-parallel-rpc-port {VLLM_DP_RPC_PORT}")
    return inject_flags_into_container_command(
        container,
        " ".join(parts),
        needs_shell=needs_shell,
        framework="vllm",
        args_only_exec_form=not options.dynamo_compat,
    )


def _ray_wait_command(node_count: int, gpus_per_pod: int, timeout: int) -> str:
    return (
        f"python3 {LAUNCH_SCRIPTS_MOUNT_PATH}/{RAY_WAIT_KEY} --nodes {node_count} "
        f"--gpus-per-node {gpus_per_pod} --timeout {timeout}"
    )


def _inject_ray(
    container: Manifest,
    pod_spec: Manifest,
    role: Role,
    node_count: int,
    gpus_per_pod: int,
    dgd_name: str,
    addressing: MultinodeAddressing,
    options: LaunchOptions,
) -> Manifest:
    command: list[str] = list(container.get("command") or [])
    args: list[str] = list(container.get("args") or [])
    if role == "worker":
        # The worker only lends its GPUs: vLLM on the leader places actors here.
        container["command"] = ["/bin/sh", "-c"]
        container["args"] = [
            render("ray_worker.sh.j2", leader_host=addressing.leader_host(), port=RAY_PORT)
        ]
        return container

    wait_command = None
    if not options.dynamo_compat:
        wait_command = _ray_wait_command(node_count, gpus_per_pod, options.startup_timeout_seconds)
        add_launch_scripts_volume(pod_spec, dgd_name)
        mount_launch_scripts(container)

    flag = f"{EXECUTOR_FLAG} ray"
    shell_form = shell_script_index(command, args)
    if shell_form is not None:
        # Dynamo would quote `sh -c <script>` into the line and append the flag after it,
        # which hands the flag to sh as $0; we patch the script itself instead.
        shell_prefix, index = shell_form
        script = insert_after_framework_token(args[index], flag, "vllm") or args[index]
        container["command"] = shell_prefix
        container["args"] = [
            render(
                "ray_leader.sh.j2",
                port=RAY_PORT,
                wait_command=wait_command,
                engine=script,
                shell_script=True,
            )
        ]
        return container

    if options.dynamo_compat:
        quoted_command = " ".join(bash_c_quote(t) for t in command)
        quoted_args = " ".join(bash_c_quote(t) for t in args)
        engine = f"{quoted_command} {quoted_args} {flag}"
    else:
        engine = f"{sh_join(command + args)} {flag}"
    container["command"] = ["/bin/sh", "-c"]
    container["args"] = [
        render(
            "ray_leader.sh.j2",
            port=RAY_PORT,
            wait_command=wait_command,
            engine=engine,
            shell_script=False,
        )
    ]
    return container
