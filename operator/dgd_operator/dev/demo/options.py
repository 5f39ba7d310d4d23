"""The demo's command line, shared by `python -m dgd_operator.dev.demo` and `dgd demo`.

Standard library only: `dgd --help` imports this to list the command.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Relative to the working directory: the repository's recipe when run from a checkout (as
# `make demo` does, naming it explicitly); anywhere else pass `--dgd`.
DEFAULT_DGD = Path("recipes") / "vllm-disagg.yaml"
DEFAULT_NAMESPACE = "dgd-demo"
DESCRIPTION = (
    "Run one DynamoGraphDeployment on a local control plane with simulated GPU nodes, show "
    "what the operator made of it, and clean up."
)


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/dgd/demo`` (default ``~/.local/state/dgd/demo``)."""
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "dgd" / "demo"


def short_path(path: Path) -> str:
    """``path`` with the home directory shown as ``~``."""
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if home != "/" and text.startswith(home + os.sep) else text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to `parser`."""
    parser.add_argument(
        "--dgd",
        type=Path,
        default=DEFAULT_DGD,
        metavar="FILE",
        help="the DGD to run (default: %(default)s, from a repository checkout)",
    )
    parser.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help="namespace (default: %(default)s)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the operator and cluster running to explore"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="Ready timeout (default 120)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        metavar="DIR",
        help=f"the demo's own cluster and operator log (default: {short_path(default_state_dir())})",
    )
    parser.add_argument(
        "--own-cluster",
        action="store_true",
        help="start a demo cluster even when a `dgd dev` cluster is running",
    )
    parser.add_argument("--down", action="store_true", help="stop what `--keep` left running")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Make the paths of parsed `args` absolute (the demo prints and reuses them)."""
    args.state_dir = args.state_dir.expanduser().resolve()
    args.dgd = args.dgd.expanduser().resolve()
    return args
