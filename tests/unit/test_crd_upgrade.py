"""The operator's in-place CRD upgrade (`admission.crd_upgrade`): what it writes, and when not."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dgd_operator.admission.crd_upgrade import covers, desired_crd, packaged_crds
from dgd_operator.main import conversion_client_config
from dgd_operator.settings import OperatorSettings, WebhookSettings

pytestmark = pytest.mark.unit

SERVICE = {"name": "hooks", "namespace": "ops", "path": "/convert", "port": 443}


def _dgd_crd() -> dict[str, Any]:
    [crd] = [c for c in packaged_crds() if c["spec"]["names"]["kind"] == "DynamoGraphDeployment"]
    return crd


def test_the_package_ships_every_crd_with_v1beta1_storage_for_the_converted_kinds() -> None:
    crds = {c["metadata"]["name"]: c for c in packaged_crds()}
    assert set(crds) == {
        "dynamographdeployments.nvidia.com",
        "dynamographdeploymentscalingadapters.nvidia.com",
        "dynamoworkermetadatas.nvidia.com",
    }
    for name in (
        "dynamographdeployments.nvidia.com",
        "dynamographdeploymentscalingadapters.nvidia.com",
    ):
        storage = [v["name"] for v in crds[name]["spec"]["versions"] if v["storage"]]
        assert storage == ["v1beta1"]


@pytest.mark.parametrize(
    ("live", "ours", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),  # the API server's defaults add fields
        ({"a": 1}, {"a": 2}, False),
        ({"a": [{"x": 1, "d": 0}]}, {"a": [{"x": 1}]}, True),
        ({"a": [{"x": 1}]}, {"a": [{"x": 1}, {"x": 2}]}, False),  # a new version
        ({}, {"a": None}, True),  # unset is unset
        ({"p": {}}, {"p": {"properties": {}}}, True),  # the API server drops empty maps
        (None, {"a": 1}, False),
    ],
)
def test_covers(live: Any, ours: Any, expected: bool) -> None:
    assert covers(live, ours) is expected


def test_a_missing_crd_is_created_with_our_conversion_service() -> None:
    desired = desired_crd(_dgd_crd(), None, {"service": SERVICE})
    assert desired["spec"]["conversion"]["webhook"]["clientConfig"] == {"service": SERVICE}
    assert "resourceVersion" not in desired["metadata"]


def test_without_a_known_endpoint_the_live_conversion_is_kept_and_none_is_invented() -> None:
    live = copy.deepcopy(_dgd_crd())
    live["metadata"]["resourceVersion"] = "5"
    live["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {"clientConfig": {"url": "u"}}}
    kept = desired_crd(_dgd_crd(), live, None)
    assert kept["spec"]["conversion"] == live["spec"]["conversion"]
    assert kept["metadata"]["resourceVersion"] == "5"
    assert "conversion" not in desired_crd(_dgd_crd(), None, None)["spec"]


def test_dynamos_crd_is_taken_over_keeping_others_labels_and_the_injected_ca() -> None:
    live = copy.deepcopy(_dgd_crd())
    live["metadata"].update(resourceVersion="9", labels={"app": "dynamo"})
    live["spec"]["conversion"] = {
        "strategy": "Webhook",
        "webhook": {"clientConfig": {"service": {"name": "dynamo"}, "caBundle": "Q0E="}},
    }
    live["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object"}}
    desired = desired_crd(_dgd_crd(), live, {"service": SERVICE})
    assert desired["spec"]["conversion"]["webhook"]["clientConfig"] == {
        "service": SERVICE,
        "caBundle": "Q0E=",
    }
    assert desired["spec"]["versions"] == _dgd_crd()["spec"]["versions"]
    assert desired["metadata"]["labels"] == {"app": "dynamo", "app.kubernetes.io/part-of": "dgd"}
    assert not covers(live, {k: desired[k] for k in ("metadata", "spec")})  # so it is written
    assert covers(desired, {k: desired[k] for k in ("metadata", "spec")})  # and then not again


@pytest.mark.parametrize(
    ("webhook", "expected"),
    [
        (WebhookSettings(), None),
        (WebhookSettings(enabled=True), None),  # local runs: the live setting is kept
        (
            WebhookSettings(enabled=True, namespace="ops", service_name="hooks", secret_name="s"),
            {"service": SERVICE},
        ),
    ],
)
def test_conversion_client_config_from_settings(
    webhook: WebhookSettings, expected: dict[str, Any] | None
) -> None:
    assert conversion_client_config(OperatorSettings(webhook=webhook)) == expected
