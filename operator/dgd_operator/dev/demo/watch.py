"""Apply the DGD and follow it until it is Ready, printing a line whenever readiness changes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.api.constants import (
    DGD_PLURAL,
    GROUP_VERSION,
    STATE_FAILED,
    STATE_SUCCESSFUL,
)
from dgd_operator.dev.demo.graph import DemoError, Graph, say
from dgd_operator.dev.demo.options import short_path
from dgd_operator.dev.operator_process import OperatorProcess
from dgd_operator.dev.rest import ApiError, JsonDict, KubeRest

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "dgd-demo"


def dgd_path(namespace: str, name: str | None = None) -> str:
    """REST path of the DGD collection, or of one DGD."""
    base = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/{DGD_PLURAL}"
    return f"{base}/{name}" if name else base


def apply_dgd(rest: KubeRest, graph: Graph) -> JsonDict:
    """Server-side apply the DGD (like `kubectl apply --server-side`)."""
    return rest.patch(
        dgd_path(graph.namespace, graph.name),
        graph.doc,
        content_type=APPLY_PATCH,
        fieldManager=FIELD_MANAGER,
        force=True,
    )


def ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """The DGD's `Ready` condition (empty when none yet)."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


def services_ready(status: Mapping[str, Any], services: Sequence[str]) -> list[str]:
    """Names of the services whose replicas are all ready, per `status.services`."""
    per_service = status.get("services") or {}
    ready = []
    for svc in services:
        entry = per_service.get(svc) or {}
        want = len(entry.get("componentNames") or []) and entry.get("replicas", 0)
        if entry and entry.get("readyReplicas", 0) >= max(int(want or 0), 1):
            ready.append(svc)
    return ready


@dataclass
class Progress:
    """What the last progress line said, to print only changes."""

    last: tuple[Any, ...] | None = None
    lines: list[str] = field(default_factory=list)


def progress_line(
    obj: Mapping[str, Any], graph: Graph, elapsed: float
) -> tuple[tuple[Any, ...], str]:
    """(change key, text) for the DGD's current state."""
    status = obj.get("status") or {}
    state = status.get("state") or "no status"
    ready = services_ready(status, graph.services)
    waiting = [s for s in graph.services if s not in ready]
    text = f"  {elapsed:5.1f}s  {state:<11} services ready {len(ready)}/{len(graph.services)}"
    if waiting and status:
        text += f"  (waiting for {', '.join(waiting)})"
    return (state, tuple(ready)), text


def wait_ready(
    rest: KubeRest,
    graph: Graph,
    operator: OperatorProcess,
    timeout: float,
    on_line: Callable[[str], None] = say,
) -> JsonDict:
    """Poll the DGD until it is `successful` for its generation; DemoError on failure/timeout."""
    began = time.monotonic()
    progress = Progress()
    last_obj: JsonDict = {}
    while True:
        elapsed = time.monotonic() - began
        try:
            last_obj = rest.get(dgd_path(graph.namespace, graph.name))
        except (ApiError, OSError) as exc:
            if time.monotonic() - began > timeout:
                raise DemoError(f"cannot read the DGD: {exc}") from exc
        else:
            key, text = progress_line(last_obj, graph, elapsed)
            if key != progress.last:
                progress.last = key
                on_line(text)
            status = last_obj.get("status") or {}
            generation = (last_obj.get("metadata") or {}).get("generation")
            if (
                status.get("state") == STATE_SUCCESSFUL
                and status.get("observedGeneration") == generation
            ):
                return last_obj
            if status.get("state") == STATE_FAILED:
                cond = ready_condition(status)
                raise DemoError(
                    f"the operator rejected {graph.name}: {cond.get('message') or cond.get('reason')}"
                )
        if not operator.proc.alive():
            raise DemoError(
                f"the operator exited (code {operator.proc.exit_code()}); its log:\n"
                + operator.log_tail()
            )
        if time.monotonic() - began > timeout:
            cond = ready_condition(last_obj.get("status") or {})
            detail = cond.get("message") or "the operator wrote no status"
            raise DemoError(
                f"{graph.name} did not become Ready within {timeout:g}s.\n"
                f"  last status: {detail}\n"
                f"  operator log ({short_path(operator.log)}), last lines:\n{operator.log_tail()}"
            )
        time.sleep(0.2)
