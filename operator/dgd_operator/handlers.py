"""kopf registration: every watch, index and lifecycle handler of the operator, in one place.

Handlers never reconcile themselves. Indexes keep the watched objects in memory (one
list+watch per kind); event handlers only bind those indexes into the controller's view and
enqueue the owning DGD's key into its work queue (see `dgd_operator.reconcile.controller`).
Nothing here stores progress on objects, so kopf itself writes nothing to the cluster. Pods
are watched only for multinode groups (a server-side label selector), as small summaries, so
whole-group restarts can see rank failures. Admission handlers are registered by `main`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from dgd_operator import metrics
from dgd_operator.api.constants import (
    KOPF_FINALIZER,
    KOPF_PREFIX,
    LABEL_GRAPH,
    LABEL_GROUP_INDEX,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    MANAGED_BY,
    ROLE_LEADER,
    ROLE_WORKER,
)
from dgd_operator.controllerkit.kubeapi import KubeAPI
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.groups import pod_summary
from dgd_operator.reconcile.resources import DGD, SHARED_KINDS, WATCHED_CHILD_KINDS
from dgd_operator.reconcile.state import Key
from dgd_operator.reconcile.sync import child_key
from dgd_operator.reconcile.view import IndexedClusterView, SharedKey

DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson"
CHILD_LABELS: Mapping[str, Any] = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_GRAPH: kopf.PRESENT}
SHARED_LABELS: Mapping[str, Any] = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_GRAPH: kopf.ABSENT}
# Only pods of multinode groups are watched, selected by the API server (single-node pods never
# reach the operator): the graph label, a leader/worker role and a group index.
GROUP_POD_SELECTOR = (
    f"{LABEL_GRAPH},{LABEL_ROLE} in ({ROLE_LEADER},{ROLE_WORKER}),{LABEL_GROUP_INDEX}"
)
GROUP_POD_LABELS: Mapping[str, Any] = {
    LABEL_GRAPH: kopf.PRESENT,
    LABEL_ROLE: kopf.PRESENT,
    LABEL_GROUP_INDEX: kopf.PRESENT,
}

DgdIndex = kopf.Index[Key, dict[str, Any]]
ChildIndex = kopf.Index[Key, dict[str, Any]]
SharedIndex = kopf.Index[str, SharedKey]
PullSecretIndex = kopf.Index[str, tuple[str, tuple[str, ...]]]
GroupPodIndex = kopf.Index[Key, dict[str, Any]]


def docker_config_registries(secret: Mapping[str, Any]) -> tuple[str, ...]:
    """Registry hosts a `kubernetes.io/dockerconfigjson` Secret authenticates to."""
    raw = (secret.get("data") or {}).get(".dockerconfigjson")
    if not raw:
        return ()
    try:
        config = json.loads(base64.b64decode(raw))
    except (ValueError, binascii.Error):
        return ()
    auths = config.get("auths") if isinstance(config, dict) else None
    return tuple(sorted(str(host) for host in auths)) if isinstance(auths, dict) else ()


def kopf_settings(settings: kopf.OperatorSettings | None = None) -> kopf.OperatorSettings:
    """kopf's own settings: our prefixes, no event posting, no persisted progress."""
    settings = settings or kopf.OperatorSettings()
    # None of our handlers are change-detecting, so nothing is stored; the prefixes make sure
    # that anything kopf might store lands under our API group, not kopf.zalando.org.
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    # The controller posts its own Events with stable reasons; kopf's log-to-Event posting off.
    settings.posting.enabled = False
    settings.watching.label_selectors["v1", "pods"] = GROUP_POD_SELECTOR
    settings.watching.server_timeout = 300
    return settings


