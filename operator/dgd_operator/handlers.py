"""What the operator watches and what each event does, in one place; kopf runs the lifecycle.

Our informers (`controllerkit.informer`, one list+watch per kind and namespace) keep the
watched objects in the controller's indexes (`reconcile.view`); every event only updates an
index and enqueues the owning DGD's key into the work queue (`reconcile.controller`). The
workers start once every informer has listed its objects. kopf's own watching and indexes are
not used: their start-up wakes every object's worker on every other object's progress,
O(N^2) in the objects resumed (issue 16). kopf runs the login, start-up, clean-up and probe
handlers and writes nothing to the cluster. Pods are watched only for graphs (a
server-side label selector), as small summaries, so whole-group restarts can see rank
failures and `Ready` can say why pods are not ready. Admission handlers are registered by
`main`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kopf

from dgd_operator import metrics
from dgd_operator.api.constants import (
    KOPF_FINALIZER,
    KOPF_PREFIX,
    LABEL_GRAPH,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from dgd_operator.api.tree import compact
from dgd_operator.controllerkit.informer import (
    DELETED,
    EventHandler,
    Informer,
    WatchingKubeAPI,
    uid_of,
)
from dgd_operator.controllerkit.kubeapi import Manifest, ResourceKind
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.groups import pod_summary
from dgd_operator.reconcile.resources import DGD, SHARED_KINDS, WATCHED_CHILD_KINDS
from dgd_operator.reconcile.shapes import SHAPES
from dgd_operator.reconcile.state import Key
from dgd_operator.reconcile.sync import child_key
from dgd_operator.reconcile.view import IndexedClusterView, cached_child

logger = logging.getLogger("dgd_operator.handlers")

DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson"
# Selected by the API server, so nothing else ever reaches the operator.
CHILD_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_GRAPH}"
SHARED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY},!{LABEL_GRAPH}"
PULL_SECRET_SELECTOR = f"type={DOCKER_CONFIG_TYPE}"
# Only the pods of graphs are watched (other pods never reach the operator), as small
# summaries: multinode group pods drive whole-group restarts; every graph pod tells the Ready
# condition why it is not ready (the scheduler's verdict, a waiting container, the last exit).
GROUP_POD_SELECTOR = LABEL_GRAPH
UNREAD_OWNERSHIP_FIELDS = frozenset({"fieldsV1", "time", "apiVersion"})
"""What the cache drops of our own `Update` ownership entry (`slim`)."""
POD = ResourceKind("v1", "Pod", "pods")
SECRET = ResourceKind("v1", "Secret", "secrets")


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
    # kopf watches nothing of ours (the informers do), so it stores nothing; the prefixes make
    # sure that anything it might store lands under our API group, not kopf.zalando.org.
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    # The controller posts its own Events with stable reasons; kopf's log-to-Event posting off.
    settings.posting.enabled = False
    return settings


def slim(obj: Manifest) -> Manifest:
    """What the watch cache keeps of a child or DGD: everything but field ownership.

    Only a mark of our own `Update` entry (left by a create) is kept, without its `fieldsV1`:
    the first apply after a create must fold that entry into our apply entry, and it only asks
    the cache whether the entry exists; the fold itself reads the object afresh
    (`steps.children.fold_ownership`). The field sets are most of a created child's bytes (a
    Deployment's covers its whole pod template): kept, they were ~2/3 of the cache's memory.
    """
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        ours = [
            {k: v for k, v in entry.items() if k not in UNREAD_OWNERSHIP_FIELDS}
            for entry in meta["managedFields"] or []
            if entry.get("manager") == MANAGED_BY and entry.get("operation") == "Update"
        ]
        meta = {k: v for k, v in meta.items() if k != "managedFields"}
        if ours:
            meta["managedFields"] = ours
        obj = {**obj, "metadata": meta}
    return obj


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


class Watches:
    """The operator's informers and what each event does: update an index, enqueue DGDs.

    Every event only updates the view and enqueues the owning DGD's key; the reconcile runs
    in the controller's workers, which start once every informer has listed its objects (so a
    resumed graph never looks at a half-filled cache and re-creates children that exist).
    """

    def __init__(self, controller: Controller, view: IndexedClusterView) -> None:
        self.controller = controller
        self.view = view
        self.informers: list[Informer] = []
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------------------ events

    def dgd_event(self, type_: str, obj: Manifest) -> None:
        """A DGD changed: keep its body and reconcile it."""
        meta = obj.get("metadata") or {}
        key: Key = (_namespace(obj), str(meta.get("name") or ""))
        uid = uid_of(obj)
        if type_ == DELETED:
            self.view.dgds.discard(uid)
        else:
            previous = self.view.dgds.get(uid)
            body = compact(slim(obj), previous)
            self.view.dgds.put(uid, key, body)
            if previous is not None and self.controller.is_own_status_echo(key, previous, body):
                return  # our status write coming back: the reconcile that wrote it saw it all
        self.controller.enqueue(key)

    def child_event(self, type_: str, obj: Manifest) -> None:
        """A child changed: keep it under its graph and reconcile that graph."""
        graph = _labels(obj).get(LABEL_GRAPH)
        namespace = _namespace(obj)
        if type_ == DELETED:
            self.view.children_index.discard(uid_of(obj))
            if "name" in (obj.get("metadata") or {}):
                self.controller.child_deleted(namespace, child_key(obj))
        else:
            key = (namespace, graph) if graph else None
            uid = uid_of(obj)
            kept = compact(cached_child(slim(obj)), self.view.children_index.get(uid))
            self.view.children_index.put(uid, key, kept)
        if graph:
            self.controller.enqueue((namespace, graph))

    def shared_event(self, type_: str, obj: Manifest) -> None:
        """A namespace-wide account changed: a deleted one is looked up and re-created at once."""
        namespace = _namespace(obj)
        if type_ != DELETED:
            name = str((obj.get("metadata") or {}).get("name"))
            self.view.shared.put(uid_of(obj), namespace, (str(obj.get("kind")), name))
            return
        self.view.shared.discard(uid_of(obj))
        if "name" in (obj.get("metadata") or {}):
            meta = obj["metadata"]
            self.controller.shared_deleted(namespace, str(obj.get("kind")), str(meta["name"]))
            for key in self.view.dgd_keys(namespace):
                self.controller.enqueue(key)

    def pull_secret_event(self, type_: str, obj: Manifest) -> None:
        """An image pull Secret changed: the graphs of its namespace may use it."""
        namespace = _namespace(obj)
        if type_ == DELETED:
            self.view.secrets.discard(uid_of(obj))
        else:
            name = str((obj.get("metadata") or {}).get("name"))
            registries = docker_config_registries(obj)  # only hosts are kept, never the data
            self.view.secrets.put(uid_of(obj), namespace, (name, registries))
        for key in self.view.dgd_keys(namespace):
            self.controller.enqueue(key)

    def group_pod_event(self, type_: str, obj: Manifest) -> None:
        """A multinode group's pod changed: failures and restarts of a rank restart the group."""
        graph = _labels(obj).get(LABEL_GRAPH)
        namespace = _namespace(obj)
        if type_ == DELETED:
            self.view.pods.discard(uid_of(obj))
        else:
            key = (namespace, graph) if graph else None
            uid = uid_of(obj)
            self.view.pods.put(uid, key, compact(pod_summary(obj), self.view.pods.get(uid)))
        if graph:
            self.controller.enqueue((namespace, graph))

    # ------------------------------------------------------------------------------ informers

    def build(self, client: WatchingKubeAPI, namespaces: Sequence[str]) -> list[Informer]:
        """One informer per watched kind and namespace (`()`: cluster-wide)."""
        wanted: list[tuple[ResourceKind, EventHandler, str | None, str | None]] = [
            (DGD, self.dgd_event, None, None),
            *((rk, self.child_event, CHILD_SELECTOR, None) for rk in WATCHED_CHILD_KINDS),
            *((rk, self.shared_event, SHARED_SELECTOR, None) for rk in SHARED_KINDS),
            (POD, self.group_pod_event, GROUP_POD_SELECTOR, None),
        ]
        if self.controller.settings.image_pull_secret_discovery:
            wanted.append((SECRET, self.pull_secret_event, None, PULL_SECRET_SELECTOR))
        scopes: Sequence[str | None] = list(namespaces) or [None]
        return [
            Informer(
                client,
                rk.collection_path(namespace),
                handler,
                api_version=rk.api_version,
                kind=rk.kind,
                label_selector=labels,
                field_selector=fields,
                shape=SHAPES.get(rk.kind),
            )
            for rk, handler, labels, fields in wanted
            for namespace in scopes
        ]

    async def start(self, client: WatchingKubeAPI, namespaces: Sequence[str]) -> None:
        """Start every informer and return once each has delivered its first listing."""
        self.informers = self.build(client, namespaces)
        self._tasks = [
            asyncio.create_task(informer.run(), name=repr(informer)) for informer in self.informers
        ]
        began = time.monotonic()
        await asyncio.gather(*(informer.synced.wait() for informer in self.informers))
        logger.info(
            "watch cache synced in %.1fs: %d DGDs, %d children",
            time.monotonic() - began,
            len(self.view.dgds),
            len(self.view.children_index),
        )

    async def stop(self) -> None:
        """Cancel every informer (idempotent)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def register(
    registry: kopf.OperatorRegistry,
    controller: Controller,
    connect: Callable[[], WatchingKubeAPI],
) -> Watches:
    """Register the operator's lifecycle on `registry`, bound to `controller`.

    `connect` makes the API client at startup (it may raise `RuntimeError` without credentials).
    At startup the informers list everything, then the controller's workers start.
    """
    view = IndexedClusterView()
    controller.bind_view(view)
    metrics.GRAPHS.bind(view.dgds.all_values)
    watches = Watches(controller, view)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def start(**_: Any) -> None:
        try:
            client = connect()
        except RuntimeError as exc:
            raise kopf.PermanentError(str(exc)) from exc
        await watches.start(client, controller.settings.watch_namespaces)
        await controller.start(client)

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await watches.stop()
        await controller.stop()

    return watches
