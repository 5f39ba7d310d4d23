"""Every replica serves a certificate another replica rotated into the shared Secret promptly,
and reads the large CRDs and configurations only when the pair changed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dgd_operator.admission import certificates
from dgd_operator.admission.server import CertificateFiles
from dgd_operator.admission.service import Admission
from dgd_operator.settings import OperatorSettings, WebhookSettings

pytestmark = pytest.mark.unit

HOSTS = ["dgd-webhook.dgd-system.svc"]


class SharedSecret:
    """The Secret as `SecretCertificates.ensure` returns it; `pair` changes when rotated."""

    def __init__(self) -> None:
        self.pair = certificates.issue(HOSTS)

    async def ensure(self) -> certificates.CertificatePair:
        return self.pair


class Server:
    def __init__(self) -> None:
        self.loads = 0

    def load_certificate(self) -> bool:
        self.loads += 1
        return True


async def test_a_pair_rotated_by_another_replica_is_served_and_injected_once(
    tmp_path: Path,
) -> None:
    settings = OperatorSettings(
        webhook=WebhookSettings(
            enabled=True, secret_name="tls", namespace="dgd-system", service_name="dgd-webhook"
        )
    )
    admission = Admission(settings, secret_check=0.01, rotation_check=3600)
    secret, server, injected = SharedSecret(), Server(), []
    files = CertificateFiles(tmp_path)
    secret.pair.write(files)

    async def inject(files: CertificateFiles) -> int:
        injected.append(files.ca.read_bytes())
        return 1

    admission._secret = lambda: secret  # type: ignore[assignment,return-value]
    admission._inject = inject  # type: ignore[method-assign]
    admission.server = server  # type: ignore[assignment]
    rotating = asyncio.create_task(admission._rotate(files))
    try:
        await asyncio.sleep(0.1)
        assert (server.loads, injected) == (0, [])  # unchanged: nothing reloaded or read
        secret.pair = certificates.issue(HOSTS)  # another replica rotated it (a new CA)
        await asyncio.sleep(0.1)
    finally:
        rotating.cancel()
        await asyncio.gather(rotating, return_exceptions=True)
    assert server.loads == 1
    assert injected == [secret.pair.ca]
    assert files.cert.read_bytes() == secret.pair.cert
