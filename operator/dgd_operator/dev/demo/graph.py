"""The graph the demo runs: read, validated and rendered (what `dgd render` prints)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from dgd_operator.api.validation import is_dgd, validate_dgd
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.graph import build_graph
from dgd_operator.builders.options import BuildOptions
from dgd_operator.dev.demo.options import short_path
from dgd_operator.dev.rest import JsonDict
from dgd_operator.reconcile.rollout import current_worker_hash


class DemoError(Exception):
    """The demo cannot go on; the message says why in plain words (and what to do)."""


def say(message: str = "") -> None:
    """Print one line of demo output right away."""
    print(message, flush=True)


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else shortened."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return short_path(path)


@dataclass(frozen=True)
class Graph:
    """The DGD to run: its document (namespace set) and the objects `dgd render` makes of it."""

    source: Path
    doc: JsonDict
    name: str
    namespace: str
    rendered: list[JsonDict]

    @property
    def services(self) -> list[str]:
        """Service names, as written in the spec."""
        return sorted((self.doc.get("spec") or {}).get("services") or {})


def load_graph(path: Path, namespace: str) -> Graph:
    """Read, validate and render the (single) DGD in ``path``; DemoError names bad fields."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except FileNotFoundError as exc:
        raise DemoError(
            f"{path} does not exist; run from the repository's root or pass --dgd FILE"
        ) from exc
    except OSError as exc:
        raise DemoError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise DemoError(f"{path} is not valid YAML: {exc}") from exc
    dgds = [d for d in documents if is_dgd(d)]
    if len(dgds) != 1:
        raise DemoError(
            f"{path} holds {len(dgds)} DynamoGraphDeployments; the demo runs exactly one"
        )
    doc = dict(dgds[0])
    meta = dict(doc.get("metadata") or {})
    meta["namespace"] = namespace
    doc["metadata"] = meta
    result = validate_dgd(doc)
    if result.errors or result.dgd is None:
        problems = "\n".join(f"  {p.path}: {p.message}" for p in result.errors)
        raise DemoError(f"{path} is not a valid DynamoGraphDeployment:\n{problems}")
    try:
        generation = current_worker_hash(result.dgd)
        rendered = build_graph(
            result.dgd,
            namespace,
            BuildOptions(),
            worker_hash=generation[0] if generation else None,
        )
    except BuildError as exc:
        raise DemoError(f"{path}: {exc.path}: {exc.message}") from exc
    return Graph(path, doc, str(meta.get("name")), namespace, rendered)
