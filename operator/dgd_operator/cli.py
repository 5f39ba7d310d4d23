"""The `dgd` command line.

Each subcommand lives in `dgd_operator.commands.<name>` and exposes
`register(subparsers) -> None`, which adds its parser and sets `func` to a callable taking the
parsed namespace and returning an exit code. Command modules import only the standard library at
module level, so `dgd --help` stays fast and never pulls in kopf or the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order here is the order `dgd --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "validate",
    "render",
    "convert",
    "dev",
    "demo",
    "operator",
    "serve",
    "completion",
)

DESCRIPTION = """\
dgd runs disaggregated LLM inference graphs on Kubernetes.

A DynamoGraphDeployment (DGD, nvidia.com/v1alpha1) describes a graph of services: an
OpenAI frontend, prefill and decode workers (vLLM, SGLang, TensorRT-LLM), planners.
The dgd operator turns each graph into Deployments, StatefulSets and Services.
"""

EPILOG = """\
examples:
  dgd validate graph.yaml            check a DGD offline, one line per problem
  dgd render graph.yaml -n prod      print every object the operator would create
  dgd convert --to v1beta1 g.yaml    print a v1alpha1 DGD as v1beta1 (and back)
  dgd dev up                         start a local control plane with simulated GPU nodes
  dgd demo                           run a graph end to end on a local cluster, then clean up
  dgd serve graph.yaml               run the graph locally with the mock engine
  source <(dgd completion bash)      complete dgd (and `kubectl dgd`) commands in bash

Run `dgd COMMAND --help` for the options of each command.
"""


def build_parser(prog: str = "dgd") -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dgd {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"dgd_operator.commands.{name}")
        except ModuleNotFoundError as exc:
            # A command whose module is absent is simply not offered; anything else is a bug.
            if exc.name != f"dgd_operator.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def _version() -> str:
    from dgd_operator import __version__

    return __version__


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kubectl-dgd` console script: kubectl runs it for `kubectl dgd ...`
    (a plugin is any `kubectl-<name>` executable on PATH)."""
    return main(argv, prog="kubectl dgd")


def main(argv: Sequence[str] | None = None, *, prog: str = "dgd") -> int:
    """Entry point of the `dgd` console script; returns the process exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code = func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
