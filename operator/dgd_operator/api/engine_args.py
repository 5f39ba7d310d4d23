"""What an engine invocation says: which engine, how many GPUs per pod, which parallelism.

One parser, read by topology admission (`api.validation.topology`) and by the multinode launch
rules (`builders.backends`), so that admission and injection can never disagree about what a
command line means; `dgd serve` reads its options with `option_value`.

Spellings follow what each engine's own argument parser accepts:

* vLLM (`vllm serve`, `python -m vllm.entrypoints...`, `python -m dynamo.vllm`): argparse with
  short aliases (`-tp`, `-pp`, `-dp`, `-dpl`, `-ep`), `--flag value` and `--flag=value`, and
  underscores in long options are read as dashes (`--tensor_parallel_size 8`).
* SGLang (`python -m sglang.launch_server`, `python -m dynamo.sglang`): argparse with two
  names per size (`--tensor-parallel-size`/`--tp-size`, ...) and the unique prefixes its docs
  use (`--tp 2`, `--dp 2`); no underscore spelling.
* TensorRT-LLM: `python -m dynamo.trtllm` takes `--tensor-parallel-size`/
  `--pipeline-parallel-size`/`--expert-parallel-size`; `trtllm-serve` takes `--tp_size`,
  `--pp_size`, `--ep_size`. TP/PP usually come from the engine YAML (`--extra-engine-args`).

Command lines are read from exec-form command/args and from inside `sh -c`/`bash -c` scripts
(multi-line, `\\` continuations, `&&`/`|`/`;` chains: only the engine's own invocation is read).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dgd_operator.api import constants
from dgd_operator.api.models import Resources

Backend = Literal["vllm", "sglang", "trtllm", "noop"]
"""Engine framework of a service; `noop` means no launch rewrite at all."""

FRAMEWORKS: tuple[Backend, ...] = ("vllm", "sglang", "trtllm")

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh"})


class BackendError(ValueError):
    """The service's engine cannot be determined (e.g. backend framework mismatch)."""


# --- which engine ----------------------------------------------------------------------------

_BY_NAME: dict[str, Backend] = {framework: framework for framework in FRAMEWORKS}
_DETECTORS = {
    framework: re.compile(r"python[0-9.]*\s+[^|&;]*-m\s+[^|&;]*dynamo\." + framework + r"[^|&;]*")
    for framework in FRAMEWORKS
}


def detect_frameworks(command: Sequence[str], args: Sequence[str]) -> list[Backend]:
    """Frameworks whose `python -m dynamo.<fw>` invocation appears in command + args."""
    line = " ".join([*command, *args])
    return [fw for fw in FRAMEWORKS if _DETECTORS[fw].search(line)]


def resolve_backend(
    component_type: str | None,
    main_container: Mapping[str, Any] | None,
    explicit: str | None,
) -> Backend:
    """Backend of a service: detected > `spec.backendFramework` > `noop` (Dynamo's rule).

    Non-worker components (anything but worker/prefill/decode) are always `noop`. Raises
    `BackendError` when detection and `backendFramework` disagree ("backend framework
    mismatch"), or when several frameworks are detected and no `backendFramework` decides.
    """
    if component_type not in constants.WORKER_COMPONENT_TYPES:
        return "noop"
    container = main_container or {}
    command = [str(t) for t in container.get("command") or []]
    args = [str(t) for t in container.get("args") or []]
    detected = detect_frameworks(command, args) if (command or args) else []
    if len(detected) == 1:
        if explicit and explicit != detected[0]:
            raise BackendError(
                f"backend framework mismatch: detected {detected[0]!r} from the command but "
                f"spec.backendFramework is {explicit!r}"
            )
        return detected[0]
    declared = _BY_NAME.get(explicit or "")
    if declared is not None:
        return declared
    if len(detected) > 1:
        raise BackendError(
            f"could not determine backend framework: multiple frameworks detected from the "
            f"command ({', '.join(detected)}); set spec.backendFramework"
        )
    return "noop"


# --- how many GPUs ---------------------------------------------------------------------------


def _int_or_zero(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def gpus_per_pod(resources: Resources | None, backend: Backend) -> int:
    """GPUs per pod as the launch rules count them, from a service's `resources`.

    TensorRT-LLM: `requests.gpu`, else `limits.gpu` (Dynamo). Others: `limits.gpu`, else
    `requests.gpu` (Dynamo reads only limits; requests-only services are counted too).
    Unset or non-integer values count as 0 (no GPU arithmetic, nothing injected).
    """
    if resources is None:
        return 0
    limits = resources.limits.gpu if resources.limits is not None else None
    requests = resources.requests.gpu if resources.requests is not None else None
    first, second = (requests, limits) if backend == "trtllm" else (limits, requests)
    return _int_or_zero(first) or _int_or_zero(second)


# --- which flags -----------------------------------------------------------------------------

# Canonical parameter -> every spelling the engine's parser accepts.
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
        "tp": ("--tensor-parallel-size", "--tp_size"),
        "pp": ("--pipeline-parallel-size", "--pp_size"),
        "ep": ("--expert-parallel-size", "--ep_size"),
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
    "trtllm": (
        "--extra-engine-args",
        "--extra_llm_api_options",
        "--extra-llm-api-options",
        "--config",
    ),
}
# Engines whose parser reads `_` in a long option as `-` (vLLM's FlexibleArgumentParser).
_UNDERSCORES_AS_DASHES = frozenset({"vllm"})
_ENGINE_MARKERS: dict[str, tuple[str, ...]] = {
    "vllm": ("dynamo.vllm", "vllm.entrypoints"),
    "sglang": ("dynamo.sglang", "sglang.launch_server"),
    "trtllm": ("dynamo.trtllm", "trtllm-serve"),
}
_OPERATORS = frozenset({"&&", "||", ";", "|", "&", ";;", "|&", "(", ")"})


