"""Shell quoting and command-line helpers shared by the backends.

Two quoters, both double-quote based so that JSON arguments keep Dynamo's familiar look
(`"{\"kv_role\": \"kv_both\"}"`):

* `bash_c_quote` is Dynamo's token quoter, meant for a command line that will itself be put
  inside single quotes (`bash -c '...'`): a `'` becomes `'"'"'`.
* `sh_quote` is the same quoter for a command line evaluated directly by `sh -c`, where a `'`
  inside double quotes needs no escaping. (Dynamo uses `bash_c_quote` there too, which breaks
  tokens containing `'`; for every other token the two agree.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Characters that make a token need quoting (Dynamo's set).
_NEEDS_QUOTING = frozenset(" \t\n'\"\\{}[]$`!")
_PYTHON_INTERPRETER = re.compile(r"^(.*/)?(python\d*(\.\d+)*)$")


def _double_quote(token: str) -> str:
    escaped = (
        token.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    )
    return f'"{escaped}"'


def sh_quote(token: str) -> str:
    """Quote one token for a command line that `sh -c` evaluates directly."""
    if token and not any(ch in _NEEDS_QUOTING for ch in token):
        return token
    return _double_quote(token)


def bash_c_quote(token: str) -> str:
    """Dynamo's quoter: like `sh_quote`, plus `'` -> `'"'"'` for embedding in single quotes."""
    if token and not any(ch in _NEEDS_QUOTING for ch in token):
        return token
    return _double_quote(token).replace("'", "'\"'\"'")


def sh_join(tokens: Iterable[str]) -> str:
    """Join tokens into one `sh -c` command line, quoting each with `sh_quote`."""
    return " ".join(sh_quote(t) for t in tokens)


def single_quote_embed(command_line: str) -> str:
    """Make a command line safe inside `'...'` (every `'` becomes `'"'"'`)."""
    return command_line.replace("'", "'\"'\"'")


def is_python_interpreter(executable: str) -> bool:
    """True for `python`, `python3.11`, `/usr/bin/python3`, `./python3`; false for `python-config`."""
    return _PYTHON_INTERPRETER.match(executable) is not None


def k8s_to_shell_vars(text: str) -> str:
    """Rewrite kubelet `$(VAR)` references as shell `${VAR}` (for scripts run by a shell)."""
    return re.sub(r"\$\((\w+)\)", r"${\1}", text)
