"""Generic flag injection into a container's command line (Dynamo's `injectFlagsIntoContainerCommand`).

Three shapes of container are handled:

* exec form with a Python interpreter as `command[0]`: flags are appended to `args`, or, when a
  flag needs the shell (arithmetic such as `$((INDEX + 1))`), the whole line is rewritten into
  `sh -c "exec <quoted command> <quoted args> <flags>"`;
* shell form (`command: [sh, -c]`, script in `args`): the flags are inserted right after the
  first token naming the framework (`dynamo.vllm`), before the user's own flags, in the first
  argument that has such an invocation; pipes, `&&`, `\\` continuations are kept;
* anything else: unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dgd_operator.api.k8s import Manifest
from dgd_operator.api.tree import json_copy
from dgd_operator.builders.backends.quoting import is_python_interpreter, sh_join


def _invocation_pattern(framework: str) -> re.Pattern[str]:
    # A python invocation, then (within the same pipeline stage) the first whitespace-delimited
    # token that contains the framework name; the flags go right after that token.
    return re.compile(
        r"(python[0-9.]*\s+[^|&;]*?" + re.escape(framework) + r"[^|&;\s]*)(?=\s|$|[|&;])"
    )


def insert_after_framework_token(script: str, flags: str, framework: str) -> str | None:
    """Insert `flags` after the framework token of the first python invocation, or None."""
    pattern = _invocation_pattern(framework)
    match = pattern.search(script)
    if match is None:
        return None
    end = match.end(1)
    return f"{script[:end]} {flags}{script[end:]}"


def inject_flags_into_container_command(
    container: Mapping[str, Any],
    flags: str,
    *,
    needs_shell: bool,
    framework: str,
    args_only_exec_form: bool = True,
) -> Manifest:
    """Return a copy of `container` whose command line carries `flags` (see module docs).

    `args_only_exec_form`: also treat a container without `command` whose `args[0]` is a
    Python interpreter (image entrypoint runs `"$@"`) as exec form. Dynamo leaves such
    containers unchanged; pass False for Dynamo's behaviour.
    """
    result: Manifest = json_copy(dict(container))
    command: list[str] = list(result.get("command") or [])
    args: list[str] = list(result.get("args") or [])
    if not flags.strip():
        return result

    if command and is_python_interpreter(command[0]):
        if not needs_shell:
            result["args"] = args + flags.split()
        else:
            result["command"] = ["sh", "-c"]
            result["args"] = [f"exec {sh_join(command + args)} {flags}"]
        return result

    if args_only_exec_form and not command and args and is_python_interpreter(args[0]):
        if not needs_shell:
            result["args"] = args + flags.split()
        else:
            # Keep the image entrypoint; hand it a shell that runs the rewritten line.
            result["args"] = ["sh", "-c", f"exec {sh_join(args)} {flags}"]
        return result

    for index, arg in enumerate(args):
        patched = insert_after_framework_token(arg, flags, framework)
        if patched is not None:
            args[index] = patched
            result["args"] = args
            break
    return result
