"""Topology admission: do a service's parallelism flags fit its GPUs per pod x nodes?

Pure. Reads the engine's TP/PP/DP/EP flags from the main container with `api.engine_args`
(every spelling the engine accepts, exec form or inside `sh -c` scripts), then checks the GPU
arithmetic per backend:

* vLLM: TP and PP are per engine (one DP rank); DP multiplies. Single pod: TP x PP x DP (or
  x DP-local) must fit the pod. Multinode: TP x PP > GPUs per pod spans nodes (Ray/mp) and
  must fit GPUs x nodes; otherwise DP is split across pods with `GPUs // (TP x PP)` ranks per
  pod and `--data-parallel-size` must equal ranks per pod x nodes. The multinode launch reads
  the flags with the same parser (`api.engine_args`), so every spelling the engine accepts is
  also one the launch understands. `--enable-expert-parallel` uses no extra GPUs (EP = TP x DP).
* SGLang: `--tp-size` is the total over all nodes; `--dp-size` multiplies it unless
  `--enable-dp-attention` (then DP lives inside TP and TP must divide by DP); EP lives inside
  TP. TP x PP (x DP) must fit GPUs x nodes and split evenly over the nodes.
* TensorRT-LLM: TP/PP/EP usually come from the engine YAML (`--extra-engine-args`), which
  admission cannot see; CLI flags are only checked when no engine YAML is given.

Errors are layouts that cannot start; warnings are layouts that start but idle GPUs or run
independent engines. Services without a GPU count or with non-numeric values (`$TP`) are
not checked: a false rejection of a working DGD is worse than a missed check.
"""

from __future__ import annotations

from dgd_operator.api.engine_args import (
    Backend,
    BackendError,
    Parallelism,
    container_parallelism,
    gpus_per_pod,
    resolve_backend,
    vllm_multinode_mode,
)
from dgd_operator.api.models import DynamoGraphDeployment, ServiceSpec
from dgd_operator.api.validation.errors import Problem, warning

_X = " \N{MULTIPLICATION SIGN} "  # messages read like `16 x 1 = 16` with a real times sign


def _gpu_phrase(gpus: int, nodes: int) -> str:
    node_word = "node" if nodes == 1 else "nodes"
    return f"the service has {gpus} GPUs per pod{_X}{nodes} {node_word} = {gpus * nodes}"


def check_service_topology(name: str, service: ServiceSpec, backend: Backend) -> list[Problem]:
    """Check one service's parallelism flags against its GPUs per pod x nodeCount."""
    report: list[Problem] = []
    if backend == "noop":
        return report
    container = (service.extra_pod_spec.main_container if service.extra_pod_spec else None) or {}
    found = container_parallelism(container, backend)
    gpus = gpus_per_pod(service.resources, backend)
    nodes = service.node_count
    if found is None or gpus <= 0:
        return report
    if any(v.value is None or v.value < 1 for v in found.values.values()):
        return report  # `$TP` or similar: decided at run time, nothing to check here
    path = f"spec.services.{name}"
    if backend == "vllm":
        _check_vllm(report, path, found, gpus, nodes)
    elif backend == "sglang":
        _check_sglang(report, path, found, gpus, nodes)
    elif backend == "trtllm":
        _check_trtllm(report, path, found, gpus, nodes)
    return report


def _check_vllm(
    report: list[Problem], path: str, found: Parallelism, gpus: int, nodes: int
) -> None:
    tp, pp, dp = found.get("tp") or 1, found.get("pp") or 1, found.get("dp") or 1
    world = tp * pp
    tp_pp = f"{found.spelling('tp', '--tensor-parallel-size')}{_X}{found.spelling('pp', '--pipeline-parallel-size')}"
    total = gpus * nodes
    if nodes == 1:
        dp_local = found.values.get("dp_local")
        ranks, ranks_text = (
            (dp_local.value or 1, dp_local.spelling)
            if dp_local
            else (dp, found.spelling("dp", "--data-parallel-size"))
        )
        if world > gpus:
            report.append(
                Problem(path, f"{tp_pp} = {world} GPUs per engine, but {_gpu_phrase(gpus, nodes)}")
            )
        elif world * ranks > gpus:
            report.append(
                Problem(
                    path,
                    f"{tp_pp}{_X}{ranks_text} = {world * ranks} GPUs, but {_gpu_phrase(gpus, nodes)}",
                )
            )
        return

    mode = vllm_multinode_mode(found, gpus)
    if mode == "distributed":
        if world * dp > total:
            report.append(
                Problem(
                    path,
                    f"{tp_pp} = {world} GPUs per engine, but {_gpu_phrase(gpus, nodes)}"
                    + (
                        f" (and {found.spelling('dp', '--data-parallel-size')} multiplies it)"
                        if dp > 1
                        else ""
                    ),
                )
            )
        elif world * dp < total:
            report.append(
                warning(
                    path,
                    f"{tp_pp} = {world} GPUs per engine uses {world} of the {total} GPUs "
                    f"({gpus} GPUs per pod{_X}{nodes} nodes); the rest stay idle",
                )
            )
    elif mode == "data-parallel":
        local = gpus // world
        dp_text = found.spelling("dp", "--data-parallel-size")
        if dp != local * nodes:
            report.append(
                Problem(
                    path,
                    f"{dp_text} must equal the data-parallel ranks of all pods: {gpus} GPUs per pod // "
                    f"({tp_pp} = {world}) = {local} ranks per pod{_X}{nodes} nodes = {local * nodes}",
                )
            )
        elif gpus % world:
            report.append(
                warning(
                    path,
                    f"{gpus} GPUs per pod is not a multiple of {tp_pp} = {world}; {gpus - local * world} GPU(s) per pod stay idle",
                )
            )
    else:
        report.append(
            warning(
                path,
                f"{tp_pp}{_X}{found.spelling('dp', '--data-parallel-size')} = {world * dp} GPUs fits in one pod "
                f"({gpus} GPUs); no multinode flags are injected, so each of the {nodes} pods runs its own engine",
            )
        )


