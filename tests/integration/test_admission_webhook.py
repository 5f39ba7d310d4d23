"""The admission webhook behind a real kube-apiserver.

kopf serves the operator's admission handlers on 127.0.0.1 with a self-signed certificate and
manages a ValidatingWebhookConfiguration itself (URL client config + caBundle), exactly as
`dgd operator` does locally with `DGD_WEBHOOK_ENABLED=true`. The API server then calls it on
every DGD create and update: a graph the CRD schema accepts but Dynamo's rules refuse never
reaches etcd, and kubectl shows every problem with its field path.

The webhook is fail-closed, so it must never leak into other tests: its handlers (and thus the
configuration's objectSelector) match only objects labelled with this module's token, the
configuration has a name of its own, and it is deleted at the end even if kopf could not.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from tests.fixtures.dgd import DGD
from tests.helpers import wait_for

from dgd_operator import certs
from dgd_operator.admission import configure_admission, register_admission
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.rest import ApiError
from dgd_operator.handlers import kopf_settings
from dgd_operator.settings import OperatorSettings, WebhookSettings
from dgd_operator.tools.helm import ensure_kubectl

pytestmark = pytest.mark.integration

LABEL = "dgd.dev/webhook-test"
VWC_API = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
DGD_API = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/dynamographdeployments"
DGDSA_API = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/dynamographdeploymentscalingadapters"


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AdmissionServer:
    """kopf with only the admission handlers, in its own thread and event loop."""

    def __init__(
        self,
        token: str,
        configuration: str,
        *,
        cert_dir: Path | None = None,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.token = token
        self.configuration = configuration
        self.namespaces = namespaces
        self.operator_settings = OperatorSettings(
            bind_address="127.0.0.1",
            webhook=WebhookSettings(
                enabled=True,
                port=_free_port(),
                cert_dir=str(cert_dir) if cert_dir else None,
                managed=True,
                failure_policy="Fail",
            ),
        )
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dgd-admission", daemon=True)

    def _main(self) -> None:
        registry = kopf.OperatorRegistry()

        @kopf.on.login(registry=registry)
        def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
            return kopf.login_with_kubeconfig(**kwargs)

        settings = kopf_settings()
        assert configure_admission(settings, self.operator_settings)
        settings.admission.managed = self.configuration  # our own, deletable name
        register_admission(registry, self.operator_settings, labels={LABEL: self.token})
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    settings=settings,
                    standalone=True,
                    clusterwide=not self.namespaces,
                    namespaces=list(self.namespaces),
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                )
            )
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> None:
        """Start kopf and wait for its startup to finish."""
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("kopf did not become ready")
        if self._error is not None:
            raise RuntimeError("kopf failed to start") from self._error

    def stop(self) -> None:
        """Stop kopf (which empties its managed configuration) and join the thread."""
        self._stop.set()
        self._thread.join(30)
        if self._thread.is_alive():
            raise TimeoutError("kopf did not stop")
        if self._error is not None:
            raise RuntimeError("kopf crashed") from self._error


def dgd(name: str, token: str | None) -> dict[str, Any]:
    """A small valid graph, labelled for the test webhook when `token` is given."""
    labels = {LABEL: token} if token else {}
    graph = DGD(name).meta(labels=labels).backend("vllm").frontend().worker("decode").gpus(1)
    return graph.engine("vllm").build()


def invalid_dgd(name: str, token: str | None) -> dict[str, Any]:
    """Valid for the CRD schema and CEL rules, refused by Dynamo's admission rules."""
    doc = dgd(name, token)
    doc["metadata"]["annotations"] = {"nvidia.com/vllm-distributed-executor-backend": "foo"}
    doc["spec"]["services"]["decode"]["resources"]["limits"]["gpu"] = "0.5"
    return doc


def _denial(call: Any) -> ApiError | None:
    try:
        call()
    except ApiError as exc:
        return exc
    return None


