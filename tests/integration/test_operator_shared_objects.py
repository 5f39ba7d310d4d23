"""Namespace-wide objects no graph owns come back when deleted, without an operator restart.

The planner ServiceAccount is watched: its deletion alone brings it back. The MPI SSH Secret is
not watched (Secrets are too many and too sensitive); a lookup is trusted for a while
(`ControllerState.shared_checked`), so the first reconcile after that re-creates it. Both
failed on the operator before `reconcile/state.py`, which remembered them per process.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.fixtures.catalog import dgd_documents, graph_path
from tests.helpers import wait_for
from tests.integration.operator_harness import dgd_path, running_operator, settled

from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.reconcile.state import ControllerState

pytestmark = pytest.mark.integration


def _first_dgd(file: str) -> dict[str, Any]:
    return copy.deepcopy(dgd_documents(graph_path(file))[0])


def test_shared_objects_recreated(control_plane: ControlPlane, namespace: str) -> None:
    rest = control_plane.rest
    planner = _first_dgd("vllm-planner")
    multinode = _first_dgd("vllm-multinode-ray")
    account = f"/api/v1/namespaces/{namespace}/serviceaccounts/planner-serviceaccount"
    secret = f"/api/v1/namespaces/{namespace}/secrets/mpi-run-ssh-secret"
    # A short trust period stands in for the production one (minutes).
    with running_operator(
        namespace, controller_options={"state": ControllerState(recheck_after=0.5)}
    ):
        for doc in (planner, multinode):
            rest.post(dgd_path(namespace), doc)
        for doc in (planner, multinode):
            name = doc["metadata"]["name"]
            wait_for(
                lambda n=name: settled(rest, namespace, n),
                timeout=90,
                description=f"{name} successful",
            )
        old_account = rest.get(account)["metadata"]["uid"]
        old_secret = rest.get(secret)["metadata"]["uid"]

        # The watch reports the deletion; the planner graph is reconciled and the account re-created.
        rest.delete(account)
        wait_for(
            lambda: rest.get(account)["metadata"]["uid"] != old_account,
            timeout=30,
            description="planner ServiceAccount re-created",
        )

        # Nothing watches the Secret: any later reconcile of a multinode graph re-creates it.
        rest.delete(secret)
        pokes = iter(range(1_000_000))

        def recreated() -> bool:
            if rest.exists(secret):
                return bool(rest.get(secret)["metadata"]["uid"] != old_secret)
            # An annotation only this test reads: a DGD event, no change to any child.
            rest.patch(
                dgd_path(namespace, multinode["metadata"]["name"]),
                {"metadata": {"annotations": {"test.dgd.dev/poke": str(next(pokes))}}},
            )
            return False

        wait_for(recreated, timeout=30, interval=0.3, description="MPI SSH Secret re-created")
