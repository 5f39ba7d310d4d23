"""X.509 certificates for TLS servers and clients: a CA, serving and client certificates.

Used by the admission webhook (a self-signed serving certificate when none is mounted) and by
the local control plane's PKI (`dgd_operator.dev.pki`). Keys are ECDSA P-256, which keeps
generation to milliseconds and which every Kubernetes component accepts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Clocks of the API server and of this process may disagree a little.
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: str | None = None) -> bytes:
        """The private key as PKCS#8 PEM, encrypted when `password` is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write the certificate, and the key readable by the owner only."""
        cert_path.write_bytes(self.cert_pem())
        write_private(key_path, self.key_pem())


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from the start (never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def distinguished_name(common_name: str, organization: str | None = None) -> x509.Name:
    """A subject name; Kubernetes reads the organization of a client certificate as its group."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def alternative_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """Subject alternative names: an IP entry for addresses, a DNS entry for the rest.

    Unspecified addresses (`0.0.0.0`, `::`) are skipped: nobody connects to them.
    """
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names.append(x509.DNSName(host))
            continue
        if not ip.is_unspecified:
            names.append(x509.IPAddress(ip))
    return names


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def certificate_authority(common_name: str, *, days: int) -> Issued:
    """A self-signed CA that may sign leaf certificates (not other CAs)."""
    key = new_key()
    name = distinguished_name(common_name)
    certificate = (
        _builder(name, name, key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def serving_certificate(
    hosts: Iterable[str], *, days: int, issuer: Issued | None = None, common_name: str = ""
) -> Issued:
    """A TLS server certificate for every host name and IP in `hosts`.

    With an `issuer` (a CA) it is signed by it. Without one it is self-signed and its own CA,
    so it can be handed out as the trust bundle itself (a webhook configuration's caBundle):
    the API server accepts a trusted root presented as the serving certificate.
    """
    hosts = list(hosts)
    sans = alternative_names(hosts)
    dns = [n.value for n in sans if isinstance(n, x509.DNSName)]
    ips = [str(n.value) for n in sans if isinstance(n, x509.IPAddress)]
    subject = distinguished_name(common_name or next(iter(dns + ips), "dgd-operator"))
    key = new_key()
    builder = _builder(subject, issuer.certificate.subject if issuer else subject, key, days)
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(_key_usage(signs_certificates=True), critical=True)
    certificate = (
        builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return Issued(certificate, key)


def client_certificate(
    common_name: str, *, issuer: Issued, days: int, organization: str | None = None
) -> Issued:
    """A TLS client certificate signed by `issuer` (user `common_name`, group `organization`)."""
    key = new_key()
    certificate = (
        _builder(
            distinguished_name(common_name, organization), issuer.certificate.subject, key, days
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return Issued(certificate, key)
