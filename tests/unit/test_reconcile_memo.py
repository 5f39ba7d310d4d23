"""What a graph's memory saves a reconcile (validated spec, built children, their hashes), and
that it never saves a repair: level-based correctness holds with the memos warm."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.unit.reconcile_fakes import KEY, FakeKube, FakeView, bind, controller_for, deliver, owned
from tests.unit.reconcile_fakes import dgd as _dgd

from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.steps import build as build_step
from dgd_operator.reconcile.steps import observe as observe_step
from dgd_operator.reconcile.steps.observe import spec_fingerprint
from dgd_operator.reconcile.sync import DigestMemo, with_hash
from dgd_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


class Counted:
    """Counts the calls of validation and of the builders made by the reconcile steps."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.validations = 0
        self.builds = 0
        validate, plan = observe_step.validate_dgd, build_step.plan_graph

        def validate_dgd(*args: Any, **kwargs: Any) -> Any:
            self.validations += 1
            return validate(*args, **kwargs)

        def plan_graph(*args: Any, **kwargs: Any) -> Any:
            self.builds += 1
            return plan(*args, **kwargs)

        monkeypatch.setattr(observe_step, "validate_dgd", validate_dgd)
        monkeypatch.setattr(build_step, "plan_graph", plan_graph)


async def converged() -> tuple[Controller, FakeView, FakeKube]:
    """A graph whose children and status are in the watch cache, owned by it."""
    controller, view, client = controller_for(_dgd())
    await controller.reconcile(KEY)
    deliver(view, client, controller)
    owned(view)
    await controller.reconcile(KEY)
    client.calls.clear()
    client.events.clear()
    return controller, view, client


async def test_an_unchanged_graph_is_neither_validated_nor_built_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller, _, client = await converged()
    counted = Counted(monkeypatch)
    for _ in range(3):
        await controller.reconcile(KEY)
    assert (counted.validations, counted.builds) == (0, 0)
    assert client.writes() == []


async def test_a_spec_change_is_validated_built_and_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller, view, client = await converged()
    counted = Counted(monkeypatch)
    assert view.dgd_body is not None
    view.dgd_body["spec"]["services"]["Frontend"]["extraPodSpec"]["mainContainer"]["image"] = "fe:2"
    await controller.reconcile(KEY)
    assert (counted.validations, counted.builds) == (1, 1)
    assert client.written() == ["g-frontend"]


async def test_an_invalid_spec_after_a_valid_one_is_rejected_not_served_from_memory() -> None:
    controller, view, client = await converged()
    assert view.dgd_body is not None
    view.dgd_body["spec"]["services"]["worker"]["replicas"] = -1
    await controller.reconcile(KEY)
    assert client.event_reasons() == ["InvalidSpec"]
    assert client.written() == []


async def test_a_child_deleted_or_edited_is_repaired_with_the_memory_warm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller, view, client = await converged()
    counted = Counted(monkeypatch)
    deployment = next(k for k in view.objects if k[1] == "Deployment")
    service = next(k for k in view.objects if k[1] == "Service")
    del view.objects[service]
    controller.child_deleted("ns", service)
    edited = view.objects[deployment]
    edited["metadata"]["generation"] = int(edited["metadata"]["generation"]) + 1
    await controller.reconcile(KEY)
    assert (counted.validations, counted.builds) == (0, 0)
    assert sorted(client.written()) == sorted([deployment[2], service[2]])


def test_the_spec_fingerprint_ignores_status_and_what_every_write_bumps() -> None:
    body = _dgd()
    base = spec_fingerprint(body)
    written = copy.deepcopy(body)
    written["status"] = {"state": "successful"}
    written["metadata"]["resourceVersion"] = "2"
    written["metadata"]["managedFields"] = [{"manager": "dgd-operator"}]
    assert spec_fingerprint(written) == base
    labelled = copy.deepcopy(body)
    labelled["metadata"]["labels"] = {"team": "a"}
    assert spec_fingerprint(labelled) != base
    bumped = copy.deepcopy(body)
    bumped["metadata"]["generation"] = 2
    assert spec_fingerprint(bumped) != base


def test_the_digest_memo_remembers_only_the_manifests_of_its_build() -> None:
    built = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {}}
    memo = DigestMemo([built])
    first = memo(built)
    assert first == with_hash(built)
    assert memo(built) is first  # hashed once
    resized = {**built, "spec": {"replicas": 2}}
    assert memo(resized) == with_hash(resized)
    assert memo(resized) is not memo(resized)  # a copy made after the build is not kept


async def test_only_the_most_recently_reconciled_graphs_keep_their_memos() -> None:
    controller, _, _ = await converged()
    state = controller.state
    state.memo_capacity = 1
    memory = state.graphs[KEY]
    assert memory.spec is not None and memory.build is not None
    state.graph(("ns", "other"), "u2")
    state.memoised(("ns", "other"))
    assert memory.spec is None and memory.build is None
    state.forget(("ns", "other"))
    await controller.reconcile(KEY)  # validated and built again, and kept
    assert memory.spec is not None and memory.build is not None


async def test_a_graph_reconciled_once_keeps_no_memo() -> None:
    # After an operator start every graph is reconciled once: memos would only be garbage.
    _, view, _ = await converged()
    fresh = Controller(OperatorSettings(workers=1))
    bind(fresh, view, FakeKube())
    await fresh.reconcile(KEY)
    memory = fresh.state.graphs[KEY]
    assert memory.spec is None and memory.build is None and memory.seen_spec is not None
    await fresh.reconcile(KEY)
    assert memory.spec is not None and memory.build is not None
