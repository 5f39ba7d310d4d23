"""Namespace-wide objects shared by every graph of a namespace, and Event manifests (pure).

- The planner and endpoint-picker ServiceAccounts (with a RoleBinding to a configured
  ClusterRole) that planner/EPP pods run as. They carry no owner and no graph label: one graph
  going away must not take them from the others.
- The MPI SSH key Secret TensorRT-LLM multinode pods mount at `/ssh-pk`. Dynamo's operator
  generates one RSA key pair per namespace when any service is multinode; the leader's mpirun
  logs in to the workers' sshd with it. Keys `private.key` (OpenSSH private key) and
  `private.key.pub` (`ssh-rsa ...`), as the launch scripts expect.
- The Event manifest the controller posts about a graph.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dgd_operator.api.constants import LABEL_MANAGED_BY, MANAGED_BY

Manifest = dict[str, Any]

RSA_KEY_BITS = 3072
EVENT_MESSAGE_LIMIT = 1024


def shared_account_objects(
    namespace: str, account: str, cluster_role: str | None
) -> list[Manifest]:
    """A namespace-wide ServiceAccount and, when a ClusterRole is configured, its RoleBinding."""
    labels = {LABEL_MANAGED_BY: MANAGED_BY}
    objects: list[Manifest] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace, "labels": dict(labels)},
        }
    ]
    if cluster_role:
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {
                    "name": f"{account}-binding",
                    "namespace": namespace,
                    "labels": dict(labels),
                },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": cluster_role,
                },
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
            }
        )
    return objects


def ssh_key_pair(bits: int = RSA_KEY_BITS) -> tuple[bytes, bytes]:
    """A fresh RSA key pair: (OpenSSH private key PEM, `ssh-rsa AAAA... dgd-operator` line)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public + b" dgd-operator\n"


def mpi_ssh_secret(namespace: str, name: str, *, bits: int = RSA_KEY_BITS) -> Manifest:
    """The Secret manifest with a newly generated key pair (CPU-heavy: run it off the loop)."""
    private, public = ssh_key_pair(bits)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY},
        },
        "type": "Opaque",
        "data": {
            "private.key": base64.b64encode(private).decode(),
            "private.key.pub": base64.b64encode(public).decode(),
        },
    }


def event_manifest(
    involved: Mapping[str, Any],
    type_: str,
    reason: str,
    message: str,
    *,
    instance: str,
    now: datetime.datetime,
    component: str = MANAGED_BY,
) -> Manifest:
    """A core/v1 Event about `involved` (a live object), reported by `component` on `instance`.

    `generateName` gives every Event its own name; the message is cut to the API's limit.
    """
    meta = involved.get("metadata") or {}
    micro = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    seconds = micro[:19] + "Z"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:EVENT_MESSAGE_LIMIT],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance,
        "firstTimestamp": seconds,
        "lastTimestamp": seconds,
        "eventTime": micro,
        "action": reason,
        "count": 1,
    }
