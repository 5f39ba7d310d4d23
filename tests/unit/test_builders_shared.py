"""Namespace-wide objects and Event manifests (pure builders)."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography.hazmat.primitives import serialization

from dgd_operator.builders.shared import event_manifest, mpi_ssh_secret, shared_account_objects

pytestmark = pytest.mark.unit


def test_mpi_ssh_secret_holds_an_openssh_key_pair() -> None:

    secret = mpi_ssh_secret("ns", "mpi-run-ssh-secret", bits=1024)
    assert secret["metadata"] == {
        "name": "mpi-run-ssh-secret",
        "namespace": "ns",
        "labels": {"app.kubernetes.io/managed-by": "dgd-operator"},
    }
    private = base64.b64decode(secret["data"]["private.key"])
    public = base64.b64decode(secret["data"]["private.key.pub"])
    key = serialization.load_ssh_private_key(private, password=None)
    assert public.split()[0] == b"ssh-rsa"
    assert key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ) == b" ".join(public.split()[:2])


@pytest.mark.parametrize(
    ("cluster_role", "kinds"),
    [(None, ["ServiceAccount"]), ("planner-role", ["ServiceAccount", "RoleBinding"])],
    ids=["no-role", "bound-to-cluster-role"],
)
def test_shared_account_objects_carry_no_owner_and_no_graph_label(
    cluster_role: str | None, kinds: list[str]
) -> None:
    objects = shared_account_objects("ns", "planner-serviceaccount", cluster_role)
    assert [o["kind"] for o in objects] == kinds
    for obj in objects:
        assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "dgd-operator"}
        assert "ownerReferences" not in obj["metadata"]
    if cluster_role:
        assert objects[1]["roleRef"]["name"] == cluster_role
        assert objects[1]["subjects"] == [
            {"kind": "ServiceAccount", "name": "planner-serviceaccount", "namespace": "ns"}
        ]


def test_event_manifest_names_the_involved_object_and_cuts_long_messages() -> None:
    involved = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "g", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
    }
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    event = event_manifest(
        involved, "Warning", "InvalidSpec", "x" * 2000, instance="pod-1", now=now
    )
    assert event["metadata"] == {"generateName": "g.", "namespace": "ns"}
    assert event["involvedObject"] == {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "name": "g",
        "namespace": "ns",
        "uid": "u1",
        "resourceVersion": "7",
    }
    assert (event["type"], event["reason"], len(event["message"])) == (
        "Warning",
        "InvalidSpec",
        1024,
    )
    assert (event["firstTimestamp"], event["eventTime"]) == (
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.678000Z",
    )
    assert event["reportingComponent"] == "dgd-operator" and event["reportingInstance"] == "pod-1"