@contextlib.contextmanager
def serving(
    control_plane: ControlPlane, probe_namespace: str, **options: Any
) -> Iterator[AdmissionServer]:
    """Run an `AdmissionServer` until the API server calls it; stop and unregister it after."""
    rest = control_plane.rest
    token = uuid.uuid4().hex[:10]
    server = AdmissionServer(token, f"{token}.webhook-test.dgd.dev", **options)
    try:
        server.start()
        # Registered when a dry-run create of an invalid graph is refused by our webhook (the
        # API server picks up a new configuration asynchronously).
        probe = invalid_dgd("probe", token)
        path = DGD_API.format(ns=probe_namespace)
        wait_for(
            lambda: _denial(lambda: rest.post(path, probe, dryRun="All")),
            timeout=60,
            interval=0.3,
            description="the API server to call the kopf-managed webhook",
        )
        yield server
    finally:
        try:
            server.stop()
        finally:
            # kopf empties its configuration on exit; delete it in any case (fail-closed!).
            with contextlib.suppress(ApiError):
                rest.delete(f"{VWC_API}/{server.configuration}")
            assert not rest.exists(f"{VWC_API}/{server.configuration}")


@pytest.fixture(scope="module")
def admission(control_plane: ControlPlane) -> Iterator[AdmissionServer]:
    """A self-signed admission server for the whole cluster, as `dgd operator` runs locally."""
    rest = control_plane.rest
    probe_ns = f"webhook-probe-{uuid.uuid4().hex[:8]}"
    rest.post("/api/v1/namespaces", {"metadata": {"name": probe_ns}})
    try:
        with serving(control_plane, probe_ns) as server:
            yield server
    finally:
        with contextlib.suppress(ApiError):
            rest.delete(f"/api/v1/namespaces/{probe_ns}")


def test_kopf_registers_a_fail_closed_url_webhook(
    control_plane: ControlPlane, admission: AdmissionServer
) -> None:
    config = control_plane.rest.get(f"{VWC_API}/{admission.configuration}")
    hooks = {hook["name"]: hook for hook in config["webhooks"]}
    assert set(hooks) == {
        f"validate-dgd.{admission.configuration}",
        f"validate-dgdsa.{admission.configuration}",
    }
    port = admission.operator_settings.webhook.port
    for name, hook in hooks.items():
        handler = name.split(".")[0]
        assert hook["clientConfig"]["url"] == f"https://127.0.0.1:{port}/{handler}"
        assert hook["clientConfig"]["caBundle"]
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["objectSelector"] == {
            "matchExpressions": [{"key": LABEL, "operator": "In", "values": [admission.token]}]
        }
        [rule] = hook["rules"]
        assert rule["apiGroups"] == ["nvidia.com"] and rule["apiVersions"] == ["v1alpha1"]
        assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
    assert hooks[f"validate-dgd.{admission.configuration}"]["rules"][0]["resources"] == [
        "dynamographdeployments"
    ]


def test_invalid_graph_is_rejected_by_the_api_server(
    control_plane: ControlPlane, admission: AdmissionServer, namespace: str
) -> None:
    rest = control_plane.rest
    with pytest.raises(ApiError) as info:
        rest.post(DGD_API.format(ns=namespace), invalid_dgd("bad", admission.token))
    error = info.value
    assert error.status == 403
    message = error.body["message"] if isinstance(error.body, dict) else str(error.body)
    assert f'admission webhook "validate-dgd.{admission.configuration}" denied the request' in (
        message
    )
    assert "DynamoGraphDeployment 'bad' is invalid (2 problems):" in message
    assert "spec.services.decode.resources.limits.gpu: GPUs must be a whole number" in message
    assert "metadata.annotations[nvidia.com/vllm-distributed-executor-backend]: " in message
    assert not rest.exists(f"{DGD_API.format(ns=namespace)}/bad")


