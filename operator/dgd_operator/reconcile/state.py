"""What the controller remembers between reconciles, in one place.

Per graph, one `DgdMemory` keyed by (namespace, name) and stamped with the graph's uid: a
graph deleted and re-created under the same name gets a fresh memory (its predecessor's
replica syncs, status writes and group bookkeeping do not leak into it), and forgetting a
graph is one `del`.

Per namespace, what is shared by the graphs of a namespace: the children we applied
(`AppliedRecord`, found again by namespace-unique child keys), and when the namespace-wide
objects (planner/EPP ServiceAccounts, MPI Secret) were last checked. Those checks expire, so
a deleted one is re-created by a later reconcile without an operator restart.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.builders.gang import PodGroupApi
from dgd_operator.builders.graph import GraphPlan
from dgd_operator.controllerkit.indexes import Expiring
from dgd_operator.reconcile.groups import GroupMemory
from dgd_operator.reconcile.sync import AppliedRecord, ChildKey, DigestMemo, Manifest

Key = tuple[str, str]
"""(namespace, DGD name)."""

POD_GROUP_API_RECHECK_SECONDS = 60.0
"""How long the answer of PodGroup API discovery is trusted (a cluster may gain or lose it)."""

SHARED_OBJECT_RECHECK_SECONDS = 300.0
"""How long a namespace-wide object found (or created) is trusted before it is looked up again."""


MEMO_CAPACITY = 256
"""Graphs that keep their validated spec and built children (`DgdMemory.spec`, `.build`): the
most recently reconciled ones. Reconciles of one graph come in bursts (creation, a rollout,
pods starting), so a few hundred keep the hits, while the memos of 1,000 graphs (~80 KiB
each) would cost ~80 MiB of the operator's memory for graphs that are rarely reconciled."""

NODE_LABEL_RECHECK_SECONDS = 60.0
"""How long the answer to "does any node carry this topology label?" is trusted."""


@dataclass(frozen=True)
class NodeLabelCheck:
    """Whether any node carries a node label key (None: the nodes could not be listed)."""

    present: bool | None
    detail: str
    """Why it is unknown (the API server's refusal), empty otherwise."""
    checked_at: float


@dataclass(frozen=True)
class SpecMemo:
    """The validated graph of one stored spec (`steps.observe.spec_fingerprint`)."""

    fingerprint: str
    dgd: DynamoGraphDeployment
    """Never mutated: a reconcile that changes it (adapter-owned counts) works on a copy."""


@dataclass(frozen=True)
class BuildMemo:
    """The children built from one set of build inputs (`steps.build`), and their hashes."""

    inputs: tuple[object, ...]
    graph: GraphPlan
    desired: tuple[Manifest, ...]
    adapters: tuple[Manifest, ...]
    digests: DigestMemo


@dataclass
class DgdMemory:
    """Everything remembered about one incarnation (uid) of one graph."""

    uid: str
    rejected_mark: str | None = None
    """`rejection_mark` of the spec last reported invalid (not looked at again until it changes)."""
    written_status: dict[str, Any] | None = None
    """The status we last wrote (the watch cache may not have it yet)."""
    status_written_at: float = float("-inf")
    """Monotonic time of our last status write (coalesces progress-only updates)."""
    patched_replicas: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Service -> (replicas, DGD generation) of our last write of its adapter's count: not
    written twice while the watch still shows an older generation, written again when a newer
    one carries another count (an edit after ours)."""
    adapter_status_written: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Adapter name -> status we last wrote on it."""
    groups: dict[tuple[str, int], GroupMemory] = field(default_factory=dict)
    """(service, group index) -> restart bookkeeping of each multinode group."""
    optional_kinds_generation: int | None = None
    """The DGD generation whose children of optional kinds (InferencePool, Istio) were last
    looked for (`steps/children.py`); None: not seen yet."""
    pod_groups: frozenset[str] | None = None
    """Names of the PodGroups last found to be exactly the graph's (None: not listed yet)."""
    seen_spec: str | None = None
    """Fingerprint of the spec last validated. Memos are kept from the second reconcile of
    an unchanged spec on: after an operator start every graph is reconciled once, and memos
    no later reconcile reads would only be more live objects for the garbage collector."""
    spec: SpecMemo | None = None
    """The last spec validated, so a reconcile of an unchanged spec (a child's or a pod's
    event, a status write of ours) does not validate it again."""
    build: BuildMemo | None = None
    """The last children built, so a reconcile whose build inputs did not change reuses them."""


