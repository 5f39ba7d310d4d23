"""Topology admission: do a service's parallelism flags fit its GPUs per pod x nodes?

Pure. Reads the engine's TP/PP/DP/EP flags from the main container in every spelling the
engines accept (`--tensor-parallel-size 8`, `--tensor-parallel-size=8`, `--tensor_parallel_size
8`, `-tp 8`, SGLang's `--tp-size`/`--tp`, ...), from exec-form command/args and from inside
`sh -c`/`bash -c` scripts (multi-line, `\\` continuations, `&&`/`|`/`;` chains: only the
engine's own invocation is read). Then it checks the GPU arithmetic per backend:

* vLLM: TP and PP are per engine (one DP rank); DP multiplies. Single pod: TP x PP x DP (or
  x DP-local) must fit the pod. Multinode: TP x PP > GPUs per pod spans nodes (Ray/mp) and
  must fit GPUs x nodes; otherwise DP is split across pods with `GPUs // (TP x PP)` ranks per
  pod and `--data-parallel-size` must equal ranks per pod x nodes. Because the operator's
  multinode launch (Dynamo's rule) reads only spaced `--flag value` in `args`, a layout the
  engine would read differently (e.g. `-tp 16`, `--tensor-parallel-size=16`) is rejected too.
  `--enable-expert-parallel` uses no extra GPUs (EP = TP x DP).
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

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.api.models import DynamoGraphDeployment, ServiceSpec
from dgd_operator.builders.backends import Backend, BackendError, gpus_per_pod, resolve_backend
from dgd_operator.builders.backends.podspec import SHELLS
from dgd_operator.builders.backends.vllm import expanded_args, flag_value


@dataclass(frozen=True)
class TopologyProblem:
    """One finding, anchored at a field path (same shape as `api.validation.Problem`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class TopologyReport:
    """Errors (reject) and warnings (accept, tell the user) for a DGD or a service."""

    errors: list[TopologyProblem] = field(default_factory=list)
    warnings: list[TopologyProblem] = field(default_factory=list)

    def extend(self, other: TopologyReport) -> None:
        """Append another report's findings."""
        self.errors.extend(other.errors)
        self.warnings.extend(other.warnings)


# Canonical parameter -> accepted spellings, per backend (underscores are normalised to dashes
# for long options, as vLLM's parser does).
_FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "vllm": {
        "tp": ("--tensor-parallel-size", "-tp"),
        "pp": ("--pipeline-parallel-size", "-pp"),
        "dp": ("--data-parallel-size", "-dp"),
        "dp_local": ("--data-parallel-size-local", "-dpl"),
    },
    "sglang": {
        "tp": ("--tensor-parallel-size", "--tp-size", "--tp"),
        "pp": ("--pipeline-parallel-size", "--pp-size", "--pp"),
        "dp": ("--data-parallel-size", "--dp-size", "--dp"),
        "ep": ("--expert-parallel-size", "--ep-size", "--ep"),
    },
    "trtllm": {
        "tp": ("--tensor-parallel-size", "--tp-size", "--tp"),
        "pp": ("--pipeline-parallel-size", "--pp-size", "--pp"),
        "ep": ("--expert-parallel-size", "--ep-size", "--ep"),
    },
}
_SWITCHES: dict[str, dict[str, tuple[str, ...]]] = {
    "vllm": {"expert_parallel": ("--enable-expert-parallel", "-ep")},
    "sglang": {"dp_attention": ("--enable-dp-attention",)},
    "trtllm": {"attention_dp": ("--enable-attention-dp",)},
}
_CONFIG_FILE_FLAGS: dict[str, tuple[str, ...]] = {
    "vllm": ("--config",),
    "sglang": ("--config",),
    "trtllm": ("--extra-engine-args", "--extra-llm-api-options", "--config"),
}
_ENGINE_MARKERS: dict[str, tuple[str, ...]] = {
    "vllm": ("dynamo.vllm", "vllm.entrypoints"),
    "sglang": ("dynamo.sglang", "sglang.launch_server"),
    "trtllm": ("dynamo.trtllm", "trtllm-serve"),
}
_X = " \N{MULTIPLICATION SIGN} "  # messages read like `16 x 1 = 16` with a real times sign
_OPERATORS = frozenset({"&&", "||", ";", "|", "&", ";;", "|&", "(", ")"})


