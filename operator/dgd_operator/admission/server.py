"""The webhook's HTTPS server: a mounted certificate, or a self-signed one for local runs.

`configure_admission(kopf_settings, settings)` sets the server on kopf's settings: the
certificate from `DGD_WEBHOOK_CERT_DIR` (mounted by the Helm chart, which also registers the
webhook), or, when unset, a self-signed one that kopf registers itself in a
ValidatingWebhookConfiguration named `dgd-operator.nvidia.com`.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import kopf

from dgd_operator import certs
from dgd_operator.settings import OperatorSettings, SettingsError

# Name of the ValidatingWebhookConfiguration kopf manages in local runs; its webhooks are
# named `<handler id>.dgd-operator.nvidia.com`, like the chart's.
MANAGED_CONFIGURATION = "dgd-operator.nvidia.com"

# Files of a kubernetes.io/tls Secret (cert-manager adds ca.crt; the chart's own Secret too).
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"

SELF_SIGNED_DAYS = 365


class SelfSignedWebhookServer(kopf.WebhookServer):
    """kopf's HTTPS webhook server, generating its self-signed certificate with `cryptography`
    (kopf's own generator needs `certbuilder`, which we do not ship)."""

    @staticmethod
    def build_certificate(
        hostnames: Collection[str], password: str | None = None
    ) -> tuple[bytes, bytes]:
        """A self-signed certificate (its own CA) for `hostnames`; returns (cert, key) PEM."""
        issued = certs.serving_certificate(hostnames, days=SELF_SIGNED_DAYS)
        return issued.cert_pem(), issued.key_pem(password)


def webhook_server(settings: OperatorSettings) -> kopf.WebhookServer:
    """The HTTPS server: mounted certificate files, or a self-signed certificate."""
    webhook = settings.webhook
    common: dict[str, Any] = {
        "addr": settings.bind_address,
        "port": webhook.port,
        "host": webhook.host,
    }
    if webhook.cert_dir is None:
        return SelfSignedWebhookServer(**common)
    directory = Path(webhook.cert_dir)
    for required in (CERT_FILE, KEY_FILE):
        if not (directory / required).is_file():
            raise SettingsError(f"DGD_WEBHOOK_CERT_DIR: {directory / required} does not exist")
    ca = directory / CA_FILE
    # kopf re-reads the files every minute and restarts the server when they change, so a
    # certificate rotated by cert-manager (or a re-rendered Secret) is picked up.
    return kopf.WebhookServer(
        certfile=str(directory / CERT_FILE),
        pkeyfile=str(directory / KEY_FILE),
        cafile=str(ca) if ca.is_file() else None,
        **common,
    )


def configure_admission(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> bool:
    """Set kopf's admission server (and managed configuration) when the webhook is enabled.

    Returns whether it is enabled; call `register_admission` exactly when it is.
    """
    if not settings.webhook.enabled:
        return False
    kopf_settings.admission.server = webhook_server(settings)
    kopf_settings.admission.managed = MANAGED_CONFIGURATION if settings.webhook.is_managed else None
    return True
