"""The webhook server inside the operator: its certificate, and who tells the API server.

`Admission(settings, client)` picks the certificate and the registration from the settings:

* `cert_dir` (cert-manager or any mounted Secret): serve those files; the chart registers the
  configurations and cert-manager's injector writes their caBundle.
* `secret_name` (the chart's default): the operator issues the certificate into that Secret,
  re-checks it every `rotation_check` seconds (rotating it before expiry) and writes its CA
  into the chart's configurations and the CRDs' conversion webhook (pointed at its Service);
  then objects still stored in an old version are migrated (`migration`).
* neither (local runs): an in-memory certificate for the listening host; with `managed` the
  operator registers URL-based configurations itself and deletes them when it stops.

It runs beside kopf, not inside it: conversion must answer while the operator has no leader
role (or before kopf is up at all), since every read of a DGD at another version needs it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from dgd_operator.admission.certificates import (
    CRD_PATH,
    MUTATING_PATH,
    VALIDATING_PATH,
    SecretCertificates,
    dns_names,
    inject_ca_bundle,
    write_self_signed,
)
from dgd_operator.admission.migration import migrate_stored_versions
from dgd_operator.admission.review import AdmissionPolicy
from dgd_operator.admission.server import CertificateFiles, WebhookServer
from dgd_operator.admission.webhooks import (
    CONVERT_PATH,
    DGD_WEBHOOK_ID,
    DGDSA_WEBHOOK_ID,
    MUTATE_DGD_WEBHOOK_ID,
    review_handlers,
)
from dgd_operator.api.constants import (
    API_GROUP,
    API_VERSION,
    API_VERSION_V1BETA1,
    DGD_PLURAL,
    DGDSA_PLURAL,
    INFERENCE_POOL_GROUP_VERSION,
    MANAGED_BY,
)
from dgd_operator.controllerkit.kube import KubeClient
from dgd_operator.controllerkit.kubeapi import ApiError, NotFoundError
from dgd_operator.reconcile.steps.inference_pool import serves_inference_pools
from dgd_operator.settings import OperatorSettings, SettingsError

log = logging.getLogger(__name__)

# Name of the configurations the operator registers in local runs; webhook names end with it.
MANAGED_CONFIGURATION: Final = "dgd-operator.nvidia.com"
WEBHOOK_NAME_SUFFIX: Final = "dgd-operator.nvidia.com"
CRD_NAMES: Final = (f"{DGD_PLURAL}.{API_GROUP}", f"{DGDSA_PLURAL}.{API_GROUP}")
ROTATION_CHECK: Final = 3600.0
# How often each replica re-reads the shared certificate Secret (another may have rotated it).
SECRET_CHECK: Final = 30.0

ClientConfig = Callable[[str], dict[str, Any]]


def url_client_config(base_url: str, ca_bundle: str) -> ClientConfig:
    """`clientConfig` factory for a webhook reached by URL (`https://host:port`)."""
    return lambda path: {"url": f"{base_url}{path}", "caBundle": ca_bundle}


def configurations(
    name: str,
    client_config: ClientConfig,
    *,
    failure_policy: str = "Fail",
    timeout_seconds: int = 10,
    object_selector: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The ValidatingWebhookConfiguration and MutatingWebhookConfiguration `name`, as data.

    Rules list both API versions: while the CRDs serve v1alpha1 only a request reaches the
    webhook at v1alpha1, once they serve v1beta1 too each request arrives at its own version
    (the reviews read both, so nothing is converted twice).
    """
    versions = [API_VERSION, API_VERSION_V1BETA1]

    def hook(webhook_id: str, plural: str) -> dict[str, Any]:
        hook: dict[str, Any] = {
            "name": f"{webhook_id}.{WEBHOOK_NAME_SUFFIX}",
            "admissionReviewVersions": ["v1"],
            "clientConfig": client_config(f"/{webhook_id}"),
            "rules": [
                {
                    "apiGroups": [API_GROUP],
                    "apiVersions": versions,
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [plural],
                    "scope": "Namespaced",
                }
            ],
            "failurePolicy": failure_policy,
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": timeout_seconds,
        }
        if object_selector:
            hook["objectSelector"] = dict(object_selector)
        return hook

    api = "admissionregistration.k8s.io/v1"
    mutating = hook(MUTATE_DGD_WEBHOOK_ID, DGD_PLURAL)
    mutating["reinvocationPolicy"] = "Never"
    return [
        {
            "apiVersion": api,
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
            "webhooks": [hook(DGD_WEBHOOK_ID, DGD_PLURAL), hook(DGDSA_WEBHOOK_ID, DGDSA_PLURAL)],
        },
        {
            "apiVersion": api,
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
            "webhooks": [mutating],
        },
    ]


