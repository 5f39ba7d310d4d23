"""Run the dgd operator in-process (its own thread and event loop) for integration tests.

A thread rather than a task in the test's loop: tests stay plain synchronous code using
`wait_for` and blocking REST calls without starving the operator. Not a test module.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

from dgd_operator.dev.rest import ApiError
from dgd_operator.main import run_operator
from dgd_operator.reconcile.controller import Controller
from dgd_operator.settings import OperatorSettings

DGD_API = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/dynamographdeployments"
DGDSA_API = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/dynamographdeploymentscalingadapters"


class OperatorThread:
    """The operator running in a background thread; `stop()` waits for a clean shutdown."""

    def __init__(self, settings: OperatorSettings, **controller_options: Any) -> None:
        self.settings = settings
        self.controller = Controller(settings, **controller_options)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dgd-operator", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(
                run_operator(
                    self.settings,
                    controller=self.controller,
                    stop_flag=self._stop,  # type: ignore[arg-type]  # kopf accepts threading.Event
                    ready_flag=self._ready,  # type: ignore[arg-type]
                    liveness=False,
                )
            )
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until kopf reports readiness (startup handlers done)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("operator did not become ready")
        if self._error is not None:
            raise RuntimeError("operator failed to start") from self._error

    def stop(self, timeout: float = 30.0) -> None:
        """Signal kopf to stop and join the thread; re-raise an operator crash."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("operator thread did not stop")
        if self._error is not None:
            raise RuntimeError("operator crashed") from self._error


@contextmanager
def running_operator(
    namespace: str, *, controller_options: Mapping[str, Any] | None = None, **overrides: Any
) -> Iterator[OperatorThread]:
    """An operator watching only `namespace`, without metrics/health servers.

    `overrides` replace `OperatorSettings` fields (e.g. a small multinode group restart
    budget); `controller_options` are keyword arguments of `Controller`.
    """
    settings = replace(
        OperatorSettings(),
        watch_namespaces=(namespace,),
        metrics_port=0,
        health_port=0,
        workers=2,
        **overrides,
    )
    operator = OperatorThread(settings, **(controller_options or {}))
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


# ------------------------------------------------------------------------------ test helpers

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
# Everything the operator writes (children, DGDs, adapters, Events).
OPERATOR_RESOURCES = frozenset(
    {
        "deployments",
        "statefulsets",
        "services",
        "configmaps",
        "serviceaccounts",
        "roles",
        "rolebindings",
        "persistentvolumeclaims",
        "ingresses",
        "events",
        "dynamographdeployments",
        "dynamographdeploymentscalingadapters",
    }
)


def dgd_path(namespace: str, name: str | None = None) -> str:
    """REST path of the DGD collection or of one DGD."""
    base = DGD_API.format(ns=namespace)
    return f"{base}/{name}" if name else base


def dgd_status(rest: Any, namespace: str, name: str) -> dict[str, Any]:
    """The DGD's status (empty when none yet)."""
    return dict(rest.get(dgd_path(namespace, name)).get("status") or {})


def settled(
    rest: Any, namespace: str, name: str, state: str = "successful"
) -> dict[str, Any] | None:
    """The DGD when it reports `state` for its current generation, else None."""
    obj = rest.get(dgd_path(namespace, name))
    status = obj.get("status") or {}
    if (
        status.get("state") == state
        and status.get("observedGeneration") == obj["metadata"]["generation"]
    ):
        return dict(obj)
    if state == "failed" and status.get("state") == state:
        return dict(obj)
    return None


def events_for(rest: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    """Events whose involved object is the DGD `name`."""
    items = rest.get(f"/api/v1/namespaces/{namespace}/events").get("items", [])
    return [e for e in items if e.get("involvedObject", {}).get("name") == name]


def apiserver_writes(rest: Any) -> dict[tuple[str, str, str], float]:
    """`apiserver_request_total` for write verbs on the operator's resources, by (verb, resource, subresource)."""
    from prometheus_client.parser import text_string_to_metric_families

    _, body, _ = rest.request_full("GET", "/metrics", content_type="text/plain")
    text = body.get("raw", "") if isinstance(body, dict) else str(body)
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total"):
                continue
            if labels.get("verb") in WRITE_VERBS and labels.get("resource") in OPERATOR_RESOURCES:
                key = (labels["verb"], labels["resource"], labels.get("subresource", ""))
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def count_delta(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]
) -> dict[tuple[str, str, str], float]:
    """Non-zero differences between two `apiserver_writes` snapshots."""
    keys = set(before) | set(after)
    return {
        k: after.get(k, 0.0) - before.get(k, 0.0)
        for k in keys
        if after.get(k, 0.0) != before.get(k, 0.0)
    }


def terminating_namespaces(rest: Any) -> list[str]:
    """Namespaces still being deleted."""
    items = rest.get("/api/v1/namespaces").get("items", [])
    return [
        n["metadata"]["name"]
        for n in items
        if (n.get("status") or {}).get("phase") == "Terminating"
    ]


def finish_terminating_namespaces(rest: Any) -> list[str]:
    """Help namespaces of earlier tests finish deleting, and return those still terminating.

    Pods bound to a node that a test removed have no kubelet left to confirm their graceful
    deletion, so they (and the PodGroups whose protection finalizer waits for them) would hold
    their namespace forever: force-delete such pods and release those finalizers.
    """
    left = terminating_namespaces(rest)
    for namespace in left:
        rest.request(
            "DELETE", f"/api/v1/namespaces/{namespace}/pods", params={"gracePeriodSeconds": 0}
        )
        groups = f"/apis/scheduling.k8s.io/v1beta1/namespaces/{namespace}/podgroups"
        if not rest.exists(groups):
            continue
        for group in rest.get(groups).get("items", []):
            if group["metadata"].get("finalizers"):
                with suppress(ApiError):  # deleted meanwhile
                    rest.patch(
                        f"{groups}/{group['metadata']['name']}", {"metadata": {"finalizers": None}}
                    )
    return left
