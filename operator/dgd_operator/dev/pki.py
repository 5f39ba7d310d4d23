"""Certificates and keys for the local control plane.

One throwaway CA signs the kube-apiserver serving certificate (127.0.0.1, localhost and the
in-cluster ``kubernetes`` names) and an admin client certificate in group ``system:masters``.
A separate key signs service-account tokens. ECDSA P-256 keys keep generation to milliseconds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from dgd_operator import certs

_VALIDITY_DAYS = 3650


@dataclasses.dataclass(frozen=True)
class Pki:
    """Paths of the PEM files written by :func:`generate`."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def generate(directory: Path, service_ip: str = "10.96.0.1") -> Pki:
    """Write a CA, serving and admin certificates and a service-account key into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )
    ca = certs.certificate_authority("dgd-dev-ca", days=_VALIDITY_DAYS)
    ca.write(pki.ca_cert, pki.ca_key)
    hosts = ["127.0.0.1", service_ip, "localhost", "kubernetes", "kubernetes.default",
             "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]  # fmt: skip
    certs.serving_certificate(
        hosts, issuer=ca, days=_VALIDITY_DAYS, common_name="kube-apiserver"
    ).write(pki.serving_cert, pki.serving_key)
    certs.client_certificate(
        "dgd-dev-admin", organization="system:masters", issuer=ca, days=_VALIDITY_DAYS
    ).write(pki.admin_cert, pki.admin_key)

    sa_key = certs.new_key()
    certs.write_private(
        pki.sa_key,
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki
