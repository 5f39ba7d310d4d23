"""kopf registration: every handler of the operator, in one place, each a one-liner.

Handlers never reconcile themselves. Indexes keep the watched objects in memory (one
list+watch per kind); event handlers only enqueue the owning DGD's key into the controller's
work queue (see `dgd_operator.reconcile.controller`). Nothing here stores progress on objects,
so kopf itself writes nothing to the cluster. Pods are watched only for multinode groups (a
server-side label selector), as small summaries, so whole-group restarts can see rank failures.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from dgd_operator.kube import KubeClient, load_credentials
from dgd_operator.reconcile import constants as c
from dgd_operator.reconcile.controller import (
    DGD_RESOURCE,
    WATCHED_CHILD_KINDS,
    Controller,
    Key,
)
from dgd_operator.reconcile.groups import pod_summary

DGD_INDEX = "dgd_objects"
PULL_SECRET_INDEX = "dgd_pull_secrets"
DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson"
CHILD_INDEX_PREFIX = "dgd_children_"
CHILD_LABELS: Mapping[str, Any] = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_DGD_NAME: kopf.PRESENT}
GROUP_POD_INDEX = "dgd_group_pods"
# Only pods of multinode groups are watched, selected by the API server (single-node pods never
# reach the operator): the graph label, a leader/worker role and a group index.
GROUP_POD_SELECTOR = f"{c.LABEL_DGD_NAME},{c.LABEL_ROLE} in (leader,worker),{c.LABEL_GROUP_INDEX}"
GROUP_POD_LABELS: Mapping[str, Any] = {
    c.LABEL_DGD_NAME: kopf.PRESENT,
    c.LABEL_ROLE: kopf.PRESENT,
    c.LABEL_GROUP_INDEX: kopf.PRESENT,
}


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class IndexView:
    """`ClusterView` over kopf's in-memory indexes (bound from handler kwargs on first use)."""

    def __init__(self) -> None:
        self.dgds: Mapping[Key, Any] | None = None
        self.child_indexes: dict[str, Mapping[Key, Any]] = {}
        self.secrets: Mapping[str, Any] | None = None
        self.pods: Mapping[Key, Any] | None = None

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        """Pick the index objects out of a handler's kwargs (they are the same objects every time)."""
        if self.dgds is not None and len(self.child_indexes) == len(WATCHED_CHILD_KINDS):
            return
        for name, value in kwargs.items():
            if name == DGD_INDEX:
                self.dgds = value
            elif name == PULL_SECRET_INDEX:
                self.secrets = value
            elif name == GROUP_POD_INDEX:
                self.pods = value
            elif name.startswith(CHILD_INDEX_PREFIX):
                self.child_indexes[name] = value

    def dgd(self, key: Key) -> Mapping[str, Any] | None:
        """The live DGD body for `key` (a live one wins over one being deleted)."""
        if self.dgds is None or key not in self.dgds:
            return None
        bodies = list(self.dgds[key])
        bodies.sort(key=lambda b: bool((b.get("metadata") or {}).get("deletionTimestamp")))
        return bodies[0] if bodies else None

    def dgd_keys(self, namespace: str) -> list[Key]:
        """Keys of every DGD in `namespace`."""
        return [key for key in (self.dgds or {}) if key[0] == namespace]

    def pull_secrets(self, namespace: str) -> dict[str, tuple[str, ...]]:
        """Registry host to docker-registry Secret names in `namespace` (discovery)."""
        by_registry: dict[str, set[str]] = {}
        if self.secrets is not None and namespace in self.secrets:
            for secret_name, registries in self.secrets[namespace]:
                for registry in registries:
                    by_registry.setdefault(registry, set()).add(secret_name)
        return {registry: tuple(sorted(names)) for registry, names in by_registry.items()}

    def object_counts(self) -> dict[str, int]:
        """Watched DGDs and children by kind (for the managed-objects gauge)."""
        counts: dict[str, int] = {"DynamoGraphDeployment": sum(len(s) for s in (self.dgds or {}).values())}
        for index in self.child_indexes.values():
            for store in index.values():
                for obj in store:
                    kind = str(obj.get("kind"))
                    counts[kind] = counts.get(kind, 0) + 1
        return counts

    def group_pods(self, key: Key) -> list[Mapping[str, Any]]:
        """Summaries of the multinode group pods labelled with the DGD's name."""
        if self.pods is None or key not in self.pods:
            return []
        return list(self.pods[key])

    def children(self, key: Key) -> list[Mapping[str, Any]]:
        """Every indexed child labelled with the DGD's name in its namespace."""
        found: list[Mapping[str, Any]] = []
        for index in self.child_indexes.values():
            if key in index:
                found.extend(index[key])
        return found


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
    settings.persistence.finalizer = c.KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.KOPF_PREFIX, key="last-handled-configuration"
    )
    # The controller posts its own Events with stable reasons; kopf's log-to-Event posting off.
    settings.posting.enabled = False
    settings.watching.label_selectors["v1", "pods"] = GROUP_POD_SELECTOR
    settings.watching.server_timeout = 300
    return settings


