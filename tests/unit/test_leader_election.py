"""Leader election on a Lease: the pure rules, and replicas racing over an in-memory API server
that enforces `resourceVersion` like the real one."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from dgd_operator.controllerkit.kubeapi import ConflictError, NotFoundError, TransientError
from dgd_operator.controllerkit.leaderelection import (
    LeaderElector,
    LeadershipLostError,
    Observation,
    may_acquire,
    next_spec,
)
from dgd_operator.settings import LeaderElectionSettings, SettingsError, load_settings

pytestmark = pytest.mark.unit

HELD = {"holderIdentity": "a", "leaseDurationSeconds": 10}


@pytest.mark.parametrize(
    ("spec", "identity", "seen_at", "now", "expected"),
    [
        ({}, "b", 0.0, 0.0, True),  # nobody holds it
        ({"holderIdentity": None}, "b", 0.0, 0.0, True),  # released
        (HELD, "a", 0.0, 0.0, True),  # ours: renew
        (HELD, "b", 0.0, 9.9, False),  # another's, within its term
        (HELD, "b", 0.0, 10.0, True),  # another's, not renewed for a whole term
        ({"holderIdentity": "a"}, "b", 0.0, 14.9, False),  # no duration: ours (15 s) applies
    ],
)
def test_may_acquire(
    spec: dict[str, Any], identity: str, seen_at: float, now: float, expected: bool
) -> None:
    assert may_acquire(spec, identity, Observation(spec, seen_at), now, 15.0) is expected


def test_next_spec_counts_transitions_and_keeps_the_acquire_time_on_renewal() -> None:
    first = next_spec({}, "a", 4.5, "t0")
    assert first == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 5,
        "acquireTime": "t0",
        "renewTime": "t0",
        "leaseTransitions": 0,
    }
    renewed = next_spec(first, "a", 4.5, "t1")
    assert renewed["acquireTime"] == "t0" and renewed["renewTime"] == "t1"
    assert renewed["leaseTransitions"] == 0
    taken = next_spec(renewed, "b", 4.5, "t2")
    assert taken["holderIdentity"] == "b" and taken["acquireTime"] == "t2"
    assert taken["leaseTransitions"] == 1


class FakeLeases:
    """One Lease behind GET/POST/PUT with optimistic concurrency; `down` makes every call fail."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        if self.down:
            raise TransientError(0, "ConnectionError", "down")
        body = kwargs.get("body")
        if method == "GET":
            if self.lease is None:
                raise NotFoundError(404, "NotFound", path)
            return copy.deepcopy(self.lease)
        if method == "POST":
            if self.lease is not None:
                raise ConflictError(409, "AlreadyExists", path)
        elif method == "PUT":
            assert self.lease is not None
            if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
                raise ConflictError(409, "Conflict", path)
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def elector(api: FakeLeases, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(
        api,  # type: ignore[arg-type]  # the request method is all it uses
        namespace="ns",
        name="dgd-operator",
        identity=identity,
        lease_duration=10.0,
        renew_deadline=6.0,
        retry_period=0.001,
        clock=clock,
    )


async def test_one_replica_leads_a_standby_takes_over_after_a_silent_term() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert await a.try_acquire_or_renew() is True
    assert await b.try_acquire_or_renew() is False  # held, and b just saw it change
    clock.now = 9.0
    assert await b.try_acquire_or_renew() is False
    assert await a.try_acquire_or_renew() is True  # a renews: a new term for b's eyes
    clock.now = 18.0
    assert await b.try_acquire_or_renew() is False  # b first sees the renewal now
    clock.now = 27.9  # a died after that renewal; its term runs from when b saw it
    assert await b.try_acquire_or_renew() is False
    clock.now = 28.0
    assert await b.try_acquire_or_renew() is True
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1


async def test_racing_replicas_never_both_win() -> None:
    api, clock = FakeLeases(), Clock()
    electors = [elector(api, name, clock) for name in "abcd"]
    results = await asyncio.gather(*(e.try_acquire_or_renew() for e in electors))
    assert sum(results) == 1
    [winner] = [e for e, won in zip(electors, results, strict=True) if won]
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == winner.identity


async def test_release_hands_over_at_once() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    await a.acquire()
    assert await b.try_acquire_or_renew() is False
    await a.release()
    assert a.is_leader is False
    assert await b.try_acquire_or_renew() is True  # no waiting out a's term


async def test_the_leader_gives_up_when_it_cannot_renew_within_the_deadline() -> None:
    api, clock = FakeLeases(), Clock()
    a = elector(api, "a", clock)
    await a.acquire()
    api.down = True
    holding = asyncio.create_task(a.hold())
    await asyncio.sleep(0.01)
    assert not holding.done()  # failed renewals within the deadline are retried
    clock.now = 6.0
    with pytest.raises(LeadershipLostError, match="renewals failed"):
        await asyncio.wait_for(holding, 5)
    assert a.is_leader is False


async def test_the_leader_stops_at_once_when_another_replica_took_the_lease() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    await a.acquire()
    assert api.lease is not None
    api.lease["spec"]["holderIdentity"] = "b"  # e.g. a was paused past its term
    with pytest.raises(LeadershipLostError, match="another replica"):
        await asyncio.wait_for(a.hold(), 5)
    assert b.identity == api.lease["spec"]["holderIdentity"]


def test_timings_must_nest() -> None:
    with pytest.raises(SettingsError, match="RENEW_DEADLINE"):
        LeaderElectionSettings(lease_duration=5, renew_deadline=5)
    with pytest.raises(SettingsError, match="RETRY_PERIOD"):
        LeaderElectionSettings(renew_deadline=2, retry_period=2)
    settings = load_settings(
        {"DGD_LEADER_ELECTION_ENABLED": "true", "DGD_WATCH_NAMESPACES": "team-b,team-a"}
    )
    assert settings.leader_election.enabled and settings.lease_namespace == "team-a"
    assert load_settings({}).lease_namespace == "default"
