"""Conversion and defaulting reviews, the HTTPS server answering them, and its certificates.

The review functions (`dgd_operator.admission.webhooks`) are pure: a review document in, the
response document out. The server test speaks HTTPS to a real `WebhookServer` on 127.0.0.1;
the API server behind it is exercised in tests/integration/test_admission_webhook.py.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import json
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.fixtures.catalog import load_graph
from tests.fixtures.dgd import DGD

from dgd_operator.admission import certificates
from dgd_operator.admission.review import AdmissionPolicy
from dgd_operator.admission.server import CertificateFiles, WebhookServer
from dgd_operator.admission.service import (
    Admission,
    ApiPresence,
    configurations,
    url_client_config,
)
from dgd_operator.admission.webhooks import (
    ReviewError,
    convert_review,
    default_patch,
    mutate_review,
    pointer,
    review_handlers,
    validate_review,
)
from dgd_operator.api.constants import ANNOTATION_ORIGIN_VERSION, DGD_KIND
from dgd_operator.api.conversion import convert
from dgd_operator.controllerkit.kubeapi import ApiError
from dgd_operator.settings import OperatorSettings, SettingsError, WebhookSettings

pytestmark = pytest.mark.unit

Doc = dict[str, Any]
A1 = "nvidia.com/v1alpha1"
B1 = "nvidia.com/v1beta1"
UID = "0df28fbd-5f5f-11e8-b9aa-42010a800002"


def alpha_dgd(name: str = "demo") -> Doc:
    """A small valid v1alpha1 graph."""
    graph = DGD(name, namespace="team-a").backend("vllm").frontend().worker("decode").gpus(1)
    return graph.engine("vllm").build()


def adapter(api_version: str = A1) -> Doc:
    """A scaling adapter at `api_version`."""
    ref = {"name": "demo", "serviceName" if api_version == A1 else "componentName": "decode"}
    return {
        "apiVersion": api_version,
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": "demo-decode", "namespace": "team-a"},
        "spec": {"replicas": 2, "dgdRef": ref},
    }


def conversion(desired: str, *objects: Doc) -> Doc:
    """A ConversionReview as the API server sends it."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": UID, "desiredAPIVersion": desired, "objects": list(objects)},
    }


def admission(operation: str, obj: Doc, old: Doc | None = None) -> Doc:
    """An AdmissionReview as the API server sends it."""
    request: Doc = {"uid": UID, "operation": operation, "object": obj}
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


# --- conversion --------------------------------------------------------------------------------


def test_conversion_review_converts_every_object_both_ways() -> None:
    alpha = alpha_dgd()
    answer = convert_review(conversion(B1, alpha, adapter()))
    assert answer["apiVersion"] == "apiextensions.k8s.io/v1"
    assert answer["kind"] == "ConversionReview"
    response = answer["response"]
    assert response["uid"] == UID
    assert response["result"] == {"status": "Success"}
    hub, hub_adapter = response["convertedObjects"]
    assert hub == convert(alpha, B1)
    assert hub["apiVersion"] == B1 and "components" in hub["spec"]
    assert hub_adapter == adapter(B1)
    back = convert_review(conversion(A1, hub, hub_adapter))["response"]
    assert back["convertedObjects"] == [alpha, adapter()]


def test_conversion_review_keeps_metadata_and_order() -> None:
    first, second = alpha_dgd("one"), alpha_dgd("two")
    first["metadata"].update(uid="u1", resourceVersion="7", labels={"team": "a"})
    converted = convert_review(conversion(B1, first, second))["response"]["convertedObjects"]
    assert [o["metadata"]["name"] for o in converted] == ["one", "two"]
    assert converted[0]["metadata"]["uid"] == "u1"
    assert converted[0]["metadata"]["resourceVersion"] == "7"
    assert converted[0]["metadata"]["labels"] == {"team": "a"}


def test_failed_conversion_is_a_failure_naming_the_object_and_field() -> None:
    bad = alpha_dgd("broken")
    bad["spec"]["notAField"] = 1
    response = convert_review(conversion(B1, alpha_dgd(), bad))["response"]
    assert "convertedObjects" not in response
    assert response["result"]["status"] == "Failure"
    message = response["result"]["message"]
    assert "DynamoGraphDeployment 'broken'" in message
    assert "notAField" in message


@pytest.mark.parametrize(
    ("desired", "obj", "expected"),
    [
        ("nvidia.com/v2", alpha_dgd(), "cannot convert to 'nvidia.com/v2'"),
        (B1, {"apiVersion": "v1", "kind": "ConfigMap"}, "kind 'ConfigMap' is not converted"),
    ],
    ids=["unknown-version", "unknown-kind"],
)
def test_conversion_outside_our_kinds_fails(desired: str, obj: Doc, expected: str) -> None:
    result = convert_review(conversion(desired, obj))["response"]["result"]
    assert result["status"] == "Failure"
    assert expected in result["message"]