def register(
    registry: kopf.OperatorRegistry, controller: Controller, connect: Callable[[], KubeAPI]
) -> None:
    """Register every handler of the operator on `registry`, bound to `controller`.

    `connect` makes the API client at startup (it may raise `RuntimeError` without credentials).
    """
    view = IndexedClusterView()
    controller.bind_view(view)
    metrics.GRAPHS.bind(view.dgds.all_values)

    def bind(
        dgds: DgdIndex | None,
        children: ChildIndex | None,
        shared: SharedIndex | None,
        pods: GroupPodIndex | None,
        secrets: PullSecretIndex | None,
    ) -> None:
        """Attach kopf's indexes (the same objects on every event) to the controller's view."""
        view.dgds.bind(dgds)
        view.children_index.bind(children)
        view.shared.bind(shared)
        view.pods.bind(pods)
        view.secrets.bind(secrets)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def start(**_: Any) -> None:
        try:
            client = connect()
        except RuntimeError as exc:
            raise kopf.PermanentError(str(exc)) from exc
        await controller.start(client)

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await controller.stop()

    # Every handler below runs for every watch event: they are `async def` (even those that
    # never await) because kopf runs a plain `def` in its thread pool, a hop per event.

    @kopf.index(DGD.group, DGD.version, DGD.plural, id="dgd_objects", registry=registry)
    async def dgd_objects(
        namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> dict[Key, dict[str, Any]]:
        return {(namespace or "", name): dict(body)}

    @kopf.on.event(DGD.group, DGD.version, DGD.plural, registry=registry)
    async def dgd_event(
        namespace: str | None,
        name: str,
        dgd_objects: DgdIndex | None = None,
        dgd_children: ChildIndex | None = None,
        dgd_shared: SharedIndex | None = None,
        dgd_group_pods: GroupPodIndex | None = None,
        dgd_pull_secrets: PullSecretIndex | None = None,
        **_: Any,
    ) -> None:
        bind(dgd_objects, dgd_children, dgd_shared, dgd_group_pods, dgd_pull_secrets)
        controller.enqueue((namespace or "", name))

    # One index over every child kind: kopf keys stored values by object uid, so kinds never mix.
    async def dgd_children(
        namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
    ) -> dict[Key, dict[str, Any]]:
        return {(namespace or "", labels[LABEL_GRAPH]): dict(body)}

    async def child_event(
        event: kopf.RawEvent,
        namespace: str | None,
        labels: kopf.Labels,
        body: kopf.Body,
        dgd_objects: DgdIndex | None = None,
        dgd_children: ChildIndex | None = None,
        dgd_shared: SharedIndex | None = None,
        dgd_group_pods: GroupPodIndex | None = None,
        dgd_pull_secrets: PullSecretIndex | None = None,
        **_: Any,
    ) -> None:
        bind(dgd_objects, dgd_children, dgd_shared, dgd_group_pods, dgd_pull_secrets)
        if event.get("type") == "DELETED":
            controller.child_deleted(namespace or "", child_key(body))
        controller.enqueue((namespace or "", labels[LABEL_GRAPH]))

    for rk in WATCHED_CHILD_KINDS:
        common: dict[str, Any] = {"labels": CHILD_LABELS, "registry": registry}
        kopf.index(rk.group, rk.version, rk.plural, id="dgd_children", **common)(dgd_children)
        kopf.on.event(rk.group, rk.version, rk.plural, id=f"child_event_{rk.plural}", **common)(
            child_event
        )

    # Namespace-wide planner/EPP accounts: a deleted one is looked up and re-created at once.
    async def dgd_shared(
        namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> dict[str, SharedKey]:
        return {namespace or "": (str(body.get("kind")), name)}

    async def shared_event(
        event: kopf.RawEvent,
        namespace: str | None,
        name: str,
        body: kopf.Body,
        dgd_objects: DgdIndex | None = None,
        dgd_children: ChildIndex | None = None,
        dgd_shared: SharedIndex | None = None,
        dgd_group_pods: GroupPodIndex | None = None,
        dgd_pull_secrets: PullSecretIndex | None = None,
        **_: Any,
    ) -> None:
        bind(dgd_objects, dgd_children, dgd_shared, dgd_group_pods, dgd_pull_secrets)
        if event.get("type") == "DELETED":
            controller.shared_deleted(namespace or "", str(body.get("kind")), name)
            for key in view.dgd_keys(namespace or ""):
                controller.enqueue(key)

    for rk in SHARED_KINDS:
        common = {"labels": SHARED_LABELS, "registry": registry}
        kopf.index(rk.group, rk.version, rk.plural, id="dgd_shared", **common)(dgd_shared)
        kopf.on.event(rk.group, rk.version, rk.plural, id=f"shared_event_{rk.plural}", **common)(
            shared_event
        )

    if controller.settings.image_pull_secret_discovery:
        # Only the registry hosts of docker-registry Secrets are kept, never their data.
        @kopf.index(
            "v1",
            "secrets",
            field="type",
            value=DOCKER_CONFIG_TYPE,
            id="dgd_pull_secrets",
            registry=registry,
        )
        async def pull_secret_registries(
            namespace: str | None, name: str, body: kopf.Body, **_: Any
        ) -> dict[str, tuple[str, tuple[str, ...]]]:
            return {namespace or "": (name, docker_config_registries(body))}

        @kopf.on.event(
            "v1",
            "secrets",
            field="type",
            value=DOCKER_CONFIG_TYPE,
            id="pull_secret_event",
            registry=registry,
        )
        async def pull_secret_event(
            namespace: str | None,
            dgd_objects: DgdIndex | None = None,
            dgd_children: ChildIndex | None = None,
            dgd_shared: SharedIndex | None = None,
            dgd_group_pods: GroupPodIndex | None = None,
            dgd_pull_secrets: PullSecretIndex | None = None,
            **_: Any,
        ) -> None:
            bind(dgd_objects, dgd_children, dgd_shared, dgd_group_pods, dgd_pull_secrets)
            for key in view.dgd_keys(namespace or ""):
                controller.enqueue(key)

    # Multinode group pods: failures and restarts of a rank restart the whole group.
    @kopf.index("v1", "pods", id="dgd_group_pods", labels=GROUP_POD_LABELS, registry=registry)
    async def dgd_group_pods(
        namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
    ) -> dict[Key, dict[str, Any]]:
        return {(namespace or "", labels[LABEL_GRAPH]): pod_summary(body)}

    @kopf.on.event("v1", "pods", id="group_pod_event", labels=GROUP_POD_LABELS, registry=registry)
    async def group_pod_event(
        namespace: str | None,
        labels: kopf.Labels,
        dgd_objects: DgdIndex | None = None,
        dgd_children: ChildIndex | None = None,
        dgd_shared: SharedIndex | None = None,
        dgd_group_pods: GroupPodIndex | None = None,
        dgd_pull_secrets: PullSecretIndex | None = None,
        **_: Any,
    ) -> None:
        bind(dgd_objects, dgd_children, dgd_shared, dgd_group_pods, dgd_pull_secrets)
        controller.enqueue((namespace or "", labels[LABEL_GRAPH]))

    logging.getLogger("dgd_operator").debug(
        "registered handlers for %d child kinds", len(WATCHED_CHILD_KINDS)
    )
