"""`dgd convert --to v1beta1|v1alpha1 FILE...`: print DGDs and DGDSAs in the other API version.

The conversion is the operator's own (`dgd_operator.api.conversion`), the one its conversion
webhook serves, so the output is what the API server would return for that version. Only the
standard library is imported at module level (see `dgd_operator.cli`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

HELP = "print DynamoGraphDeployments in the other API version (v1alpha1 <-> v1beta1)"
DESCRIPTION = """\
Convert every DynamoGraphDeployment and DynamoGraphDeploymentScalingAdapter in FILE
(multi-document YAML, `-` for stdin) to the API version given by --to and print all
documents, in order, to standard output. Other documents, and objects already at that version,
are printed unchanged. Nothing is sent to a cluster.

What the target version cannot express is kept, as Dynamo's operator keeps it, in the
annotation nvidia.com/dgd-spec (and nvidia.com/dgd-status for a status); converting back gives
the original object. YAML comments and the original formatting are not kept.

On any error (unreadable file, invalid YAML, an object that cannot be converted) nothing is
printed, each problem is reported on stderr as FILE: document N: message, and the exit status
is 1.
"""
EPILOG = """\
examples:
  dgd convert --to v1beta1 graph.yaml > graph.v1beta1.yaml
  kubectl get dgd my-graph -o yaml | dgd convert --to v1alpha1 -
"""
VERSIONS = ("v1beta1", "v1alpha1")


def register(subparsers: Any) -> None:
    """Add the `convert` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "convert",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--to", required=True, choices=VERSIONS, help="API version to convert to")
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML file(s), or - for stdin")
    parser.set_defaults(func=run)


@dataclass
class Outcome:
    """Converted documents of all files, in order, and the problems found."""

    documents: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    """Convert the files and print the result, or the problems; returns the exit status."""
    outcome = convert_files(args.files, args.to, sys.stdin)
    if outcome.errors:
        for line in outcome.errors:
            print(line, file=sys.stderr)
        return 1
    sys.stdout.write(dump(outcome.documents))
    return 0


def convert_files(names: list[str], to_version: str, stdin: TextIO) -> Outcome:
    """Read, parse and convert several files (`-` is `stdin`); never raises for bad input."""
    import yaml

    from dgd_operator.api.conversion import ConversionError, convert

    outcome = Outcome()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
    for name in names:
        label = "<stdin>" if name == "-" else name
        try:
            text = stdin.read() if name == "-" else _read(name)
            documents = list(yaml.load_all(text, Loader=loader))
        except OSError as exc:
            outcome.errors.append(f"{label}: cannot read: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError as exc:
            outcome.errors.append(f"{label}: cannot read: {exc}")
            continue
        except yaml.YAMLError as exc:
            outcome.errors.append(f"{label}: not valid YAML: {str(exc).splitlines()[0]}")
            continue
        for index, document in enumerate(documents, start=1):
            if document is None:
                continue
            if not isinstance(document, dict):
                outcome.documents.append(document)
                continue
            try:
                outcome.documents.append(convert(document, to_version))
            except ConversionError as exc:
                outcome.errors.append(f"{label}: document {index}: {exc}")
    return outcome


def _read(name: str) -> str:
    with open(name, encoding="utf-8") as handle:
        return handle.read()


# PyYAML quotes yes/no/on/off itself but leaves y/n plain, which YAML 1.1 readers (kubectl)
# take as booleans.
_YAML11_SHORT_BOOLEANS = frozenset({"y", "Y", "n", "N"})


def dump(documents: list[Any]) -> str:
    """Multi-document YAML, keys in their order, multi-line strings as blocks, no wrapping."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else ('"' if value in _YAML11_SHORT_BOOLEANS else None)
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    if not documents:
        return ""
    return yaml.dump_all(
        documents,
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
        allow_unicode=True,
        width=1_000_000,
    )