@pytest.mark.parametrize(
    "review",
    [
        {"kind": "AdmissionReview", "request": {"uid": UID}},
        {"kind": "ConversionReview", "request": {}},
        {"kind": "ConversionReview"},
    ],
    ids=["wrong-kind", "no-uid", "no-request"],
)
def test_unreadable_conversion_reviews_raise(review: Doc) -> None:
    with pytest.raises(ReviewError):
        convert_review(review)


# --- validation of hub objects -----------------------------------------------------------------


def test_a_v1beta1_graph_is_validated_on_the_hub_and_through_its_v1alpha1_view() -> None:
    hub = convert(alpha_dgd(), B1)
    # Written at v1beta1: Dynamo's v1beta1 rules hold, named at v1beta1 paths (the converted
    # frontend has no `main` image, which only a v1alpha1 graph may leave out).
    response = validate_review(admission("CREATE", hub), kind=DGD_KIND)["response"]
    assert response["allowed"] is False
    assert "spec.components[0].podTemplate.spec.containers" in response["status"]["message"]
    # The same object converted by the API server from a v1alpha1 request: v1alpha1 rules.
    request = admission("CREATE", hub)
    request["request"]["requestKind"] = {"group": "nvidia.com", "version": "v1alpha1"}
    assert validate_review(request, kind=DGD_KIND)["response"] == {"uid": UID, "allowed": True}
    main = {"name": "main", "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.8.1"}
    hub["spec"]["components"][0]["podTemplate"] = {"spec": {"containers": [main]}}
    response = validate_review(admission("CREATE", hub), kind=DGD_KIND)["response"]
    assert response == {"uid": UID, "allowed": True}
    hub["metadata"]["annotations"] = {"nvidia.com/vllm-distributed-executor-backend": "foo"}
    response = validate_review(admission("CREATE", hub), kind=DGD_KIND)["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert "nvidia.com/vllm-distributed-executor-backend" in response["status"]["message"]


# --- defaulting --------------------------------------------------------------------------------


def _hub_without_replicas() -> Doc:
    hub = convert(alpha_dgd(), B1)
    for component in hub["spec"]["components"]:
        component.pop("replicas", None)
    hub["spec"]["components"][1]["replicas"] = 3
    return hub


def test_create_stamps_the_origin_version_and_one_replica_on_the_hub() -> None:
    hub = _hub_without_replicas()
    hub["metadata"]["annotations"] = {"keep": "me"}
    ops = default_patch("CREATE", hub, origin_version="1.5.0")
    assert ops == [
        {"op": "add", "path": pointer("metadata", "annotations", ANNOTATION_ORIGIN_VERSION),
         "value": "1.5.0"},
        {"op": "add", "path": "/spec/components/0/replicas", "value": 1},
    ]  # fmt: skip
    assert ops[0]["path"] == "/metadata/annotations/nvidia.com~1dynamo-operator-origin-version"


def test_create_without_annotations_adds_the_map() -> None:
    hub = _hub_without_replicas()
    hub["metadata"].pop("annotations", None)
    [stamp, _] = default_patch("CREATE", hub, origin_version="1.5.0")
    assert stamp == {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {ANNOTATION_ORIGIN_VERSION: "1.5.0"},
    }


def test_update_never_stamps_the_origin_and_keeps_a_present_one() -> None:
    hub = _hub_without_replicas()
    ops = default_patch("UPDATE", hub, origin_version="1.5.0")
    assert ops == [{"op": "add", "path": "/spec/components/0/replicas", "value": 1}]
    hub["metadata"]["annotations"] = {ANNOTATION_ORIGIN_VERSION: "0.9.0"}
    ops = default_patch("CREATE", hub, origin_version="1.5.0")
    assert all(op["path"].startswith("/spec/") for op in ops)


def test_v1alpha1_services_get_one_replica_in_their_own_shape() -> None:
    alpha = alpha_dgd()
    alpha["spec"]["services"]["decode"].pop("replicas", None)
    alpha["spec"]["services"]["Frontend"]["replicas"] = 2
    alpha["metadata"]["annotations"] = {ANNOTATION_ORIGIN_VERSION: "1.0.0"}
    assert default_patch("CREATE", alpha, origin_version="1.5.0") == [
        {"op": "add", "path": "/spec/services/decode/replicas", "value": 1}
    ]


def test_mutate_review_answers_a_base64_json_patch_or_nothing() -> None:
    hub = _hub_without_replicas()
    response = mutate_review(admission("CREATE", hub), origin_version="1.5.0")["response"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == default_patch(
        "CREATE", hub, origin_version="1.5.0"
    )
    done = copy.deepcopy(hub)
    done["metadata"]["annotations"] = {ANNOTATION_ORIGIN_VERSION: "1.5.0"}
    done["spec"]["components"][0]["replicas"] = 1
    response = mutate_review(admission("UPDATE", done, hub), origin_version="1.5.0")["response"]
    assert response == {"uid": UID, "allowed": True}


# --- registration data -------------------------------------------------------------------------


def test_configurations_route_each_webhook_to_its_path() -> None:
    vwc, mwc = configurations(
        "dgd-operator.nvidia.com",
        url_client_config("https://127.0.0.1:9443", "Q0E="),
        failure_policy="Fail",
        timeout_seconds=5,
        object_selector={"matchLabels": {"t": "1"}},
    )
    assert vwc["kind"] == "ValidatingWebhookConfiguration"
    assert mwc["kind"] == "MutatingWebhookConfiguration"
    urls = {h["name"]: h["clientConfig"]["url"] for h in vwc["webhooks"] + mwc["webhooks"]}
    assert urls == {
        "validate-dgd.dgd-operator.nvidia.com": "https://127.0.0.1:9443/validate-dgd",
        "validate-dgdsa.dgd-operator.nvidia.com": "https://127.0.0.1:9443/validate-dgdsa",
        "mutate.dgd-operator.nvidia.com": "https://127.0.0.1:9443/mutate",
    }
    for hook in vwc["webhooks"] + mwc["webhooks"]:
        assert hook["timeoutSeconds"] == 5 and hook["sideEffects"] == "None"
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["rules"][0]["apiVersions"] == ["v1alpha1", "v1beta1"]
        assert hook["objectSelector"] == {"matchLabels": {"t": "1"}}
    assert mwc["webhooks"][0]["rules"][0]["resources"] == ["dynamographdeployments"]


def test_operator_managed_secret_needs_its_namespace_and_service() -> None:
    with pytest.raises(SettingsError, match="DGD_WEBHOOK_SECRET_NAME needs"):
        Admission(OperatorSettings(webhook=WebhookSettings(secret_name="dgd-webhook-cert")))
    settings = WebhookSettings(secret_name="s", namespace="dgd-system", service_name="svc")
    assert not settings.is_managed
    assert WebhookSettings().is_managed


# --- certificates ------------------------------------------------------------------------------


HOSTS = certificates.dns_names("dgd-webhook", "dgd-system")


def test_issued_pair_is_usable_until_rotation_is_due() -> None:
    pair = certificates.issue(HOSTS)
    assert certificates.usable(pair, HOSTS)
    assert not certificates.usable(pair, [*HOSTS, "other.example"])
    now = datetime.datetime.now(datetime.UTC)
    soon = now + datetime.timedelta(days=certificates.SERVING_DAYS) - certificates.ROTATE_BEFORE
    assert not certificates.usable(pair, HOSTS, now=soon + datetime.timedelta(days=1))
    assert certificates.usable(pair, HOSTS, now=soon - datetime.timedelta(days=1))


def test_a_certificate_of_another_ca_is_not_usable() -> None:
    pair, other = certificates.issue(HOSTS), certificates.issue(HOSTS)
    assert not certificates.usable(
        certificates.CertificatePair(other.ca, pair.cert, pair.key), HOSTS
    )
    assert not certificates.usable(
        certificates.CertificatePair(b"junk", pair.cert, pair.key), HOSTS
    )


def test_self_signed_files_are_reused_while_usable(tmp_path: Path) -> None:
    files = certificates.write_self_signed(tmp_path, ["127.0.0.1"])
    first = files.cert.read_bytes()
    assert oct(os.stat(files.key).st_mode & 0o777) == "0o600"
    assert certificates.write_self_signed(tmp_path, ["127.0.0.1"]).cert.read_bytes() == first
    assert certificates.write_self_signed(tmp_path, ["localhost"]).cert.read_bytes() != first


# --- the HTTPS server --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_server_answers_reviews_over_https_and_reloads_its_certificate(
    tmp_path: Path,
) -> None:
    files = certificates.write_self_signed(tmp_path, ["127.0.0.1"])
    handlers = review_handlers(AdmissionPolicy(), origin_version="1.5.0")
    server = WebhookServer(
        handlers, files, host="127.0.0.1", port=_free_port(), reload_interval=0.05
    )
    await server.start()
    base = f"https://127.0.0.1:{server.port}"
    try:
        trust = ssl.create_default_context(cadata=files.ca.read_text())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as http:
            async with http.post(f"{base}/convert", json=conversion(B1, adapter())) as reply:
                assert reply.status == 200
                body = await reply.json()
            assert body["response"]["convertedObjects"] == [adapter(B1)]
            async with http.post(f"{base}/mutate", data=b"[1, 2]") as reply:
                assert reply.status == 400
                assert "not a JSON object" in (await reply.json())["message"]
            async with http.post(f"{base}/convert", data=b"{not json") as reply:
                assert reply.status == 400
            async with http.post(f"{base}/nowhere", json={}) as reply:
                assert reply.status in (404, 405)
        # A rotated pair (new CA) is served without a restart.
        certificates.issue(["127.0.0.1"]).write(CertificateFiles(tmp_path / "next"))
        for name in ("ca.crt", "tls.crt", "tls.key"):
            os.replace(tmp_path / "next" / name, tmp_path / name)
        trust = ssl.create_default_context(cadata=files.ca.read_text())
        for _ in range(200):
            try:
                connector = aiohttp.TCPConnector(ssl=trust)
                async with (
                    aiohttp.ClientSession(connector=connector) as http,
                    http.post(f"{base}/convert", json=conversion(A1, adapter(B1))) as reply,
                ):
                    assert reply.status == 200
                    break
            except aiohttp.ClientConnectorCertificateError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the rotated certificate was never served")
    finally:
        await server.stop()


def test_update_rules_of_the_v1alpha1_view_are_named_at_v1beta1_paths() -> None:
    old = convert(alpha_dgd(), B1)
    main = {"name": "main", "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.8.1"}
    old["spec"]["components"][0]["podTemplate"] = {"spec": {"containers": [main]}}
    old["spec"]["components"][1]["scalingAdapter"] = {}
    new = copy.deepcopy(old)
    new["spec"]["components"][1]["replicas"] = 3
    review = admission("UPDATE", new, old)
    review["request"]["userInfo"] = {"username": "alice"}
    policy = AdmissionPolicy(operator_username="system:serviceaccount:dgd:dgd-operator")
    response = validate_review(review, kind=DGD_KIND, policy=policy)["response"]
    assert response["allowed"] is False
    assert "spec.components[1].replicas: is managed by" in response["status"]["message"]


# --- what the cluster lacks --------------------------------------------------------------------


@pytest.mark.parametrize("served", [True, None, False])
def test_an_endpoint_picker_is_warned_about_only_where_inference_pools_are_not_served(
    served: bool | None,
) -> None:
    alpha = load_graph("gaie-epp")
    graph = convert(alpha, B1)
    [epp] = [c["name"] for c in graph["spec"]["components"] if c.get("type") == "epp"]
    policy = AdmissionPolicy(inference_pool_api=lambda: served)
    response = validate_review(admission("CREATE", graph), kind=DGD_KIND, policy=policy)
    warnings = response["response"].get("warnings") or []
    missing = [w for w in warnings if "does not serve inference.networking.k8s.io" in w]
    if served is False:  # named at the component's v1beta1 path, on every write
        assert missing and all(w.startswith("spec.components[") for w in missing), warnings
        update = admission("UPDATE", graph, copy.deepcopy(graph))
        again = validate_review(update, kind=DGD_KIND, policy=policy)["response"]["warnings"]
        assert [w for w in again if "inference.networking.k8s.io" in w] == missing
        # Written at v1alpha1: named at the service's own path.
        review = validate_review(admission("CREATE", alpha), kind=DGD_KIND, policy=policy)
        said = review["response"]["warnings"]
        assert any(w.startswith(f"spec.services.{epp}") and "inference." in w for w in said)
    else:  # served, or not known yet: nothing to say
        assert missing == []


async def test_inference_pool_presence_follows_discovery_and_survives_its_errors() -> None:
    class Discovery:
        answer: Any = None

        async def discover(self, path: str) -> Any:
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    client = Discovery()
    presence = ApiPresence("/apis/inference.networking.k8s.io/v1")
    assert presence.get() is None  # unknown until discovery answers
    await presence.refresh(client)  # type: ignore[arg-type]
    assert presence.get() is False  # not served (404 -> None document)
    client.answer = {"resources": [{"name": "inferencepools"}]}
    await presence.refresh(client)  # type: ignore[arg-type]
    assert presence.get() is True
    client.answer = ApiError(503, "ServiceUnavailable", "unavailable")
    await presence.refresh(client)  # type: ignore[arg-type]
    assert presence.get() is True  # the last answer stands