class ControllerState:
    """Per-graph memories and per-namespace records of one controller."""

    def __init__(
        self,
        *,
        recheck_after: float = SHARED_OBJECT_RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        memo_capacity: int = MEMO_CAPACITY,
    ) -> None:
        self.graphs: dict[Key, DgdMemory] = {}
        self.memo_capacity = memo_capacity
        self._memoised: OrderedDict[Key, None] = OrderedDict()
        """Graphs holding memos, least recently reconciled first."""
        self.records: dict[str, dict[ChildKey, AppliedRecord]] = {}
        """Per namespace: what we last applied to each child (see `sync.needs_apply`)."""
        self.shared_checked: Expiring[tuple[str, str, str]] = Expiring(recheck_after, clock)
        """(namespace, kind, name) of namespace-wide objects known to exist, and since when."""
        self.shared_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self.pod_group_api: PodGroupApi | None = None
        """The PodGroup API discovery last found (None: not served)."""
        self.pod_group_api_checked_at = float("-inf")
        self.inference_pool_api = False
        """Whether discovery last found InferencePools served."""
        self.inference_pool_api_checked_at = float("-inf")
        self._clock = clock
        self.pod_group_api_recheck = POD_GROUP_API_RECHECK_SECONDS
        self.node_labels: dict[str, NodeLabelCheck] = {}
        """Node label key -> whether some node carries it (topology domains; cached)."""
        self.node_label_recheck = NODE_LABEL_RECHECK_SECONDS

    def pod_group_api_fresh(self) -> bool:
        """True while the last PodGroup API discovery is recent enough to trust."""
        return self._clock() - self.pod_group_api_checked_at < self.pod_group_api_recheck

    def remember_pod_group_api(self, api: PodGroupApi | None) -> None:
        """Record what PodGroup API discovery found, as of now."""
        self.pod_group_api, self.pod_group_api_checked_at = api, self._clock()

    def node_label(self, key: str) -> NodeLabelCheck | None:
        """The last check of node label `key`, while recent enough to trust."""
        check = self.node_labels.get(key)
        if check is None or self._clock() - check.checked_at >= self.node_label_recheck:
            return None
        return check

    def remember_node_label(self, key: str, present: bool | None, detail: str = "") -> None:
        """Record whether some node carries label `key`, as of now."""
        self.node_labels[key] = NodeLabelCheck(present, detail, self._clock())

    def inference_pool_api_fresh(self) -> bool:
        """True while the last InferencePool API discovery is recent enough to trust."""
        return self._clock() - self.inference_pool_api_checked_at < self.pod_group_api_recheck

    def remember_inference_pool_api(self, served: bool) -> None:
        """Record what InferencePool API discovery found, as of now."""
        self.inference_pool_api, self.inference_pool_api_checked_at = served, self._clock()

    def graph(self, key: Key, uid: str) -> DgdMemory:
        """The memory of the graph `key` with `uid`; a different uid starts a fresh one."""
        memory = self.graphs.get(key)
        if memory is None or memory.uid != uid:
            memory = self.graphs[key] = DgdMemory(uid)
        return memory

    def forget(self, key: Key) -> None:
        """Drop everything remembered about the graph `key` (it is gone)."""
        self.graphs.pop(key, None)
        self._memoised.pop(key, None)

    def memoised(self, key: Key) -> None:
        """Graph `key` was just reconciled and holds memos; beyond `memo_capacity`, the least
        recently reconciled graph drops its own (its next reconcile validates and builds)."""
        self._memoised[key] = None
        self._memoised.move_to_end(key)
        while len(self._memoised) > self.memo_capacity:
            oldest, _ = self._memoised.popitem(last=False)
            memory = self.graphs.get(oldest)
            if memory is not None:
                memory.spec = memory.build = None

    def namespace_records(self, namespace: str) -> dict[ChildKey, AppliedRecord]:
        """The applied-child records of `namespace` (created on first use)."""
        return self.records.setdefault(namespace, {})

    def child_deleted(self, namespace: str, key: ChildKey) -> None:
        """Forget what we applied to a child that is gone, so it is re-created if still desired."""
        self.records.get(namespace, {}).pop(key, None)

    def shared_lock(self, ident: tuple[str, str, str]) -> asyncio.Lock:
        """One lock per namespace-wide object: one worker creates it, the others wait."""
        return self.shared_locks.setdefault(ident, asyncio.Lock())
