"""`dgd render`: print every object the operator would create for the DGDs in some YAML files.

Each DynamoGraphDeployment document (nvidia.com/v1alpha1 or nvidia.com/v1beta1; a v1beta1
graph renders exactly as its v1alpha1 conversion) is validated and replaced by its children,
in apply order; every other document (ConfigMap, PVC, ComputeDomain, ...) is printed unchanged at its
place, so `dgd render f.yaml | kubectl apply -f -` applies the same set as the operator would.
Objects carry no ownerReferences (the DGD has no uid yet).

Multinode services (`multinode.nodeCount >= 2`) become leader/worker StatefulSet groups, with
the backend's launch arguments injected.

Only the standard library is imported at module level (see `dgd_operator.cli`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dgd_operator.builders.options import BuildOptions

TOP_LEVEL_ORDER = ("apiVersion", "kind", "metadata", "spec")

DESCRIPTION = """\
Print the Kubernetes objects the dgd operator creates for each DynamoGraphDeployment in
FILE (nvidia.com/v1alpha1 or nvidia.com/v1beta1, multi-document YAML, `-` for stdin), in
apply order. Other documents pass through unchanged. Nothing is sent to a cluster.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `render` subcommand."""
    parser = subparsers.add_parser(
        "render",
        help="print the objects the operator would create for a DGD",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML file(s); `-` reads stdin")
    parser.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace for DGDs without metadata.namespace (default: %(default)s)",
    )
    parser.add_argument(
        "--discovery-backend",
        choices=("kubernetes", "etcd"),
        default="kubernetes",
        help="operator default discovery backend (default: %(default)s)",
    )
    parser.add_argument("--nats-address", help="NATS URL injected as NATS_SERVER")
    parser.add_argument("--etcd-address", help="etcd endpoints injected as ETCD_ENDPOINTS")
    parser.add_argument(
        "--values",
        metavar="FILE",
        help="take the operator's settings from a values file of the dgd-operator Helm chart "
        "(as given to `helm install -f`); --nats-address and friends still override it",
    )
    parser.add_argument(
        "--release",
        default="dgd-operator",
        help="Helm release name, for addresses derived from it (default: %(default)s)",
    )
    parser.add_argument(
        "--release-namespace",
        default="dgd-system",
        help="namespace of the Helm release (default: %(default)s)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        default="yaml",
        help="yaml: a multi-document stream; json: one List object (default: %(default)s)",
    )
    parser.set_defaults(func=run)


@dataclass
class RenderOutcome:
    """Rendered documents plus the problems found (errors make the command fail)."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def render_text(text: str, source: str, namespace: str, options: BuildOptions) -> RenderOutcome:
    """Render one YAML stream; `source` names it in messages."""
    import yaml

    from dgd_operator.api.validation import DGDValidationError, is_dgd, parse_dgd
    from dgd_operator.builders.errors import BuildError
    from dgd_operator.builders.graph import plan_graph
    from dgd_operator.reconcile.rollout import current_worker_hash

    outcome = RenderOutcome()
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        outcome.errors.append(f"{source}: not valid YAML: {_yaml_error(exc)}")
        return outcome
    for index, doc in enumerate(documents, start=1):
        if doc is None:
            continue
        if not is_dgd(doc):
            if not isinstance(doc, dict):
                outcome.errors.append(f"{source}: document {index} is not a Kubernetes object")
                continue
            outcome.documents.append(doc)
            continue
        try:
            dgd = parse_dgd(doc)
            target = dgd.metadata.namespace or namespace
            generation = current_worker_hash(dgd)
            plan = plan_graph(
                dgd, target, options, worker_hash=generation[0] if generation else None
            )
        except DGDValidationError as exc:
            label = _doc_label(doc, index)
            problems = exc.problems or []
            outcome.errors.extend(f"{source}: {label}{_one_line(str(p))}" for p in problems)
            if not problems:
                outcome.errors.append(f"{source}: {label}{_one_line(str(exc))}")
            continue
        except BuildError as exc:
            outcome.errors.append(f"{source}: {_doc_label(doc, index)}{_one_line(str(exc))}")
            continue
        outcome.documents.extend(plan.objects)
    return outcome


_YAML11_SHORT_BOOLEANS = frozenset({"y", "Y", "n", "N"})


def dump_documents(documents: list[dict[str, Any]]) -> str:
    """A deterministic YAML stream: `---` between documents, apiVersion/kind/metadata/spec first."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        if value in _YAML11_SHORT_BOOLEANS:
            # PyYAML leaves y/n plain, but YAML 1.1 readers (kubectl) take them as booleans.
            style = '"'
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    ordered = [_ordered(doc) for doc in documents]
    return yaml.dump_all(
        ordered,
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
        allow_unicode=True,
        width=1_000_000,
    )


def render_files(paths: list[str], namespace: str, options: BuildOptions) -> RenderOutcome:
    """Render several files (or `-` for stdin) into one outcome, in order."""
    total = RenderOutcome()
    for path in paths:
        try:
            if path == "-":
                text, source = sys.stdin.read(), "<stdin>"
            else:
                with open(path, encoding="utf-8") as handle:
                    text, source = handle.read(), path
        except FileNotFoundError:
            total.errors.append(f"{path}: no such file")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            total.errors.append(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}")
            continue
        outcome = render_text(text, source, namespace, options)
        total.documents.extend(outcome.documents)
        total.errors.extend(outcome.errors)
    return total


def run(args: argparse.Namespace) -> int:
    """Render `args.files`; print YAML on stdout, problems on stderr; 1 if anything was invalid.

    Problems use `dgd validate`'s one-line form `FILE: DGD: FIELD-PATH: message`.
    """
    import dataclasses

    from dgd_operator.builders.options import BuildOptions

    options = BuildOptions(discovery_backend=args.discovery_backend)
    if args.values:
        from dgd_operator.commands.values_options import ValuesError, build_options_from_values
        from dgd_operator.settings import SettingsError

        try:
            options = build_options_from_values(
                args.values, release=args.release, namespace=args.release_namespace
            )
        except (ValuesError, SettingsError) as exc:
            print(f"dgd render: {exc}", file=sys.stderr)
            return 2
    explicit = {
        "nats_address": args.nats_address,
        "etcd_address": args.etcd_address,
        # An explicit --discovery-backend wins over the values file; its default does not.
        "discovery_backend": None if args.values and args.discovery_backend == "kubernetes"
        else args.discovery_backend,
    }  # fmt: skip
    options = dataclasses.replace(options, **{k: v for k, v in explicit.items() if v})
    outcome = render_files(list(args.files), args.namespace, options)
    if outcome.errors:
        # Print nothing on stdout: a partial stream piped into kubectl would half-apply a graph.
        for error in outcome.errors:
            print(error, file=sys.stderr)
        return 1
    if args.output == "json":
        sys.stdout.write(dump_json(outcome.documents))
    else:
        sys.stdout.write(dump_documents(outcome.documents))
    return 0


def dump_json(documents: list[dict[str, Any]]) -> str:
    """One `v1/List` holding every document (what `kubectl get -o json` prints for several
    objects; `kubectl apply -f` accepts it)."""
    import json

    items = [_ordered(doc) for doc in documents]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2) + "\n"


def _ordered(doc: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: doc[key] for key in TOP_LEVEL_ORDER if key in doc}
    ordered.update({k: v for k, v in doc.items() if k not in ordered})
    return ordered


def _doc_label(doc: dict[str, Any], index: int) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{name}: " if name else f"document {index}: "


def _yaml_error(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


def _one_line(text: str) -> str:
    return " ".join(text.split())