@dataclass(frozen=True)
class FlagValue:
    """A parallelism value and how the user spelled it (`--tp 8`); value None = not numeric."""

    value: int | None
    spelling: str


@dataclass(frozen=True)
class Parallelism:
    """Parallelism flags found in one engine invocation (last occurrence wins, as in argparse)."""

    values: Mapping[str, FlagValue]
    switches: frozenset[str]
    config_file: str | None

    def get(self, name: str, default: int = 1) -> int | None:
        """The numeric value (default when absent; None when present but not numeric)."""
        found = self.values.get(name)
        return default if found is None else found.value

    def size(self, name: str) -> int:
        """The value as the launch rules use it: 1 when absent or not a number (`$TP`)."""
        return self.get(name) or 1

    def spelling(self, name: str, canonical: str, default: int = 1) -> str:
        """The user's spelling, or `<canonical> <default>` when absent."""
        found = self.values.get(name)
        return found.spelling if found is not None else f"{canonical} {default}"

    @property
    def world(self) -> int:
        """TP x PP: the GPUs one engine (one data-parallel rank) spans."""
        return self.size("tp") * self.size("pp")


VllmMultinodeMode = Literal["distributed", "data-parallel", "none"]


def vllm_multinode_mode(found: Parallelism, gpus_per_pod: int) -> VllmMultinodeMode:
    """How vLLM runs on a multinode group (Dynamo's decision, read with this module's parser).

    `distributed`: one engine spans the nodes (TP x PP > GPUs per pod; Ray or mp);
    `data-parallel`: DP ranks are split over the pods (TP x PP x DP > GPUs per pod);
    `none`: everything fits one pod, nothing is injected. No GPUs: `none`.
    """
    if gpus_per_pod <= 0:
        return "none"
    if found.world > gpus_per_pod:
        return "distributed"
    if found.world * found.size("dp") > gpus_per_pod:
        return "data-parallel"
    return "none"


def script_commands(script: str) -> list[list[str]]:
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
    """Candidate command lines of a container: exec-form argv, or each command of a shell script."""
    command = [str(t) for t in container.get("command") or []]
    args = [str(t) for t in container.get("args") or []]
    argv = command + args
    if argv and argv[0].rsplit("/", 1)[-1] in SHELLS:
        for position, token in enumerate(argv[1:], start=1):
            if token.startswith("-") and not token.startswith("--") and "c" in token[1:]:
                if position + 1 < len(argv):
                    return script_commands(argv[position + 1])
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
            if (
                backend == "vllm"
                and token.rsplit("/", 1)[-1] == "vllm"
                and tokens[index + 1 : index + 2] == ["serve"]
            ):
                return tokens[index + 2 :]
    return None


def _normalise(flag: str, backend: str) -> str:
    if backend in _UNDERSCORES_AS_DASHES and flag.startswith("--"):
        return "--" + flag[2:].replace("_", "-")
    return flag


def parse_parallelism(tokens: Sequence[str], backend: str) -> Parallelism:
    """Parallelism flags in an engine argv, in every spelling `backend` accepts."""
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
        flag = _normalise(name, backend)
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
        values[spellings[flag]] = FlagValue(int(raw) if raw.isdigit() else None, spelled)
    return Parallelism(values, frozenset(found_switches), config_file)


def option_value(tokens: Sequence[str], backend: str, *flags: str) -> str | None:
    """The value of any of `flags` (`--flag v` or `--flag=v`, last one wins), else None.

    For the options `dgd serve` reads besides parallelism (`--model`, `--served-model-name`,
    `--disaggregation-mode`, ...), with the same spelling rules as the parallelism flags.
    """
    wanted = {_normalise(flag, backend) for flag in flags}
    found: str | None = None
    for index, token in enumerate(tokens):
        name, has_inline, inline = token.partition("=")
        if _normalise(name, backend) not in wanted:
            continue
        if has_inline:
            found = inline
        elif index + 1 < len(tokens):
            found = tokens[index + 1]
    return found


def container_parallelism(container: Mapping[str, Any], backend: str) -> Parallelism | None:
    """Parallelism of the engine invocation in a container; None when none is seen."""
    tokens = engine_argv(container, backend)
    return None if tokens is None else parse_parallelism(tokens, backend)


def launch_parallelism(container: Mapping[str, Any], backend: str) -> Parallelism:
    """Parallelism as the launch rules read it: the engine's invocation, else every token.

    A container whose engine entry point is hidden (a wrapper script taking the engine's
    flags) is read as one command line, so its flags still count.
    """
    found = container_parallelism(container, backend)
    if found is not None:
        return found
    tokens = [token for line in command_lines(container) for token in line]
    return parse_parallelism(tokens, backend)