@dataclass(frozen=True)
class FlagValue:
    """A parallelism value and how the user spelled it (`--tp 8`); value None = not numeric."""

    value: int | None
    spelling: str


@dataclass(frozen=True)
class Parallelism:
    """Parallelism flags found in one engine invocation."""

    values: Mapping[str, FlagValue]
    switches: frozenset[str]
    config_file: str | None

    def get(self, name: str, default: int = 1) -> int | None:
        """The numeric value (default when absent; None when present but not numeric)."""
        found = self.values.get(name)
        return default if found is None else found.value

    def spelling(self, name: str, canonical: str, default: int = 1) -> str:
        """The user's spelling, or `<canonical> <default>` when absent."""
        found = self.values.get(name)
        return found.spelling if found is not None else f"{canonical} {default}"


def _script_segments(script: str) -> list[list[str]]:
    """Split a shell script into simple commands (token lists)."""
    joined = re.sub(r"\\\r?\n", " ", script)
    segments: list[list[str]] = []
    for line in joined.splitlines():
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            tokens = list(lexer)
        except ValueError:
            tokens = line.split()
        current: list[str] = []
        for token in tokens:
            if token in _OPERATORS:
                if current:
                    segments.append(current)
                current = []
            else:
                current.append(token)
        if current:
            segments.append(current)
    return segments


def command_lines(container: Mapping[str, Any]) -> list[list[str]]:
    """Candidate command lines of a container: exec-form argv, or each simple command of a shell script."""
    command = [str(t) for t in container.get("command") or []]
    args = [str(t) for t in container.get("args") or []]
    argv = command + args
    if argv and argv[0].rsplit("/", 1)[-1] in SHELLS:
        for position, token in enumerate(argv[1:], start=1):
            if token.startswith("-") and not token.startswith("--") and "c" in token[1:]:
                if position + 1 < len(argv):
                    return _script_segments(argv[position + 1])
                return []
    lines = [argv]
    # An exec-form arg holding several words (`args: ["--tp 8 --model m"]`) is read both ways.
    if any(" " in a for a in args):
        lines.append([t for a in argv for t in a.split()])
    return lines


def engine_argv(container: Mapping[str, Any], backend: str) -> list[str] | None:
    """The tokens after the engine's module/entry point, or None when no invocation is seen."""
    markers = _ENGINE_MARKERS.get(backend, ())
    for tokens in command_lines(container):
        for index, token in enumerate(tokens):
            if any(marker in token for marker in markers):
                return tokens[index + 1 :]
            if backend == "vllm" and token.rsplit("/", 1)[-1] == "vllm" and tokens[index + 1 : index + 2] == ["serve"]:
                return tokens[index + 2 :]
    return None


def _normalise(flag: str) -> str:
    return "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag


def parse_parallelism(tokens: Sequence[str], backend: str) -> Parallelism:
    """Parallelism flags in an engine argv (`--flag v`, `--flag=v`, underscores, short forms)."""
    spellings = {s: name for name, options in _FLAGS.get(backend, {}).items() for s in options}
    switches = {s: name for name, options in _SWITCHES.get(backend, {}).items() for s in options}
    config_flags = set(_CONFIG_FILE_FLAGS.get(backend, ()))
    values: dict[str, FlagValue] = {}
    found_switches: set[str] = set()
    config_file: str | None = None
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not token.startswith("-"):
            continue
        name, has_inline, inline = token.partition("=")
        flag = _normalise(name)
        if flag in switches and not has_inline:
            found_switches.add(switches[flag])
            continue
        if flag not in spellings and flag not in config_flags:
            continue
        if has_inline:
            raw, spelled = inline, token
        elif index < len(tokens):
            raw, spelled = tokens[index], f"{token} {tokens[index]}"
            index += 1
        else:
            continue
        if flag in config_flags:
            config_file = raw
            continue
        # Last occurrence wins, as with argparse.
        values[spellings[flag]] = FlagValue(int(raw) if raw.isdigit() else None, spelled)
    return Parallelism(values, frozenset(found_switches), config_file)