def register(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    """Register every handler of the operator on `registry`, bound to `controller`."""
    view = IndexView()
    controller.bind_view(view)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def start(**_: Any) -> None:
        try:
            credentials = load_credentials()
        except RuntimeError as exc:
            raise kopf.PermanentError(str(exc)) from exc
        await controller.start(KubeClient(credentials, reload_credentials=load_credentials))

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await controller.stop()

    @kopf.on.probe(id="queue_depth", registry=registry)
    async def queue_depth(**_: Any) -> int:
        return len(controller.queue)

    group, version = _group_version(DGD_RESOURCE.api_version)

    # Every handler below runs for every watch event: they are `async def` (even those that
    # never await) because kopf runs a plain `def` in its thread pool, a hop per event.

    @kopf.index(group, version, DGD_RESOURCE.plural, id=DGD_INDEX, registry=registry)
    async def dgd_objects(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
        return {(namespace or "", name): dict(body)}

    @kopf.on.event(group, version, DGD_RESOURCE.plural, registry=registry)
    async def dgd_event(namespace: str | None, name: str, **kwargs: Any) -> None:
        view.bind(kwargs)
        controller.enqueue((namespace or "", name))

    async def child_objects(
        namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
    ) -> dict[Key, dict[str, Any]]:
        return {(namespace or "", labels[c.LABEL_DGD_NAME]): dict(body)}

    async def child_event(
        event: kopf.RawEvent, namespace: str | None, labels: kopf.Labels, body: kopf.Body, **kwargs: Any
    ) -> None:
        view.bind(kwargs)
        if event.get("type") == "DELETED":
            controller.child_deleted(namespace or "", dict(body))
        controller.enqueue((namespace or "", labels[c.LABEL_DGD_NAME]))

    if controller.settings.image_pull_secret_discovery:
        # Only the registry hosts of docker-registry Secrets are kept, never their data.
        @kopf.index("v1", "secrets", field="type", value=DOCKER_CONFIG_TYPE, id=PULL_SECRET_INDEX, registry=registry)
        async def pull_secret_registries(
            namespace: str | None, name: str, body: kopf.Body, **_: Any
        ) -> dict[str, tuple[str, tuple[str, ...]]]:
            return {namespace or "": (name, docker_config_registries(body))}

        @kopf.on.event("v1", "secrets", field="type", value=DOCKER_CONFIG_TYPE, id="pull_secret_event", registry=registry)
        async def pull_secret_event(namespace: str | None, **kwargs: Any) -> None:
            view.bind(kwargs)
            for key in view.dgd_keys(namespace or ""):
                controller.enqueue(key)

    # Multinode group pods: failures and restarts of a rank restart the whole group.
    @kopf.index("v1", "pods", id=GROUP_POD_INDEX, labels=GROUP_POD_LABELS, registry=registry)
    async def group_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
        return {(namespace or "", labels[c.LABEL_DGD_NAME]): pod_summary(body)}

    @kopf.on.event("v1", "pods", id="group_pod_event", labels=GROUP_POD_LABELS, registry=registry)
    async def group_pod_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
        view.bind(kwargs)
        controller.enqueue((namespace or "", labels[c.LABEL_DGD_NAME]))

    for rk in WATCHED_CHILD_KINDS:
        child_group, child_version = _group_version(rk.api_version)
        kopf.index(
            child_group, child_version, rk.plural,
            id=f"{CHILD_INDEX_PREFIX}{rk.plural}", labels=CHILD_LABELS, registry=registry,
        )(child_objects)
        kopf.on.event(
            child_group, child_version, rk.plural,
            id=f"child_event_{rk.plural}", labels=CHILD_LABELS, registry=registry,
        )(child_event)

    logging.getLogger("dgd_operator").debug("registered handlers for %d child kinds", len(WATCHED_CHILD_KINDS))
