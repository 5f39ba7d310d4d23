"""One `Problem(path, message, severity)` shape from validation, topology and the builders."""

from __future__ import annotations

import pytest

from dgd_operator.api.validation import Problem, validate_dgd
from dgd_operator.builders.errors import BuildError

pytestmark = pytest.mark.unit


def test_errors_and_warnings_carry_their_severity() -> None:
    doc = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "g"},
        "spec": {
            "services": {
                "big": {
                    "componentType": "worker",
                    "unknownField": 1,  # pruned by the API server: a warning
                    "dynamoNamespace": "x",  # deprecated: a warning
                    "resources": {"limits": {"gpu": "8"}},
                    "extraPodSpec": {
                        "mainContainer": {
                            "image": "img",
                            "command": ["python3", "-m", "dynamo.vllm"],
                            "args": ["-tp", "16"],  # does not fit 8 GPUs: an error
                        }
                    },
                },
            }
        },
    }
    result = validate_dgd(doc)
    assert [p.path for p in result.errors] == ["spec.services.big"]
    assert {p.path for p in result.warnings} == {
        "spec.services.big.unknownField",
        "spec.services.big.dynamoNamespace",
    }
    assert {p.severity for p in result.errors} == {"error"}
    assert {p.severity for p in result.warnings} == {"warning"}


def test_build_error_carries_a_problem() -> None:
    error = BuildError("spec.services.x", "cannot be built")
    assert error.problem == Problem("spec.services.x", "cannot be built")
    assert str(error) == "spec.services.x: cannot be built"