def _check_sglang(
    report: list[Problem], path: str, found: Parallelism, gpus: int, nodes: int
) -> None:
    tp, pp, dp, ep = (
        found.get("tp") or 1,
        found.get("pp") or 1,
        found.get("dp") or 1,
        found.get("ep") or 1,
    )
    dp_attention = "dp_attention" in found.switches
    tp_text = found.spelling("tp", "--tp-size")
    pp_text = found.spelling("pp", "--pp-size")
    dp_text = found.spelling("dp", "--dp-size")
    if dp_attention and dp > 1 and tp % dp:
        report.append(
            Problem(
                path,
                f"with --enable-dp-attention the data-parallel ranks live inside tensor parallelism: "
                f"{tp_text} must be a multiple of {dp_text}",
            )
        )
        return
    multiplies_dp = dp > 1 and not dp_attention
    need = tp * pp * (dp if multiplies_dp else 1)
    formula = f"{tp_text}{_X}{pp_text}" + (f"{_X}{dp_text}" if multiplies_dp else "")
    total = gpus * nodes
    if need > total:
        report.append(
            Problem(path, f"{formula} = {need} GPUs per engine, but {_gpu_phrase(gpus, nodes)}")
        )
        return
    if nodes > 1 and need % nodes:
        report.append(
            Problem(
                path,
                f"{formula} = {need} GPUs cannot be split evenly over {nodes} nodes ({tp_text} is the total over all nodes)",
            )
        )
        return
    if need < total and nodes > 1:
        report.append(
            warning(
                path,
                f"{formula} = {need} GPUs per engine uses {need} of the {total} GPUs ({gpus} GPUs per pod{_X}"
                f"{nodes} nodes); {tp_text} is the total over all nodes",
            )
        )
    if ep > tp:
        report.append(
            warning(
                path,
                f"{found.spelling('ep', '--ep-size')} is larger than {tp_text}; SGLang places expert parallelism inside the tensor-parallel group",
            )
        )


def _check_trtllm(
    report: list[Problem], path: str, found: Parallelism, gpus: int, nodes: int
) -> None:
    if found.config_file is not None or not ({"tp", "pp"} & set(found.values)):
        # TP/PP come from (or may be overridden by) the engine YAML, which admission cannot read.
        return
    tp, pp = found.get("tp") or 1, found.get("pp") or 1
    world = tp * pp
    formula = f"{found.spelling('tp', '--tensor-parallel-size')}{_X}{found.spelling('pp', '--pipeline-parallel-size')}"
    total = gpus * nodes
    if world > total:
        report.append(
            Problem(path, f"{formula} = {world} GPUs per engine, but {_gpu_phrase(gpus, nodes)}")
        )
    elif nodes > 1 and world != total:
        report.append(
            Problem(
                path,
                f"{formula} = {world} GPUs per engine, but mpirun starts one rank per GPU: {_gpu_phrase(gpus, nodes)}",
            )
        )


def check_topology(dgd: DynamoGraphDeployment) -> list[Problem]:
    """Check every service of a DGD: errors (cannot start) and warnings (idle GPUs, ...).

    Backend resolution errors are reported as errors too.
    """
    report: list[Problem] = []
    for name, service in dgd.spec.services.items():
        container = service.extra_pod_spec.main_container if service.extra_pod_spec else None
        try:
            backend = resolve_backend(service.component_type, container, dgd.spec.backend_framework)
        except BackendError as exc:
            report.append(Problem(f"spec.services.{name}.extraPodSpec.mainContainer", str(exc)))
            continue
        report.extend(check_service_topology(name, service, backend))
    return report