def _gpu_phrase(gpus: int, nodes: int) -> str:
    node_word = "node" if nodes == 1 else "nodes"
    return f"the service has {gpus} GPUs per pod{_X}{nodes} {node_word} = {gpus * nodes}"


def _vllm_path(world: int, dp: int, gpus: int) -> str:
    if world > gpus:
        return "distributed"
    if world * dp > gpus:
        return "data-parallel"
    return "none"


def check_service_topology(name: str, service: ServiceSpec, backend: Backend) -> TopologyReport:
    """Check one service's parallelism flags against its GPUs per pod x nodeCount."""
    report = TopologyReport()
    if backend == "noop":
        return report
    container = (service.extra_pod_spec.main_container if service.extra_pod_spec else None) or {}
    tokens = engine_argv(container, backend)
    gpus = gpus_per_pod(service.resources, backend)
    nodes = service.node_count
    if tokens is None or gpus <= 0:
        return report
    found = parse_parallelism(tokens, backend)
    if any(v.value is None or v.value < 1 for v in found.values.values()):
        return report  # `$TP` or similar: decided at run time, nothing to check here
    path = f"spec.services.{name}"
    if backend == "vllm":
        _check_vllm(report, path, found, container, gpus, nodes)
    elif backend == "sglang":
        _check_sglang(report, path, found, gpus, nodes)
    elif backend == "trtllm":
        _check_trtllm(report, path, found, gpus, nodes)
    return report


def _check_vllm(
    report: TopologyReport, path: str, found: Parallelism, container: Mapping[str, Any], gpus: int, nodes: int
) -> None:
    tp, pp, dp = found.get("tp") or 1, found.get("pp") or 1, found.get("dp") or 1
    world = tp * pp
    tp_pp = f"{found.spelling('tp', '--tensor-parallel-size')}{_X}{found.spelling('pp', '--pipeline-parallel-size')}"
    total = gpus * nodes
    if nodes == 1:
        dp_local = found.values.get("dp_local")
        ranks, ranks_text = (dp_local.value or 1, dp_local.spelling) if dp_local else (dp, found.spelling("dp", "--data-parallel-size"))
        if world > gpus:
            report.errors.append(TopologyProblem(path, f"{tp_pp} = {world} GPUs per engine, but {_gpu_phrase(gpus, nodes)}"))
        elif world * ranks > gpus:
            report.errors.append(TopologyProblem(
                path, f"{tp_pp}{_X}{ranks_text} = {world * ranks} GPUs, but {_gpu_phrase(gpus, nodes)}"))
        return

    # What the operator's multinode launch will do (Dynamo's parser) vs what the engine reads.
    launcher_tokens = expanded_args(container)
    l_world = flag_value(launcher_tokens, "--tensor-parallel-size") * flag_value(launcher_tokens, "--pipeline-parallel-size")
    l_dp = flag_value(launcher_tokens, "--data-parallel-size")
    engine_path, launcher_path = _vllm_path(world, dp, gpus), _vllm_path(l_world, l_dp, gpus)
    if engine_path != launcher_path:
        spelled = ", ".join(v.spelling for v in found.values.values())
        report.errors.append(TopologyProblem(
            path,
            f"the multinode launch reads only `--tensor-parallel-size N`, `--pipeline-parallel-size N` and "
            f"`--data-parallel-size N` written as two separate words in `args`; it does not see the engine's "
            f"{spelled} and would start the {nodes} pods as a '{launcher_path}' launch instead of "
            f"'{engine_path}'. Spell the flags that way in `args`",
        ))
        return

    if engine_path == "distributed":
        if world * dp > total:
            report.errors.append(TopologyProblem(
                path, f"{tp_pp} = {world} GPUs per engine, but {_gpu_phrase(gpus, nodes)}"
                + (f" (and {found.spelling('dp', '--data-parallel-size')} multiplies it)" if dp > 1 else "")))
        elif world * dp < total:
            report.warnings.append(TopologyProblem(
                path, f"{tp_pp} = {world} GPUs per engine uses {world} of the {total} GPUs "
                f"({gpus} GPUs per pod{_X}{nodes} nodes); the rest stay idle"))
    elif engine_path == "data-parallel":
        local = gpus // world
        dp_text = found.spelling("dp", "--data-parallel-size")
        if dp != local * nodes:
            report.errors.append(TopologyProblem(
                path, f"{dp_text} must equal the data-parallel ranks of all pods: {gpus} GPUs per pod // "
                f"({tp_pp} = {world}) = {local} ranks per pod{_X}{nodes} nodes = {local * nodes}"))
        elif gpus % world:
            report.warnings.append(TopologyProblem(
                path, f"{gpus} GPUs per pod is not a multiple of {tp_pp} = {world}; {gpus - local * world} GPU(s) per pod stay idle"))
    else:
        report.warnings.append(TopologyProblem(
            path, f"{tp_pp}{_X}{found.spelling('dp', '--data-parallel-size')} = {world * dp} GPUs fits in one pod "
            f"({gpus} GPUs); no multinode flags are injected, so each of the {nodes} pods runs its own engine"))


