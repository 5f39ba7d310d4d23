"""Which container commands the executing fake kubelet can run, and as what.

Pure: a container's ``command`` + ``args`` in, the local command out (a module of our runtime
and its arguments), or None when we do not know the command (the pod is then only simulated).

Known:

* our runtime's entry points, ``python -m dgd_runtime.worker`` and ``python -m
  dgd_runtime.frontend``, run as they are;
* NVIDIA Dynamo's ``python3 -m dynamo.frontend`` -> our frontend, and ``dynamo.vllm``,
  ``dynamo.sglang``, ``dynamo.trtllm``, ``dynamo.mocker`` -> our worker with the mock engine and
  the local tiny model, served under the model name the recipe asked for (a multinode
  engine's leader only: ``--headless`` or ``--node-rank`` other than 0 is not run);
* either of them as the ``python -m`` step of an ``sh -c`` / ``bash -c`` script.

Every process binds the pod's own loopback address (``--http-host`` / ``--system-host``),
because every pod shares the host's network namespace here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from collections.abc import Mapping, Sequence

WORKER_MODULE = "dgd_runtime.worker"
FRONTEND_MODULE = "dgd_runtime.frontend"
DYNAMO_ENGINE_MODULES = ("dynamo.vllm", "dynamo.sglang", "dynamo.trtllm", "dynamo.mocker")
_SHELLS = ("sh", "bash", "dash", "ash")
_SHELL_OPERATORS = ("&&", "||", ";", "|", "&")
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")

# Dynamo worker flags our worker understands, with the name it knows them by (value follows).
_WORKER_VALUE_FLAGS = {
    "--max-model-len": "--context-length",
    "--context-length": "--context-length",
    "--block-size": "--block-size",
    "--page-size": "--block-size",
    "--max-num-seqs": "--max-num-seqs",
    "--max-num-batched-tokens": "--max-num-batched-tokens",
}
_MODEL_FLAGS = ("--model", "--model-path")
_SERVED_NAME_FLAGS = ("--served-model-name",)
_FRONTEND_VALUE_FLAGS = ("--http-port", "--router-mode", "--namespace")


@dataclasses.dataclass(frozen=True)
class LocalCommand:
    """What to run for a container: ``python -m <module> <args>``."""

    module: str
    args: tuple[str, ...]


def _python_module(tokens: Sequence[str]) -> tuple[str, list[str]] | None:
    """``python[3] -m MODULE ARGS...`` -> (MODULE, ARGS), else None."""
    if len(tokens) < 3 or not _PYTHON.match(os.path.basename(tokens[0])):
        return None
    if tokens[1] != "-m":
        return None
    return tokens[2], list(tokens[3:])


def _script_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script, split at ``&&``, ``;``, ``|`` and newlines, with
    a leading ``exec`` and ``VAR=value`` assignments removed."""
    try:
        lexer = shlex.shlex(script.replace("\n", " ; "), posix=True, punctuation_chars="&|;")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return []
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token in _SHELL_OPERATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    result = []
    for command in commands:
        while command and (command[0] == "exec" or re.match(r"^[A-Za-z_]\w*=", command[0])):
            command = command[1:]
        if command:
            result.append(command)
    return result


def find_module_invocation(
    command: Sequence[str], args: Sequence[str]
) -> tuple[str, list[str]] | None:
    """The ``python -m MODULE ARGS`` a container runs, directly or in an ``sh -c`` script."""
    full = [*command, *args]
    direct = _python_module(full)
    if direct is not None:
        return direct
    if len(full) >= 3 and os.path.basename(full[0]) in _SHELLS and "-c" in full[1:]:
        script = full[full.index("-c", 1) + 1] if full.index("-c", 1) + 1 < len(full) else ""
        for step in _script_commands(script):
            found = _python_module(step)
            if found is not None and (
                found[0] in (WORKER_MODULE, FRONTEND_MODULE, "dynamo.frontend")
                or found[0] in DYNAMO_ENGINE_MODULES
            ):
                return found
    return None


def _value_after(args: Sequence[str], flags: Sequence[str]) -> str | None:
    """The value of the last of ``flags`` in ``args`` (``--flag value`` or ``--flag=value``)."""
    found = None
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in flags:
            if eq:
                found = value
            elif i + 1 < len(args):
                found = args[i + 1]
    return found


def _pairs(args: Sequence[str]) -> list[tuple[str, str | None]]:
    """``--flag value`` / ``--flag=value`` / ``--switch`` -> (flag, value or None); a token
    after a flag is its value unless it is a flag itself."""
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" in arg:
            name, _, value = arg.partition("=")
            pairs.append((name, value))
        elif arg.startswith("-") and i + 1 < len(args) and not args[i + 1].startswith("--"):
            pairs.append((arg, args[i + 1]))
            i += 1
        else:
            pairs.append((arg, None))
        i += 1
    return pairs


def _with_host(args: list[str], flag: str, host: str) -> tuple[str, ...]:
    kept = [name for name, _ in _pairs(args)]
    if flag in kept:
        cleaned: list[str] = []
        for name, value in _pairs(args):
            if name != flag:
                cleaned += [name] if value is None else [name, value]
        args = cleaned
    return (*args, flag, host)


def _dynamo_worker_args(args: Sequence[str], model_dir: str) -> list[str]:
    model = _value_after(args, _MODEL_FLAGS)
    served = _value_after(args, _SERVED_NAME_FLAGS) or model or "dgd-tiny"
    out = ["--engine", "mock", "--model-path", model_dir, "--model-name", served]
    prefill = False
    for name, value in _pairs(args):
        if name == "--is-prefill-worker":
            prefill = True
        elif name in ("--disaggregation-mode", "--disaggregation-strategy") and value:
            prefill = prefill or value.lower() == "prefill"
        elif name in _WORKER_VALUE_FLAGS and value is not None:
            out += [_WORKER_VALUE_FLAGS[name], value]
    if prefill:
        out += ["--component", "prefill"]
    return out


def _non_leader(args: Sequence[str]) -> bool:
    """A multinode engine's non-leader node (``--headless``, or ``--node-rank`` other than 0):
    it serves nothing of its own (the leader's process does the work here), so it is left
    simulated rather than run as a second worker."""
    rank = _value_after(args, ("--node-rank",))
    return "--headless" in args or (rank is not None and rank != "0")


def translate(
    command: Sequence[str], args: Sequence[str], *, pod_ip: str, model_dir: str
) -> LocalCommand | None:
    """The local command for a container (see the module doc), or None if unknown."""
    found = find_module_invocation(command, args)
    if found is None:
        return None
    module, rest = found
    if module == WORKER_MODULE:
        return LocalCommand(WORKER_MODULE, _with_host(rest, "--system-host", pod_ip))
    if module == FRONTEND_MODULE:
        return LocalCommand(FRONTEND_MODULE, _with_host(rest, "--http-host", pod_ip))
    if module == "dynamo.frontend":
        kept: list[str] = []
        for name, value in _pairs(rest):
            if name in _FRONTEND_VALUE_FLAGS and value is not None:
                kept += [name, value]
        return LocalCommand(FRONTEND_MODULE, _with_host(kept, "--http-host", pod_ip))
    if module in DYNAMO_ENGINE_MODULES:
        if _non_leader(rest):
            return None
        worker = _dynamo_worker_args(rest, model_dir)
        return LocalCommand(WORKER_MODULE, _with_host(worker, "--system-host", pod_ip))
    return None


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in env values, command and args: known variables are
    replaced, unknown references stay as written, ``$$`` is a literal ``$``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(sub, text)
