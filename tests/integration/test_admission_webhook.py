"""The operator's webhook server behind a real kube-apiserver.

`dgd_operator.admission.Admission` serves on 127.0.0.1 with an in-memory certificate and
registers its own Validating- and MutatingWebhookConfiguration (URL client config + caBundle),
exactly as `dgd operator` does locally with `DGD_WEBHOOK_ENABLED=true`. The API server then calls
it on every DGD create and update: a graph the CRD schema accepts but Dynamo's rules refuse
never reaches etcd, kubectl shows every problem with its field path, and new graphs get
Dynamo's defaults.

The webhooks are fail-closed, so they must never leak into other tests: they match only objects
labelled with this module's token, the configurations have names of their own, and they are
deleted at the end even if the server could not.
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

import pytest
import yaml
from tests.fixtures.dgd import DGD
from tests.helpers import wait_for

from dgd_operator import certs
from dgd_operator.admission import Admission
from dgd_operator.admission.certificates import inject_ca_bundle
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.rest import ApiError
from dgd_operator.main import connect
from dgd_operator.settings import OperatorSettings, WebhookSettings
from dgd_operator.tools.helm import ensure_kubectl

pytestmark = pytest.mark.integration

LABEL = "dgd.dev/webhook-test"
VWC_API = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MWC_API = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
DGD_API = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/dynamographdeployments"
DGDSA_API = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/dynamographdeploymentscalingadapters"
HOOK = "validate-dgd.dgd-operator.nvidia.com"


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AdmissionServer:
    """`Admission` in its own thread and event loop, registered under its own names."""

    def __init__(self, token: str, configuration: str, *, cert_dir: Path | None = None) -> None:
        self.token = token
        self.configuration = configuration
        self.operator_settings = OperatorSettings(
            bind_address="127.0.0.1",
            webhook=WebhookSettings(
                enabled=True,
                port=_free_port(),
                cert_dir=str(cert_dir) if cert_dir else None,
                managed=True,
                failure_policy="Fail",
                timeout_seconds=5,
            ),
        )
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dgd-admission", daemon=True)

    async def _serve(self) -> None:
        client = connect()
        selector = {"matchExpressions": [{"key": LABEL, "operator": "In", "values": [self.token]}]}
        admission = Admission(
            self.operator_settings,
            client,
            configuration_name=self.configuration,
            object_selector=selector,
        )
        try:
            await admission.start()
            self._ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            try:
                await admission.stop()
            finally:
                await client.close()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> None:
        """Start serving and registering; wait until both are done."""
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the webhook server did not start")
        if self._error is not None:
            raise RuntimeError("the webhook server failed to start") from self._error

    def stop(self) -> None:
        """Stop (which deletes the configurations) and join the thread."""
        self._stop.set()
        self._thread.join(30)
        if self._thread.is_alive():
            raise TimeoutError("the webhook server did not stop")
        if self._error is not None:
            raise RuntimeError("the webhook server crashed") from self._error


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
            description="the API server to call our webhook",
        )
        yield server
    finally:
        try:
            server.stop()
        finally:
            # The server deletes its configurations on exit; in any case (fail-closed!) too.
            for api in (VWC_API, MWC_API):
                with contextlib.suppress(ApiError):
                    rest.delete(f"{api}/{server.configuration}")
                assert not rest.exists(f"{api}/{server.configuration}")


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


def test_the_server_registers_fail_closed_url_webhooks(
    control_plane: ControlPlane, admission: AdmissionServer
) -> None:
    rest = control_plane.rest
    validating = rest.get(f"{VWC_API}/{admission.configuration}")["webhooks"]
    mutating = rest.get(f"{MWC_API}/{admission.configuration}")["webhooks"]
    hooks = {hook["name"]: hook for hook in validating + mutating}
    assert set(hooks) == {
        "validate-dgd.dgd-operator.nvidia.com",
        "validate-dgdsa.dgd-operator.nvidia.com",
        "mutate.dgd-operator.nvidia.com",
    }
    port = admission.operator_settings.webhook.port
    for name, hook in hooks.items():
        path = name.split(".")[0]
        assert hook["clientConfig"]["url"] == f"https://127.0.0.1:{port}/{path}"
        assert hook["clientConfig"]["caBundle"]
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["timeoutSeconds"] == 5
        assert hook["objectSelector"] == {
            "matchExpressions": [{"key": LABEL, "operator": "In", "values": [admission.token]}]
        }
        [rule] = hook["rules"]
        assert rule["apiGroups"] == ["nvidia.com"]
        assert rule["apiVersions"] == ["v1alpha1", "v1beta1"]
        assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
    assert hooks[HOOK]["rules"][0]["resources"] == ["dynamographdeployments"]


def test_new_graphs_get_dynamos_defaults(
    control_plane: ControlPlane, admission: AdmissionServer, namespace: str
) -> None:
    rest = control_plane.rest
    doc = dgd("defaults", admission.token)
    doc["spec"]["services"]["decode"].pop("replicas", None)
    doc["spec"]["services"]["Frontend"]["replicas"] = 2
    created = rest.post(DGD_API.format(ns=namespace), doc)
    annotations = created["metadata"]["annotations"]
    assert annotations["nvidia.com/dynamo-operator-origin-version"] == "1.5.0"
    assert created["spec"]["services"]["decode"]["replicas"] == 1
    assert created["spec"]["services"]["Frontend"]["replicas"] == 2
    # Never changed afterwards, even when a user sets another origin.
    path = f"{DGD_API.format(ns=namespace)}/defaults"
    edited = rest.patch(path, {"metadata": {"labels": {"edited": "yes"}}})
    assert edited["metadata"]["annotations"] == annotations


def test_invalid_graph_is_rejected_by_the_api_server(
    control_plane: ControlPlane, admission: AdmissionServer, namespace: str
) -> None:
    rest = control_plane.rest
    with pytest.raises(ApiError) as info:
        rest.post(DGD_API.format(ns=namespace), invalid_dgd("bad", admission.token))
    error = info.value
    assert error.status == 403
    message = error.body["message"] if isinstance(error.body, dict) else str(error.body)
    assert f'admission webhook "{HOOK}" denied the request' in message
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


def test_mounted_certificate(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """cert-manager's shape: certificate files with their own CA in a mounted directory."""
    rest = control_plane.rest
    cert_dir = _ca_signed_cert_dir(tmp_path)
    with serving(control_plane, namespace, cert_dir=cert_dir) as server:
        config = rest.get(f"{VWC_API}/{server.configuration}")
        ca_bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
        assert ca_bundle == (cert_dir / "ca.crt").read_bytes()  # the CA, not the leaf
        with pytest.raises(ApiError) as info:
            rest.post(DGD_API.format(ns=namespace), invalid_dgd("bad", server.token))
        assert "spec.services.decode.resources.limits.gpu" in str(info.value)
        assert rest.post(DGD_API.format(ns=namespace), dgd("good", server.token))


