"""Leader election on a `coordination.k8s.io/v1` Lease, with client-go's rules.

Every operator replica serves the webhooks; only the holder of the Lease reconciles. A replica
takes the Lease when it is free (no holder, or released) or when its holder has not renewed it
for `lease_duration` seconds, measured on the replica's own monotonic clock from the moment it
last saw the Lease change (so clock skew between nodes cannot shorten a term). Writes carry the
`resourceVersion` read, so of two replicas racing for a free Lease exactly one wins (the other
gets 409). The holder renews every `retry_period`; if it cannot renew within `renew_deadline`
it must stop reconciling before its term can have ended for the others
(`renew_deadline < lease_duration`). On a clean shutdown it releases the Lease, so a standby
takes over within one `retry_period` instead of waiting out the term.

Why a Lease and not kopf's peering: peering pauses every other operator while one with a
higher priority is alive, through a kopf-specific ClusterKopfPeering object that kopf also
watches; a Lease is what Kubernetes users (and `kubectl get lease`) expect from controllers,
needs only get/create/update on one object, and lets standbys skip watching entirely (they
start kopf only once they lead).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dgd_operator.controllerkit.kube import KubeClient
from dgd_operator.controllerkit.kubeapi import ApiError, ConflictError, NotFoundError

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"
LEASES = "leases"


class LeadershipLostError(RuntimeError):
    """The Lease could not be renewed in time, or another replica holds it now."""


def default_identity() -> str:
    """`<host name>_<pid>`: the pod name in a cluster, unique among local processes."""
    return f"{socket.gethostname()}_{os.getpid()}"


def micro_time(at: datetime | None = None) -> str:
    """A Kubernetes `MicroTime` (RFC 3339 with microseconds, UTC)."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Observation:
    """The Lease spec a replica last saw, and when (its own monotonic clock)."""

    spec: Mapping[str, Any]
    at: float


def may_acquire(
    spec: Mapping[str, Any], identity: str, seen: Observation, now: float, default: float
) -> bool:
    """Whether `identity` may write itself into a Lease whose current spec is `spec`, which it
    first saw in this state at `seen.at`.

    Yes when nobody holds it, when we hold it, or when its holder has not changed it for its
    `leaseDurationSeconds` (`default` when absent) since then.
    """
    holder = spec.get("holderIdentity") or ""
    if not holder or holder == identity:
        return True
    duration = float(spec.get("leaseDurationSeconds") or default)
    return now >= seen.at + duration


def next_spec(
    spec: Mapping[str, Any], identity: str, lease_duration: float, now: str
) -> dict[str, Any]:
    """The spec that makes (or keeps) `identity` the holder at wall time `now`."""
    renewing = spec.get("holderIdentity") == identity
    transitions = int(spec.get("leaseTransitions") or 0)
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, math.ceil(lease_duration)),
        "acquireTime": spec.get("acquireTime") if renewing else now,
        "renewTime": now,
        "leaseTransitions": transitions if renewing or not spec else transitions + 1,
    }


class LeaderElector:
    """One replica's side of the election on the Lease `namespace/name` (module docstring)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        labels: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.labels = dict(labels or {})
        self.clock = clock
        self.is_leader = False
        self._seen: Observation | None = None

    @property
    def path(self) -> str:
        """REST path of the Lease."""
        return f"/apis/{LEASE_API}/namespaces/{self.namespace}/{LEASES}/{self.name}"

    async def try_acquire_or_renew(self) -> bool:
        """One attempt: True when we hold the Lease afterwards (raises `ApiError` on failure)."""
        now = micro_time()
        try:
            lease = await self.client.request("GET", self.path, verb="get", resource=LEASES)
        except NotFoundError:
            return await self._create(now)
        spec = dict(lease.get("spec") or {})
        if self._seen is None or dict(self._seen.spec) != spec:
            self._seen = Observation(spec, self.clock())  # a change: its term starts now
        if not may_acquire(spec, self.identity, self._seen, self.clock(), self.lease_duration):
            self.is_leader = False
            return False
        body = {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": {**lease["metadata"], "labels": lease["metadata"].get("labels") or {}},
            "spec": next_spec(spec, self.identity, self.lease_duration, now),
        }
        try:
            written = await self.client.request(
                "PUT", self.path, verb="update", resource=LEASES, body=body
            )
        except ConflictError:  # another replica wrote first: it holds the Lease
            self.is_leader = False
            return False
        self._won(written)
        return True

    async def _create(self, now: str) -> bool:
        body = {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels},
            "spec": next_spec({}, self.identity, self.lease_duration, now),
        }
        collection = self.path.rsplit("/", 1)[0]
        try:
            written = await self.client.request(
                "POST", collection, verb="create", resource=LEASES, body=body
            )
        except ConflictError:  # created by another replica a moment ago
            return False
        self._won(written)
        return True

    def _won(self, lease: Mapping[str, Any]) -> None:
        if not self.is_leader:
            log.info(
                "leader election: %s now holds lease %s/%s",
                self.identity,
                self.namespace,
                self.name,
            )
        self.is_leader = True
        self._seen = Observation(dict(lease.get("spec") or {}), self.clock())

    async def acquire(self) -> None:
        """Return once we hold the Lease (retrying every `retry_period`; cancel to give up)."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    return
            except ApiError as exc:
                log.warning("leader election: cannot read or write the lease yet: %s", exc)
            await asyncio.sleep(self.retry_period)

    async def hold(self) -> None:
        """Renew the Lease every `retry_period` while we lead; raise `LeadershipLostError` when a
        renewal did not succeed within `renew_deadline`, or another replica took it."""
        renewed = self.clock()
        while True:
            await asyncio.sleep(self.retry_period)
            left = renewed + self.renew_deadline - self.clock()
            try:
                held = await asyncio.wait_for(self.try_acquire_or_renew(), max(left, 0.01))
            except (ApiError, TimeoutError) as exc:
                log.warning("leader election: renewal failed: %s", exc)
                held = None
            if held:
                renewed = self.clock()
                continue
            if held is False or self.clock() - renewed >= self.renew_deadline:
                self.is_leader = False
                raise LeadershipLostError(
                    f"{self.identity} lost lease {self.namespace}/{self.name}"
                    + (": another replica holds it" if held is False else ": renewals failed")
                )

    async def release(self) -> None:
        """Give the Lease up (a clean shutdown): standbys take it without waiting out the term."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = await self.client.request("GET", self.path, verb="get", resource=LEASES)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(holderIdentity=None, leaseDurationSeconds=1, renewTime=micro_time())
            await self.client.request(
                "PUT", self.path, verb="update", resource=LEASES, body={**lease, "spec": spec}
            )
            log.info(
                "leader election: %s released lease %s/%s", self.identity, self.namespace, self.name
            )
        except ApiError as exc:  # the standbys wait out the term instead
            log.warning("leader election: could not release the lease: %s", exc)
