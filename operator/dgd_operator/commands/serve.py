"""`dgd serve FILE`: run a DynamoGraphDeployment locally with the mock engine (no cluster).

This side reads and validates the DGD (the API's own validation) and turns it into the
runtime's plain :class:`~dgd_runtime.local.plan.LocalPlan`; the runtime's local supervisor
runs it. Like every command module this one imports only the standard library at module
level (`dgd --help` stays fast); the runtime is imported only when the command runs, so
`dgd validate`/`render` work without the runtime extra.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dgd_operator.api.models import ServiceSpec
    from dgd_runtime.local.plan import LocalPlan, WorkerRole

HELP = "run a DGD locally: nats-server, mock-engine workers and the OpenAI frontend"
DESCRIPTION = """\
Run a DynamoGraphDeployment on this machine without Kubernetes or GPUs: an embedded
nats-server, one mock-engine worker process per replica of each worker service
(componentType worker, prefill, decode; an encode worker for multimodal graphs) and the
OpenAI-compatible frontend, all bound to 127.0.0.1. A disaggregated graph really
disaggregates: prefill workers prefill, decode workers decode. Prints the URL and a
ready-to-paste curl once every process is ready and the frontend's port answers.

The graph is kept up like a kubelet keeps a pod: a process that exits is restarted after a
back-off (1s, doubling to 30s while it keeps exiting), the other replicas keep serving
meanwhile, and each exit, restart and recovery is printed. Ctrl-C stops every process.

The model directory (tokenizer + chat template, no weights) defaults to a tiny offline one
built into ~/.cache/dgd; the served model name comes from the workers' --model argument.
"""


class ServePlanError(ValueError):
    """The DGD cannot be served locally (the message is for the user)."""


def register(subparsers: Any) -> None:
    """Add the `serve` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="DGD YAML file, or - for stdin")
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="frontend HTTP port on 127.0.0.1 (default 8000; 0 = any free port)",
    )
    parser.add_argument(
        "--model-path",
        default=None,
        help="local HF-style model directory (tokenizer.json, config.json)",
    )
    parser.add_argument(
        "--router-mode",
        default=None,
        choices=("round-robin", "random", "kv"),
        help="frontend routing policy (default round-robin)",
    )
    parser.add_argument(
        "--speedup-ratio",
        type=float,
        default=1.0,
        help="mock engine speed multiplier (default 1.0 = simulated GPU timing)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read and plan the DGD, then serve it until interrupted."""
    try:
        plan = plan_from_dgd(read_dgd(args.file))
    except ServePlanError as exc:
        print(f"dgd serve: {exc}", file=sys.stderr)
        return 2
    from dgd_runtime.local.graph import run_plan

    return run_plan(
        plan,
        model_path=args.model_path,
        port=args.port,
        router_mode=args.router_mode,
        speedup_ratio=args.speedup_ratio,
    )


def read_dgd(path: str) -> dict[str, Any]:
    """The one DynamoGraphDeployment document in ``path`` (``-`` = stdin)."""
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise ServePlanError(f"cannot read {path}: {exc}") from None
    dgds = [d for d in docs if d.get("kind") == "DynamoGraphDeployment"]
    if len(dgds) != 1:
        raise ServePlanError(
            f"{path} must contain exactly one DynamoGraphDeployment (found {len(dgds)})"
        )
    return dgds[0]


def plan_from_dgd(doc: dict[str, Any]) -> LocalPlan:
    """Validate ``doc`` and list its worker components (role, replicas, literal env)."""
    from dgd_operator.api.engine_args import option_value
    from dgd_operator.api.validation import DGDValidationError, parse_dgd
    from dgd_runtime.local.plan import DEFAULT_MODEL_NAME, LocalComponent, LocalPlan

    try:
        dgd = parse_dgd(doc)
    except DGDValidationError as exc:
        lines = [f"  {p.path}: {p.message}" for p in exc.problems]
        raise ServePlanError("invalid DynamoGraphDeployment:\n" + "\n".join(lines)) from None
    name = dgd.metadata.name or "dgd"
    graph_env = _literal_env(dgd.spec.envs)
    components: list[LocalComponent] = []
    models: set[str] = set()
    for svc_name, svc in (dgd.spec.services or {}).items():
        if svc is None:
            continue
        role = _worker_role(svc)
        if role is None:
            continue
        args = _container_args(svc)
        model = option_value(
            args, "vllm", "--served-model-name", "--model", "--model-path", "--model-name"
        )
        if model:
            models.add(model)
        replicas = 1 if svc.replicas is None else svc.replicas
        if replicas > 0:
            env = {**graph_env, **_literal_env(svc.envs)}
            components.append(LocalComponent(svc_name, role, replicas, env))
    if not components:
        raise ServePlanError(
            f"DGD {name!r} has no worker services (componentType worker, prefill "
            "or decode) with replicas > 0"
        )
    return LocalPlan(
        name=name,
        namespace=re.sub(r"[^a-zA-Z0-9_-]", "-", name),
        components=tuple(components),
        model_name=sorted(models)[0] if models else DEFAULT_MODEL_NAME,
    )


_ENCODE_MARKERS = ("encode_worker", "multimodal.encoder", "--multimodal-encode-worker")
_PROCESSOR_MARKERS = ("processor.py", "multimodal.processor", "--multimodal-processor")


def _worker_role(svc: ServiceSpec) -> WorkerRole | None:
    """``worker``/``prefill``/``decode``/``encode`` for a worker service, else ``None``.

    A multimodal *processor* service is ``None``: locally the frontend does its job (media
    fetching, placeholders, routing to the encode worker).
    """
    ctype = (svc.component_type or "").lower()
    sub = (svc.sub_component_type or "").lower()
    if sub == "encode" or ctype == "encode":
        return "encode"
    if sub == "prefill" or ctype == "prefill":
        return "prefill"
    if sub == "decode" or ctype == "decode":
        return "decode"
    if ctype != "worker":
        return None
    # Older graphs mark the role only in the engine arguments.
    args = _container_args(svc)
    joined = " ".join(args)
    if any(marker in joined for marker in _ENCODE_MARKERS):
        return "encode"
    if any(marker in joined for marker in _PROCESSOR_MARKERS):
        return None
    from dgd_operator.api.engine_args import option_value

    mode = (option_value(args, "vllm", "--disaggregation-mode") or "").lower()
    if "--is-prefill-worker" in args or mode == "prefill":
        return "prefill"
    if "--is-decode-worker" in args or mode == "decode":
        return "decode"
    return "worker"


def _literal_env(envs: list[Any] | None) -> dict[str, str]:
    """The ``name: value`` entries of a corev1 EnvVar list (``valueFrom`` needs a cluster)."""
    out: dict[str, str] = {}
    for item in envs or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and "value" in item:
            out[item["name"]] = str(item["value"])
    return out


def _container_args(service: ServiceSpec) -> list[str]:
    extra = service.extra_pod_spec
    main = extra.main_container if extra is not None else None
    if not isinstance(main, dict):
        return []
    out: list[str] = []
    for key in ("command", "args"):
        value = main.get(key)
        if isinstance(value, list):
            for item in value:
                # `bash -c "python -m dynamo.vllm --model X"` style: split shell strings.
                out.extend(shlex.split(str(item)) if " " in str(item) else [str(item)])
    return out
