"""Image checks of `validate_dgd`: empty images refused, unexpanded `${...}` warned."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.api.validation import validate_dgd
from dgd_operator.api.validation.images import image_problems

pytestmark = pytest.mark.unit

MAIN = "spec.services.worker.extraPodSpec.mainContainer.image"


def _doc(**pod: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "g", "namespace": "ns"},
        "spec": {
            "backendFramework": "vllm",
            "services": {
                "worker": {
                    "componentType": "worker",
                    "extraPodSpec": pod,
                }
            },
        },
    }


@pytest.mark.parametrize(
    ("pod", "errors", "warnings"),
    [
        ({"mainContainer": {"image": "nvcr.io/x/vllm-runtime:0.8.0"}}, [], []),
        ({"mainContainer": {"image": ""}}, [f"{MAIN}: must not be empty"], []),
        ({"mainContainer": {"image": "   "}}, [f"{MAIN}: must not be empty"], []),
        (
            {"mainContainer": {"image": "vllm-runtime: 1"}},
            [f"{MAIN}: 'vllm-runtime: 1' contains whitespace"],
            [],
        ),
        ({"mainContainer": {"image": "nvcr.io/x/vllm-runtime:${VERSION}"}}, [], [MAIN]),
        ({"mainContainer": {}}, [], []),  # Dynamo's v1alpha1 webhook admits a missing image
        (
            {"mainContainer": {"image": "a:1"}, "containers": [{"name": "side"}]},
            ["spec.services.worker.extraPodSpec.containers[0].image: required"],
            [],
        ),
        (
            {"mainContainer": {"image": "a:1"}, "initContainers": [{"name": "i", "image": ""}]},
            ["spec.services.worker.extraPodSpec.initContainers[0].image: must not be empty"],
            [],
        ),
    ],
)
def test_image_rules(pod: dict[str, Any], errors: list[str], warnings: list[str]) -> None:
    result = validate_dgd(_doc(**pod))
    image_errors = [str(p) for p in result.errors if p.path.endswith(".image")]
    assert image_errors == errors
    assert [p.path for p in result.warnings if p.path.endswith(".image")] == warnings


def test_unexpanded_variable_message_names_it() -> None:
    (problem,) = image_problems(_doc(mainContainer={"image": "repo/img:${IMAGE_TAG}"}))
    assert problem.severity == "warning"
    assert "${IMAGE_TAG}" in problem.message


def test_odd_shapes_are_left_to_the_schema_checks() -> None:
    doc = _doc()
    doc["spec"]["services"]["worker"]["extraPodSpec"] = "not a mapping"
    assert list(image_problems(doc)) == []
    assert list(image_problems({"spec": {"services": []}})) == []
