"""The webhook's certificates are the operator's job: issue, keep, rotate, and tell the API server.

* `write_self_signed` issues a CA and a serving certificate into a directory (local runs and
  the standalone server).
* `SecretCertificates` keeps them in a `kubernetes.io/tls` Secret of the operator's namespace:
  the first replica to start creates it, every replica reads it (so they all serve the same
  certificate), and a replica that finds it near expiry issues a new pair (optimistic update,
  so two replicas cannot both rotate). A Helm chart therefore renders no certificate at all,
  and `helm template` is deterministic.
* `inject_ca_bundle` writes the CA into the webhook configurations and the CRDs' conversion
  webhook: a patch of just `caBundle` (JSON patch guarded by `test`s for the webhook lists,
  merge patch for a CRD), sent only when the stored value differs, so a restart with nothing
  to change writes nothing.

cert-manager stays an option: with a mounted certificate directory none of this runs.
"""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from dgd_operator import certs
from dgd_operator.admission.server import CA_FILE, CERT_FILE, KEY_FILE, CertificateFiles
from dgd_operator.controllerkit.kube import KubeClient
from dgd_operator.controllerkit.kubeapi import ConflictError, NotFoundError

log = logging.getLogger(__name__)

CA_DAYS: Final = 3650
SERVING_DAYS: Final = 365
# Issue a new certificate once less than this is left (also when the CA is that close).
ROTATE_BEFORE: Final = datetime.timedelta(days=30)
# Field manager of the caBundle writes (its own, so its field is told apart from the chart's).
CA_INJECTOR: Final = "dgd-operator-ca-injector"

VALIDATING_PATH: Final = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MUTATING_PATH: Final = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
CRD_PATH: Final = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@dataclass(frozen=True)
class CertificatePair:
    """PEM bytes of a CA, a serving certificate it signed, and the serving key."""

    ca: bytes
    cert: bytes
    key: bytes

    def write(self, files: CertificateFiles) -> None:
        """Write the three files (the key readable by the owner only), unchanged files untouched."""
        files.directory.mkdir(parents=True, exist_ok=True)
        for path, data in ((files.ca, self.ca), (files.cert, self.cert)):
            if not path.is_file() or path.read_bytes() != data:
                path.write_bytes(data)
        if not files.key.is_file() or files.key.read_bytes() != self.key:
            certs.write_private(files.key, self.key)


def issue(hosts: Sequence[str], *, common_name: str = "dgd-operator-webhook") -> CertificatePair:
    """A fresh CA and a serving certificate for `hosts` (DNS names and IPs)."""
    authority = certs.certificate_authority(f"{common_name}-ca", days=CA_DAYS)
    serving = certs.serving_certificate(hosts, days=SERVING_DAYS, issuer=authority)
    return CertificatePair(authority.cert_pem(), serving.cert_pem(), serving.key_pem())


def write_self_signed(directory: Path, hosts: Sequence[str]) -> CertificateFiles:
    """Issue a pair for `hosts` into `directory` unless a usable one is already there."""
    files = CertificateFiles(directory)
    if files.cert.is_file() and files.key.is_file() and files.ca.is_file():
        pair = CertificatePair(
            files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes()
        )
        if usable(pair, hosts):
            return files
    issue(hosts).write(files)
    return files


def dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for a webhook Service (`<svc>.<ns>.svc` is the one)."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def usable(
    pair: CertificatePair, hosts: Iterable[str], *, now: datetime.datetime | None = None
) -> bool:
    """Whether `pair` parses, covers every host and is not due for rotation."""
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        cert = x509.load_pem_x509_certificate(pair.cert)
        ca = x509.load_pem_x509_certificate(pair.ca)
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    covered = {str(n.value) for n in sans}
    wanted = {str(n.value) for n in certs.alternative_names(hosts)}
    deadline = now + ROTATE_BEFORE
    return (
        wanted <= covered
        and cert.not_valid_after_utc > deadline
        and ca.not_valid_after_utc > deadline
        and b"PRIVATE KEY" in pair.key
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pair_of(secret: Mapping[str, Any] | None) -> CertificatePair | None:
    data = (secret or {}).get("data") or {}
    try:
        return CertificatePair(
            base64.b64decode(data[CA_FILE]),
            base64.b64decode(data[CERT_FILE]),
            base64.b64decode(data[KEY_FILE]),
        )
    except (KeyError, ValueError, TypeError):
        return None


class SecretCertificates:
    """The serving certificate kept in Secret `name` of `namespace` (see the module docstring)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        hosts: Sequence[str],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.hosts = list(hosts)
        self.labels = dict(labels or {})

    def _manifest(self, pair: CertificatePair, resource_version: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.labels:
            metadata["labels"] = self.labels
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": metadata,
            "data": {CA_FILE: _b64(pair.ca), CERT_FILE: _b64(pair.cert), KEY_FILE: _b64(pair.key)},
        }

    async def ensure(self) -> CertificatePair:
        """The current pair from the Secret; created, or rotated when due (one write at most)."""
        for _ in range(3):
            secret = await self.client.get("v1", "Secret", self.namespace, self.name)
            pair = _pair_of(secret)
            if pair is not None and usable(pair, self.hosts):
                return pair
            fresh = issue(self.hosts)
            path = f"/api/v1/namespaces/{self.namespace}/secrets"
            try:
                if secret is None:
                    await self.client.request(
                        "POST", path, verb="create", resource="secrets",
                        body=self._manifest(fresh, None),
                    )  # fmt: skip
                else:
                    version = secret["metadata"]["resourceVersion"]
                    await self.client.request(
                        "PUT", f"{path}/{self.name}", verb="update", resource="secrets",
                        body=self._manifest(fresh, version),
                    )  # fmt: skip
            except ConflictError:
                continue  # another replica wrote it first: use theirs
            log.info("webhook certificate issued into Secret %s/%s", self.namespace, self.name)
            return fresh
        raise RuntimeError(f"Secret {self.namespace}/{self.name} keeps changing under us")


def _conversion_config(live: Mapping[str, Any]) -> dict[str, Any] | None:
    """The CRD's conversion webhook clientConfig, None when it does not convert by webhook."""
    conversion = (live.get("spec") or {}).get("conversion") or {}
    if conversion.get("strategy") != "Webhook":
        return None
    config: dict[str, Any] = (conversion.get("webhook") or {}).get("clientConfig") or {}
    return config


def _bundle_patch(
    live: Mapping[str, Any], bundle: str, service: Mapping[str, Any] | None
) -> tuple[str, Any] | None:
    """(content type, body) of the patch bringing `live` to `bundle` (and, for a CRD, to
    `service`), None when it already is; JSON patches are guarded by `test`s where they index."""
    if "webhooks" in live:
        ops: list[dict[str, Any]] = []
        for index, hook in enumerate(live["webhooks"]):
            if (hook.get("clientConfig") or {}).get("caBundle") == bundle:
                continue
            ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": hook["name"]})
            ops.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": bundle}
            )
        return ("application/json-patch+json", ops) if ops else None
    config = _conversion_config(live)
    if config is None:
        return None
    desired: dict[str, Any] = {"caBundle": bundle}
    if service is not None:
        desired["service"] = dict(service)
        if "url" in config:
            desired["url"] = None  # a service and a URL are exclusive
    if all(config.get(key) == value for key, value in desired.items()):
        return None
    merge = {"spec": {"conversion": {"webhook": {"clientConfig": desired}}}}
    return "application/merge-patch+json", merge


async def inject_ca_bundle(
    client: KubeClient,
    ca: bytes,
    *,
    validating: Iterable[str] = (),
    mutating: Iterable[str] = (),
    crds: Iterable[str] = (),
    conversion_service: Mapping[str, Any] | None = None,
) -> int:
    """Write `ca` as the caBundle of the named configurations and CRDs; returns the writes made.

    A CRD's conversion webhook is also pointed at `conversion_service` (`name`, `namespace`,
    `path`, `port`) when given: the CRD files name the chart's default release, the operator
    knows the Service it actually runs behind. Missing objects are skipped (a chart may disable
    a webhook); CRDs without a conversion webhook are left alone.
    """
    bundle = _b64(ca)
    targets = [
        *((VALIDATING_PATH, "ValidatingWebhookConfiguration", n) for n in validating),
        *((MUTATING_PATH, "MutatingWebhookConfiguration", n) for n in mutating),
        *((CRD_PATH, "CustomResourceDefinition", n) for n in crds),
    ]
    writes = 0
    for collection, kind, name in targets:
        resource = collection.rsplit("/", 1)[1]
        try:
            live = await client.request(
                "GET", f"{collection}/{name}", verb="get", resource=resource
            )
        except NotFoundError:
            log.warning("caBundle: %s %s does not exist", kind, name)
            continue
        wanted = _bundle_patch(live, bundle, conversion_service)
        if wanted is None:
            continue
        content_type, patch = wanted
        await client.request(
            "PATCH", f"{collection}/{name}", verb="patch", resource=resource,
            params={"fieldManager": CA_INJECTOR}, body=patch, content_type=content_type,
        )  # fmt: skip
        writes += 1
        log.info("webhook caBundle written into %s %s", kind, name)
    return writes