def test_kubectl_shows_the_field_paths(
    control_plane: ControlPlane, admission: AdmissionServer, namespace: str
) -> None:
    manifest = yaml.safe_dump(invalid_dgd("bad-kubectl", admission.token))
    result = subprocess.run(
        [str(ensure_kubectl()), "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace,
         "apply", "-f", "-"],
        input=manifest, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "denied the request" in result.stderr, result.stderr
    assert "spec.services.decode.resources.limits.gpu: GPUs must be a whole number" in result.stderr


def test_valid_graph_is_admitted_with_warnings(
    control_plane: ControlPlane, admission: AdmissionServer, namespace: str
) -> None:
    rest = control_plane.rest
    doc = dgd("good", admission.token)
    doc["spec"]["services"]["Frontend"]["dynamoNamespace"] = "legacy"
    _, created, warnings = rest.request_full("POST", DGD_API.format(ns=namespace), doc)
    assert created["metadata"]["name"] == "good"
    assert any(
        w.startswith("spec.services.Frontend.dynamoNamespace: deprecated and ignored")
        for w in warnings
    ), warnings


def test_updates_follow_dynamos_immutability_rules(
    control_plane: ControlPlane, admission: AdmissionServer, namespace: str
) -> None:
    rest = control_plane.rest
    path = f"{DGD_API.format(ns=namespace)}/graph"
    stored = rest.post(DGD_API.format(ns=namespace), dgd("graph", admission.token))

    added = copy.deepcopy(stored)
    added["spec"]["services"]["prefill"] = copy.deepcopy(stored["spec"]["services"]["decode"])
    with pytest.raises(ApiError) as info:
        rest.put(path, added)
    assert info.value.status == 403
    assert (
        "spec.services: service topology is immutable and cannot be modified after creation: "
        "services added: [prefill]"
    ) in str(info.value)

    with pytest.raises(ApiError) as info:
        # A consistent edit (the command names the new framework too), refused only because
        # the framework is immutable.
        main = {"image": "nvcr.io/nvidia/ai-dynamo/sglang-runtime:0.8.1",
                "command": ["python3", "-m", "dynamo.sglang"]}  # fmt: skip
        rest.patch(
            path,
            {
                "spec": {
                    "backendFramework": "sglang",
                    "services": {"decode": {"extraPodSpec": {"mainContainer": main}}},
                }
            },
        )
    assert "spec.backendFramework: is immutable (was 'vllm', now 'sglang')" in str(info.value)

    # Allowed changes go through, and the refused ones left nothing behind.
    scaled = rest.patch(path, {"spec": {"services": {"decode": {"replicas": 2}}}})
    assert scaled["spec"]["services"]["decode"]["replicas"] == 2
    assert set(scaled["spec"]["services"]) == {"Frontend", "decode"}
    assert scaled["spec"]["backendFramework"] == "vllm"


def test_adapters_are_validated_and_other_objects_are_untouched(
    control_plane: ControlPlane, admission: AdmissionServer, namespace: str
) -> None:
    rest = control_plane.rest
    adapter = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": "graph-decode", "labels": {LABEL: admission.token}},
        "spec": {"replicas": 1, "dgdRef": {"name": "graph", "serviceName": "decode"}},
    }
    assert rest.post(DGDSA_API.format(ns=namespace), adapter)["spec"]["replicas"] == 1
    # Objects without the test label never reach this fail-closed webhook.
    created = rest.post(DGD_API.format(ns=namespace), invalid_dgd("unlabelled", None), dryRun="All")
    assert created["metadata"]["name"] == "unlabelled"


def _ca_signed_cert_dir(directory: Path) -> Path:
    """tls.crt/tls.key for 127.0.0.1 signed by a separate ca.crt, shaped like the chart's Secret."""
    ca = certs.certificate_authority("test-webhook-ca", days=1)
    certs.serving_certificate(["127.0.0.1"], issuer=ca, days=1).write(
        directory / "tls.crt", directory / "tls.key"
    )
    (directory / "ca.crt").write_bytes(ca.cert_pem())
    return directory


def test_mounted_certificate_in_namespace_mode(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The chart's shape: certificate files with their own CA, an operator watching one namespace."""
    rest = control_plane.rest
    cert_dir = _ca_signed_cert_dir(tmp_path)
    with serving(control_plane, namespace, cert_dir=cert_dir, namespaces=(namespace,)) as server:
        config = rest.get(f"{VWC_API}/{server.configuration}")
        ca_bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
        assert ca_bundle == (cert_dir / "ca.crt").read_bytes()  # the CA, not the leaf
        with pytest.raises(ApiError) as info:
            rest.post(DGD_API.format(ns=namespace), invalid_dgd("bad", server.token))
        assert "spec.services.decode.resources.limits.gpu" in str(info.value)
        assert rest.post(DGD_API.format(ns=namespace), dgd("good", server.token))
