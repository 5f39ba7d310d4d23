"""`dgd validate FILE...`: check DynamoGraphDeployments offline, one line per problem.

Exit status 0 when every DGD is valid (warnings go to stderr), 1 when any DGD is invalid or a
file cannot be read. Other Kubernetes objects in the same files are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

HELP = "check DynamoGraphDeployment YAML offline, one line per problem"
DESCRIPTION = """\
Check DynamoGraphDeployment files (nvidia.com/v1alpha1 or nvidia.com/v1beta1, mixed freely)
as the API server and the operator would at create time: types, enums, quantities, names,
and Dynamo's admission rules. Files may hold several YAML documents; other kinds are
skipped. `-` reads standard input.

Each problem is printed as `FILE: DGD: FIELD-PATH: message`, the path in the version the
document is written in. Warnings (unknown fields the API server would prune, deprecated
fields, fields dgd accepts but does not act on, and what the placement fields such as
priorityClassName or topologyConstraint.packDomain do) go to stderr and do not fail the check.
"""


def register(subparsers: Any) -> None:
    """Add the `validate` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "validate",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML file(s), or - for stdin")
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text (default) or json for machines",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also name the documents that were skipped"
    )
    parser.set_defaults(func=run)


@dataclass
class ObjectReport:
    """Problems of one DGD document."""

    file: str
    document: int
    name: str
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    services: int = 0
    unit: str = "service"


@dataclass
class FileReport:
    """What one file held: DGD reports, skipped documents, or a reason it could not be read."""

    file: str
    objects: list[ObjectReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


def run(args: argparse.Namespace) -> int:
    """Validate every file; print problems; return 0 when all DGDs are valid."""
    reports = [check_file(name, sys.stdin) for name in args.files]
    if args.output == "json":
        print(json.dumps(_as_json(reports), indent=2))
    else:
        _print_text(reports, verbose=args.verbose, quiet=args.quiet)
    failed = any(r.error or any(o.errors for o in r.objects) for r in reports)
    return 1 if failed else 0


def check_file(name: str, stdin: TextIO) -> FileReport:
    """Read, parse and validate one file (`-` is `stdin`); never raises for bad input."""
    import yaml

    from dgd_operator.api.constants import GROUP_VERSION_V1BETA1
    from dgd_operator.api.validation import is_dgd, validate_dgd
    from dgd_operator.builders.placement import placement_warnings

    report = FileReport(file=name)
    try:
        if name == "-":
            report.file = "<stdin>"
            text = stdin.read()
        else:
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
    except FileNotFoundError:
        report.error = "no such file"
        return report
    except IsADirectoryError:
        report.error = "is a directory (give the YAML files inside it)"
        return report
    except (OSError, UnicodeDecodeError) as exc:
        report.error = f"cannot read: {getattr(exc, 'strerror', None) or exc}"
        return report

    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
        documents = list(yaml.load_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        report.error = "not valid YAML: " + _yaml_error(exc)
        return report

    for index, doc in enumerate(documents, start=1):
        if doc is None:
            continue
        if not is_dgd(doc):
            report.skipped.append(_describe_document(doc, index))
            continue
        metadata = doc.get("metadata")
        dgd_name = metadata.get("name") if isinstance(metadata, dict) else None
        label = dgd_name if isinstance(dgd_name, str) and dgd_name else f"document {index}"
        result = validate_dgd(doc)
        if result.dgd is not None:
            # What the placement fields do (defaults of the operator's domain-to-label map).
            hub = result.hub if result.api_version == GROUP_VERSION_V1BETA1 else None
            result.warnings.extend(placement_warnings(result.dgd, hub))
        spec = doc.get("spec")
        beta = result.api_version == GROUP_VERSION_V1BETA1
        members = spec.get("components" if beta else "services") if isinstance(spec, dict) else None
        report.objects.append(
            ObjectReport(
                file=report.file,
                document=index,
                name=label,
                errors=[(p.path, p.message) for p in result.errors],
                warnings=[(p.path, p.message) for p in result.warnings],
                services=len(members) if isinstance(members, dict | list) else 0,
                unit="component" if beta else "service",
            )
        )
    if not report.objects:
        if report.skipped:
            report.error = (
                "no DynamoGraphDeployment found (holds " + ", ".join(report.skipped) + ")"
            )
        else:
            report.error = "no DynamoGraphDeployment found (the file is empty)"
    return report


def _yaml_error(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


def _describe_document(doc: object, index: int) -> str:
    if isinstance(doc, dict):
        kind = doc.get("kind") or "object without kind"
        metadata = doc.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        return f"{kind}/{name}" if name else str(kind)
    return f"document {index} (a {'list' if isinstance(doc, list) else 'scalar'}, not a Kubernetes object)"


def _one_line(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


def _print_text(reports: list[FileReport], *, verbose: bool, quiet: bool) -> None:
    for report in reports:
        if verbose:
            for skipped in report.skipped:
                print(f"{report.file}: skipped {skipped}", file=sys.stderr)
        if report.error:
            print(f"{report.file}: {report.error}", file=sys.stderr)
            continue
        for obj in report.objects:
            prefix = f"{obj.file}: {obj.name}"
            for path, message in obj.warnings:
                print(f"warning: {prefix}: {_one_line(path, message)}", file=sys.stderr)
            for path, message in obj.errors:
                print(f"{prefix}: {_one_line(path, message)}")
            if not obj.errors and not quiet:
                plural = "" if obj.services == 1 else "s"
                print(f"{prefix}: valid ({obj.services} {obj.unit}{plural})")


def _as_json(reports: list[FileReport]) -> dict[str, Any]:
    def problems(items: list[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"path": path, "message": message} for path, message in items]

    return {
        "valid": not any(r.error or any(o.errors for o in r.objects) for r in reports),
        "files": [
            {
                "file": r.file,
                "error": r.error,
                "skipped": r.skipped,
                "objects": [
                    {
                        "kind": "DynamoGraphDeployment",
                        "name": o.name,
                        "document": o.document,
                        "valid": not o.errors,
                        "errors": problems(o.errors),
                        "warnings": problems(o.warnings),
                    }
                    for o in r.objects
                ],
            }
            for r in reports
        ],
    }
