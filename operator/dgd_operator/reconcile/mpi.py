"""The MPI SSH key Secret TensorRT-LLM multinode pods mount at `/ssh-pk` (pure builder).

Dynamo's operator generates one RSA key pair per namespace when any service is multinode;
the leader's mpirun logs in to the workers' sshd with it. Keys `private.key` (OpenSSH private
key) and `private.key.pub` (`ssh-rsa ...`), as the launch scripts expect.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dgd_operator.reconcile.constants import LABEL_MANAGED_BY, MANAGED_BY

RSA_KEY_BITS = 3072


def ssh_key_pair(bits: int = RSA_KEY_BITS) -> tuple[bytes, bytes]:
    """A fresh RSA key pair: (OpenSSH private key PEM, `ssh-rsa AAAA... dgd-operator` line)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + b" dgd-operator\n"


def mpi_ssh_secret(namespace: str, name: str, *, bits: int = RSA_KEY_BITS) -> dict[str, Any]:
    """The Secret manifest with a newly generated key pair (CPU-heavy: run it off the loop)."""
    private, public = ssh_key_pair(bits)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
        "type": "Opaque",
        "data": {
            "private.key": base64.b64encode(private).decode(),
            "private.key.pub": base64.b64encode(public).decode(),
        },
    }
