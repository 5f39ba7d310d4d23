"""Validation of DynamoGraphDeployment documents, as the API server and Dynamo's webhook would.

`validate_dgd` takes a decoded YAML/JSON document and returns every problem at once, each
anchored at a field path in Kubernetes style (`spec.services.decode.replicas: must be >= 0`):
the CRD schema rules (types, enums, minimums, quantities; enforced by the pydantic models,
`errors`), unknown fields (`pruning`: warnings, the API server would silently prune them), the
CEL rules of Dynamo's CRD and the create-time rules of Dynamo's admission webhook (`rules`),
and whether the engines' parallelism fits the GPUs (`topology`).

`update_problems` holds Dynamo's update-time rules (immutable fields, `update`). `parse_dgd` is
the strict entry point for code that needs a model or a permanent error naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from dgd_operator.api import constants, k8s
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation.errors import (
    DGDValidationError,
    Problem,
    Severity,
    describe,
    merge,
    problems_from_pydantic,
    show,
    warning,
)
from dgd_operator.api.validation.images import image_problems
from dgd_operator.api.validation.pruning import prune, without_errors
from dgd_operator.api.validation.rules import (
    create_problems,
    deprecation_warnings,
    label_value_problems,
)
from dgd_operator.api.validation.topology import check_topology
from dgd_operator.api.validation.update import update_problems

__all__ = [
    "DGDValidationError",
    "Problem",
    "Severity",
    "ValidationResult",
    "is_dgd",
    "label_value_problems",
    "parse_dgd",
    "update_problems",
    "validate_dgd",
]


@dataclass
class ValidationResult:
    """Outcome of `validate_dgd`: the parsed DGD (None when invalid), errors and warnings."""

    dgd: DynamoGraphDeployment | None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there are no errors."""
        return not self.errors


def is_dgd(doc: object) -> bool:
    """True when `doc` is a mapping of kind DynamoGraphDeployment in API group nvidia.com."""
    if not isinstance(doc, Mapping) or doc.get("kind") != constants.DGD_KIND:
        return False
    api_version = doc.get("apiVersion")
    return isinstance(api_version, str) and api_version.split("/")[0] == constants.API_GROUP


def validate_dgd(doc: Mapping[str, Any], *, creating: bool = True) -> ValidationResult:
    """Validate one DGD document as the API server plus Dynamo's admission webhook would.

    `creating` selects the create-time rules (a restart request must be unset); with False
    the document is checked as an update's new object (restart requests are validated instead).
    Never raises for bad input: every problem is returned with its field path.
    """
    if not isinstance(doc, Mapping):
        return ValidationResult(None, [Problem("", f"expected a mapping, got {describe(doc)}")])
    api_version = doc.get("apiVersion")
    if api_version != constants.GROUP_VERSION:
        if api_version == f"{constants.API_GROUP}/v1beta1":
            message = (
                f"{constants.API_GROUP}/v1beta1 is not supported yet "
                f"(use {constants.GROUP_VERSION})"
            )
        else:
            message = f"must be {constants.GROUP_VERSION}, got {show(api_version)}"
        return ValidationResult(None, [Problem("apiVersion", message)])
    if doc.get("kind") != constants.DGD_KIND:
        kind = show(doc.get("kind"))
        return ValidationResult(
            None, [Problem("kind", f"must be {constants.DGD_KIND}, got {kind}")]
        )

    findings = k8s.Findings()
    pruned = prune(doc, DynamoGraphDeployment, "", findings)
    warnings = [warning(path, message) for path, message in findings.warnings]
    embedded_errors = [Problem(path, message) for path, message in findings.errors]
    try:
        dgd = DynamoGraphDeployment.model_validate(pruned)
    except ValidationError as exc:
        errors = merge(problems_from_pydantic(exc), embedded_errors)
        # Report the webhook rules too, checked on the document minus its broken fields, so
        # one run lists every problem instead of one layer at a time.
        partial = without_errors(pruned, exc)
        if partial is not None:
            known = {p.path for p in errors}
            errors.extend(
                p
                for p in create_problems(partial, pruned, creating=creating)
                if p.path not in known
            )
            warnings.extend(deprecation_warnings(partial))
        return ValidationResult(None, errors, warnings)

    errors = embedded_errors + list(create_problems(dgd, pruned, creating=creating))
    warnings.extend(deprecation_warnings(dgd))
    topology = check_topology(dgd)
    errors.extend(p for p in topology if p.severity == "error")
    if dgd.metadata.namespace:
        # Only knowable with the namespace (the webhook's object always carries it).
        known = {p.path for p in errors}
        errors.extend(
            p for p in label_value_problems(dgd.metadata.namespace, dgd) if p.path not in known
        )
    warnings.extend(p for p in topology if p.severity == "warning")
    for p in image_problems(pruned):
        (errors if p.severity == "error" else warnings).append(p)
    return ValidationResult(None if errors else dgd, errors, warnings)


def parse_dgd(doc: Mapping[str, Any], *, creating: bool = False) -> DynamoGraphDeployment:
    """Validate `doc` and return the model, or raise `DGDValidationError` naming every field.

    Defaults to `creating=False` (the operator parses stored objects, which may carry a
    restart request); pass True to apply the create-time rules.
    """
    result = validate_dgd(doc, creating=creating)
    if result.errors or result.dgd is None:
        raise DGDValidationError(result.errors)
    return result.dgd
