"""SGLang multinode launch: `--dist-init-addr <leader>:29500 --nnodes N --node-rank R`.

Multinode only; flags are injected with the generic injector (framework `sglang`), with no
de-duplication and no change to `--tp`/`--dp` (SGLang's `--tp-size` is the total over all
nodes; `dgd_operator.api.validation.topology` checks it against GPUs x nodes). Workers lose all
probes. Startup ordering (ours): workers wait in an init container until the leader's
dist-init port accepts TCP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dgd_operator.api.k8s import Manifest
from dgd_operator.api.tree import json_copy
from dgd_operator.builders.backends.addressing import MultinodeAddressing
from dgd_operator.builders.backends.inject import inject_flags_into_container_command
from dgd_operator.builders.backends.pod_edits import (
    add_wait_for_leader_init,
    launch_scripts_configmap,
    remove_probes,
)
from dgd_operator.builders.backends.types import (
    SGLANG_DIST_INIT_PORT,
    BackendResult,
    LaunchOptions,
    Role,
)


def sglang_launch(
    container: Mapping[str, Any],
    pod_spec: Mapping[str, Any],
    *,
    role: Role,
    node_count: int,
    dgd_name: str,
    addressing: MultinodeAddressing,
    options: LaunchOptions,
) -> BackendResult:
    """SGLang launch rewrite for one role of a service (see module docs)."""
    out: Manifest = json_copy(dict(container))
    spec: Manifest = json_copy(dict(pod_spec))
    if node_count <= 1 or role == "main":
        return BackendResult(out, spec, [])

    flags = (
        f"--dist-init-addr {addressing.leader_host()}:{SGLANG_DIST_INIT_PORT} --nnodes {node_count}"
    )
    if role == "leader":
        out = inject_flags_into_container_command(
            out,
            f"{flags} --node-rank 0",
            needs_shell=False,
            framework="sglang",
            args_only_exec_form=not options.dynamo_compat,
        )
        return BackendResult(out, spec, [])

    out = inject_flags_into_container_command(
        out,
        f"{flags} --node-rank {addressing.worker_rank()}",
        needs_shell=addressing.worker_rank_needs_shell(),
        framework="sglang",
        args_only_exec_form=not options.dynamo_compat,
    )
    remove_probes(out, "livenessProbe", "readinessProbe", "startupProbe")
    extra: list[Manifest] = []
    if not options.dynamo_compat:
        add_wait_for_leader_init(
            spec,
            name="wait-for-leader",
            image=out.get("image"),
            leader_host=addressing.leader_host_for_script(),
            port=SGLANG_DIST_INIT_PORT,
            dgd_name=dgd_name,
            timeout=options.startup_timeout_seconds,
            what="the SGLang dist-init port of the leader",
        )
        extra.append(launch_scripts_configmap(dgd_name))
    return BackendResult(out, spec, extra)