def conversion_client_config(client_config: ClientConfig) -> dict[str, Any]:
    """A CRD's `spec.conversion` sending ConversionReviews to our `/convert`."""
    return {
        "strategy": "Webhook",
        "webhook": {
            "conversionReviewVersions": ["v1"],
            "clientConfig": client_config(CONVERT_PATH),
        },
    }


def _collection(kind: str) -> str:
    return {
        "ValidatingWebhookConfiguration": VALIDATING_PATH,
        "MutatingWebhookConfiguration": MUTATING_PATH,
        "CustomResourceDefinition": CRD_PATH,
    }[kind]


def public_host(settings: OperatorSettings) -> str:
    """The host the API server dials for an operator-registered webhook."""
    if settings.webhook.host:
        return settings.webhook.host
    try:
        unspecified = ipaddress.ip_address(settings.bind_address).is_unspecified
    except ValueError:
        unspecified = False
    return "127.0.0.1" if unspecified else settings.bind_address


class Admission:
    """The operator's webhook server with its certificate and registration (module docstring)."""

    def __init__(
        self,
        settings: OperatorSettings,
        client: KubeClient | None = None,
        *,
        configuration_name: str = MANAGED_CONFIGURATION,
        object_selector: Mapping[str, Any] | None = None,
        rotation_check: float = ROTATION_CHECK,
        secret_check: float = SECRET_CHECK,
        crds: Sequence[str] = CRD_NAMES,
    ) -> None:
        self.settings = settings
        self.client = client
        self.configuration_name = configuration_name
        self.object_selector = object_selector
        self.rotation_check = rotation_check
        self.secret_check = secret_check
        self.crds = tuple(crds)
        webhook = settings.webhook
        if webhook.secret_name and not (webhook.namespace and webhook.service_name):
            raise SettingsError(
                "DGD_WEBHOOK_SECRET_NAME needs DGD_WEBHOOK_NAMESPACE and DGD_WEBHOOK_SERVICE_NAME"
            )
        self.inference_pools = ApiPresence(f"/apis/{INFERENCE_POOL_GROUP_VERSION}")
        self.policy = AdmissionPolicy(
            operator_username=webhook.operator_username,
            topology_keys=settings.topology_keys(),
            inference_pool_api=self.inference_pools.get,
        )
        self._discovery: asyncio.Task[None] | None = None
        self._tmp: Path | None = None
        self._rotation: asyncio.Task[None] | None = None
        self._registered: list[dict[str, Any]] = []
        self.server: WebhookServer | None = None

    def _client(self) -> KubeClient:
        if self.client is None:
            raise SettingsError("DGD_WEBHOOK_*: this webhook mode needs access to the API server")
        return self.client

    def _private_dir(self) -> Path:
        self._tmp = Path(tempfile.mkdtemp(prefix="dgd-webhook-"))
        return self._tmp

    async def _certificate(self) -> CertificateFiles:
        webhook = self.settings.webhook
        if webhook.cert_dir:
            files = CertificateFiles(Path(webhook.cert_dir))
            for required in (files.cert, files.key):
                if not required.is_file():
                    raise SettingsError(f"DGD_WEBHOOK_CERT_DIR: {required} does not exist")
            return files
        if webhook.secret_name:
            files = CertificateFiles(self._private_dir())
            (await self._secret().ensure()).write(files)
            return files
        return write_self_signed(self._private_dir(), [public_host(self.settings)])

    def _secret(self) -> SecretCertificates:
        webhook = self.settings.webhook
        assert webhook.secret_name and webhook.namespace and webhook.service_name  # __init__
        return SecretCertificates(
            self._client(),
            namespace=webhook.namespace,
            name=webhook.secret_name,
            hosts=dns_names(webhook.service_name, webhook.namespace),
            labels={"app.kubernetes.io/managed-by": MANAGED_BY},
        )

    async def start(self) -> None:
        """Issue or load the certificate, start serving, and register or inject the CA."""
        webhook = self.settings.webhook
        files = await self._certificate()
        handlers = review_handlers(self.policy, origin_version=webhook.origin_version)
        self.server = WebhookServer(
            handlers,
            files,
            host=self.settings.bind_address,
            port=webhook.port,
            reuse_port=webhook.reuse_port,
        )
        await self.server.start()
        if self.client is not None:
            self._discovery = asyncio.create_task(
                self.inference_pools.keep_fresh(self.client), name="webhook-discovery"
            )
        if webhook.is_managed:
            await self._register(files)
        elif webhook.secret_name or (webhook.namespace and webhook.service_name):
            # The chart's shapes: our Secret, or a mounted one (cert-manager) whose CA the
            # CRDs' conversion webhook needs too (cert-manager cannot inject into them here).
            await self._inject(files)
            # Conversion works from here on: objects an older release stored as v1alpha1 can
            # now be rewritten as v1beta1 (a no-op where storedVersions is already clean).
            await migrate_stored_versions(self._client(), self.crds)
            self._rotation = asyncio.create_task(self._rotate(files), name="webhook-rotation")

    async def _inject(self, files: CertificateFiles) -> int:
        webhook = self.settings.webhook
        names = [webhook.configuration_name] if webhook.configuration_name else []
        service = None
        if webhook.namespace and webhook.service_name:
            service = {
                "name": webhook.service_name,
                "namespace": webhook.namespace,
                "path": CONVERT_PATH,
                "port": 443,
            }
        trusted = files.ca if files.ca.is_file() else files.cert
        return await inject_ca_bundle(
            self._client(), trusted.read_bytes(),
            validating=names, mutating=names, crds=self.crds, conversion_service=service,
        )  # fmt: skip

    async def _rotate(self, files: CertificateFiles) -> None:
        # With several replicas one of them rotates the shared Secret (a new CA) and injects the
        # new caBundle; the others must serve the new pair soon after, or the API server's TLS
        # check fails through them. So the (small) Secret is read every `secret_check` seconds
        # and a changed pair is served at once; the (large) CRDs and configurations are read
        # only when the pair changed or every `rotation_check` seconds.
        injected = time.monotonic()
        while True:
            await asyncio.sleep(
                self.secret_check if self.settings.webhook.secret_name else self.rotation_check
            )
            try:
                changed = False
                if self.settings.webhook.secret_name:
                    pair = await self._secret().ensure()
                    changed = not files.cert.is_file() or files.cert.read_bytes() != pair.cert
                    pair.write(files)
                    if changed and self.server is not None:
                        self.server.load_certificate()
                        log.info("webhook server: serving the rotated certificate")
                if changed or time.monotonic() - injected >= self.rotation_check:
                    await self._inject(files)
                    injected = time.monotonic()
            except Exception:  # keep serving the current certificate; retry next round
                log.exception("webhook certificate check failed")

    async def _register(self, files: CertificateFiles) -> None:
        assert self.server is not None
        # A mounted pair without ca.crt is self-signed: the certificate is its own CA.
        trusted = files.ca if files.ca.is_file() else files.cert
        ca = base64.b64encode(trusted.read_bytes()).decode()
        base = f"https://{public_host(self.settings)}:{self.server.port}"
        docs = configurations(
            self.configuration_name,
            url_client_config(base, ca),
            failure_policy=self.settings.webhook.failure_policy,
            timeout_seconds=self.settings.webhook.timeout_seconds,
            object_selector=self.object_selector,
        )
        client = self._client()
        for doc in docs:
            path = f"{_collection(doc['kind'])}/{doc['metadata']['name']}"
            await client.request(
                "PATCH", path, verb="apply", resource=_collection(doc["kind"]).rsplit("/", 1)[1],
                params={"fieldManager": MANAGED_BY, "force": "true"}, body=doc,
                content_type="application/apply-patch+yaml",
            )  # fmt: skip
            self._registered.append(doc)
        log.info("webhook configurations %s registered at %s", self.configuration_name, base)

    async def stop(self) -> None:
        """Unregister what `start` registered, stop serving, forget the private files."""
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
            self._discovery = None
        if self._rotation is not None:
            self._rotation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotation
            self._rotation = None
        client = self.client
        while self._registered and client is not None:
            doc = self._registered.pop()
            path = f"{_collection(doc['kind'])}/{doc['metadata']['name']}"
            with contextlib.suppress(NotFoundError):
                await client.request("DELETE", path, verb="delete", resource=path.rsplit("/", 2)[1])
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class ApiPresence:
    """Whether the API server serves a resource group (`/apis/<group>/<version>` lists
    InferencePools), re-discovered every `recheck` seconds for the admission warnings."""

    def __init__(self, path: str, recheck: float = 60.0) -> None:
        self.path = path
        self.recheck = recheck
        self.served: bool | None = None
        """None until the first discovery answered (no warning while unknown)."""

    def get(self) -> bool | None:
        """The last discovery's answer."""
        return self.served

    async def refresh(self, client: KubeClient) -> None:
        """Ask discovery once; on an API error keep the last answer."""
        try:
            self.served = serves_inference_pools(await client.discover(self.path))
        except ApiError as exc:
            log.debug("discovery of %s failed: %s", self.path, exc)

    async def keep_fresh(self, client: KubeClient) -> None:
        """Refresh now and then every `recheck` seconds, until cancelled."""
        while True:
            await self.refresh(client)
            await asyncio.sleep(self.recheck)
