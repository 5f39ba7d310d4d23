"""`dgd demo`: run one DGD end to end on a local control plane, show the result, clean up.

The options are those of `python -m dgd_operator.dev.demo` (`make demo`), defined once in
`dgd_operator.dev.demo.options` (standard library only, so `dgd --help` stays fast).
"""

from __future__ import annotations

import argparse
from typing import Any

from dgd_operator.dev.demo import options

HELP = "run a DGD on a local control plane with simulated GPU nodes, show it, clean up"
EPILOG = """\
examples:
  dgd demo                              recipes/vllm-disagg.yaml, from a repository checkout
  dgd demo --dgd graph.yaml --keep      leave the operator and cluster running to explore
  dgd demo --down                       stop what --keep left running
"""


def register(subparsers: Any) -> None:
    """Add the `demo` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help=HELP,
        description=options.DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns its exit code."""
    from dgd_operator.dev.demo.run import run as run_demo

    return run_demo(options.resolve(args))