def _check_sglang(report: TopologyReport, path: str, found: Parallelism, gpus: int, nodes: int) -> None:
    tp, pp, dp, ep = found.get("tp") or 1, found.get("pp") or 1, found.get("dp") or 1, found.get("ep") or 1
    dp_attention = "dp_attention" in found.switches
    tp_text = found.spelling("tp", "--tp-size")
    pp_text = found.spelling("pp", "--pp-size")
    dp_text = found.spelling("dp", "--dp-size")
    if dp_attention and dp > 1 and tp % dp:
        report.errors.append(TopologyProblem(
            path, f"with --enable-dp-attention the data-parallel ranks live inside tensor parallelism: "
            f"{tp_text} must be a multiple of {dp_text}"))
        return
    multiplies_dp = dp > 1 and not dp_attention
    need = tp * pp * (dp if multiplies_dp else 1)
    formula = f"{tp_text}{_X}{pp_text}" + (f"{_X}{dp_text}" if multiplies_dp else "")
    total = gpus * nodes
    if need > total:
        report.errors.append(TopologyProblem(path, f"{formula} = {need} GPUs per engine, but {_gpu_phrase(gpus, nodes)}"))
        return
    if nodes > 1 and need % nodes:
        report.errors.append(TopologyProblem(
            path, f"{formula} = {need} GPUs cannot be split evenly over {nodes} nodes ({tp_text} is the total over all nodes)"))
        return
    if need < total and nodes > 1:
        report.warnings.append(TopologyProblem(
            path, f"{formula} = {need} GPUs per engine uses {need} of the {total} GPUs ({gpus} GPUs per pod{_X}"
            f"{nodes} nodes); {tp_text} is the total over all nodes"))
    if ep > tp:
        report.warnings.append(TopologyProblem(
            path, f"{found.spelling('ep', '--ep-size')} is larger than {tp_text}; SGLang places expert parallelism inside the tensor-parallel group"))


def _check_trtllm(report: TopologyReport, path: str, found: Parallelism, gpus: int, nodes: int) -> None:
    if found.config_file is not None or not ({"tp", "pp"} & set(found.values)):
        # TP/PP come from (or may be overridden by) the engine YAML, which admission cannot read.
        return
    tp, pp = found.get("tp") or 1, found.get("pp") or 1
    world = tp * pp
    formula = f"{found.spelling('tp', '--tensor-parallel-size')}{_X}{found.spelling('pp', '--pipeline-parallel-size')}"
    total = gpus * nodes
    if world > total:
        report.errors.append(TopologyProblem(path, f"{formula} = {world} GPUs per engine, but {_gpu_phrase(gpus, nodes)}"))
    elif nodes > 1 and world != total:
        report.errors.append(TopologyProblem(
            path, f"{formula} = {world} GPUs per engine, but mpirun starts one rank per GPU: {_gpu_phrase(gpus, nodes)}"))


def check_topology(dgd: DynamoGraphDeployment) -> TopologyReport:
    """Check every service of a DGD; backend resolution errors are reported as errors too."""
    report = TopologyReport()
    for name, service in dgd.spec.services.items():
        container = service.extra_pod_spec.main_container if service.extra_pod_spec else None
        try:
            backend = resolve_backend(service.component_type, container, dgd.spec.backend_framework)
        except BackendError as exc:
            report.errors.append(TopologyProblem(f"spec.services.{name}.extraPodSpec.mainContainer", str(exc)))
            continue
        report.extend(check_service_topology(name, service, backend))
    return report