async def test_operator_keeps_its_certificate_in_a_secret_and_its_ca_in_the_configurations(
    control_plane: ControlPlane, namespace: str
) -> None:
    """The chart's shape: replicas share one operator-issued Secret; the CA is injected once."""
    rest = control_plane.rest
    name = f"ca-inject-{uuid.uuid4().hex[:8]}.webhook-test.dgd.dev"
    never = {"matchExpressions": [{"key": LABEL, "operator": "In", "values": ["never"]}]}
    hook = {
        "name": "validate-dgd.dgd-operator.nvidia.com",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "dgd-webhook", "namespace": namespace, "port": 443,
                                     "path": "/validate-dgd"}},
        "rules": [{"apiGroups": ["nvidia.com"], "apiVersions": ["v1alpha1"],
                   "operations": ["CREATE"], "resources": ["dynamographdeployments"]}],
        "failurePolicy": "Ignore", "sideEffects": "None", "objectSelector": never,
    }  # fmt: skip
    rest.post(VWC_API, {"metadata": {"name": name}, "webhooks": [hook]})
    settings = OperatorSettings(
        bind_address="127.0.0.1",
        webhook=WebhookSettings(
            enabled=True,
            port=_free_port(),
            secret_name="dgd-webhook-tls",
            namespace=namespace,
            service_name="dgd-webhook",
            configuration_name=name,
        ),
    )
    client = connect()
    try:
        # crds=(): the session's CRDs must keep converting through the control plane's server.
        first = Admission(settings, client, crds=())
        await first.start()
        await first.stop()
        secret = rest.get(f"/api/v1/namespaces/{namespace}/secrets/dgd-webhook-tls")
        assert secret["type"] == "kubernetes.io/tls"
        ca = base64.b64decode(secret["data"]["ca.crt"])
        config = rest.get(f"{VWC_API}/{name}")
        assert base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]) == ca
        # A second replica (or a restart) reuses the Secret and writes nothing at all.
        second = Admission(settings, client, crds=())
        await second.start()
        try:
            assert second.server is not None
            files = second.server.certificate
            assert files.ca.read_bytes() == ca
            after = rest.get(f"/api/v1/namespaces/{namespace}/secrets/dgd-webhook-tls")
            assert after["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
            stored = rest.get(f"{VWC_API}/{name}")
            assert stored["metadata"]["resourceVersion"] == config["metadata"]["resourceVersion"]
            assert await second._inject(files) == 0
        finally:
            await second.stop()
    finally:
        await client.close()
        rest.delete(f"{VWC_API}/{name}")


async def test_the_crds_conversion_webhook_is_pointed_at_the_operators_service(
    control_plane: ControlPlane,
) -> None:
    """The CRD files name the chart's default release; the operator rewrites the Service and
    caBundle of a CRD's conversion webhook to its own, once (a second pass writes nothing)."""
    rest = control_plane.rest
    group = f"t{uuid.uuid4().hex[:8]}.webhook-test.dgd.dev"
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"url": "https://127.0.0.1:1/convert"},
                },
            },
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": schema},
                {"name": "v2", "served": True, "storage": False, "schema": schema},
            ],
        },
    }
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}"
    rest.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    service = {"name": "dgd-webhook", "namespace": "dgd-system", "path": "/convert", "port": 443}
    ca = certs.certificate_authority("test-ca", days=1).cert_pem()
    client = connect()
    try:
        writes = await inject_ca_bundle(
            client, ca, crds=[f"widgets.{group}"], conversion_service=service
        )
        assert writes == 1
        config = rest.get(path)["spec"]["conversion"]["webhook"]["clientConfig"]
        assert config == {"service": service, "caBundle": base64.b64encode(ca).decode()}
        again = await inject_ca_bundle(
            client, ca, crds=[f"widgets.{group}"], conversion_service=service
        )
        assert again == 0
    finally:
        await client.close()
        rest.delete(path)
