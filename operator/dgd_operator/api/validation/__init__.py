"""Validation of DynamoGraphDeployment documents, as the API server and Dynamo's webhook would.

`validate_dgd` takes a decoded YAML/JSON document of either API version and returns every
problem at once, each anchored at a field path in Kubernetes style, in the version the user
wrote (`spec.services.decode.replicas: must be >= 0`, or `spec.components[1].replicas`): the
CRD schema rules (types, enums, minimums, quantities; enforced by the pydantic models,
`errors`), unknown fields (`pruning`: warnings for v1alpha1, the API server would silently
prune them; errors for v1beta1, whose model is strict), the CEL rules of Dynamo's CRD and the
create-time rules of Dynamo's admission webhook (`rules`, and `v1beta1_rules` for what only
v1beta1 can say), whether the engines' parallelism fits the GPUs (`topology`), and the fields
dgd accepts but does not act on (`unacted`: warnings).

A v1beta1 document is checked against the v1beta1 model and rules, then converted down
(`api.conversion`) and checked by the v1alpha1 rules too; their paths are mapped back
(`paths`). A valid v1alpha1 document is converted up and checked by the v1beta1 rules as
Dynamo's webhook does (except the `main` image rules, v1beta1-only), in the v1alpha1 spelling.
The result carries the v1alpha1 model the builders consume and the v1beta1 hub.

`update_problems` holds Dynamo's update-time rules (immutable fields, `update`). `parse_dgd` is
the strict entry point for code that needs a model or a permanent error naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from dgd_operator.api import constants, k8s, v1beta1
from dgd_operator.api.conversion import ConversionError, convert
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.tree import json_copy
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
from dgd_operator.api.validation.paths import (
    OTHER_SPELLING_NOTE,
    to_v1alpha1_path,
    to_v1beta1_path,
)
from dgd_operator.api.validation.pruning import prune, without_errors
from dgd_operator.api.validation.rules import (
    create_problems,
    deprecation_warnings,
    label_value_problems,
)
from dgd_operator.api.validation.topology import check_topology
from dgd_operator.api.validation.unacted import not_acted_on, not_acted_on_v1beta1
from dgd_operator.api.validation.update import update_problems
from dgd_operator.api.validation.v1beta1_rules import v1beta1_problems

__all__ = [
    "DGDValidationError",
    "Problem",
    "Severity",
    "ValidationResult",
    "is_dgd",
    "label_value_problems",
    "not_acted_on",
    "not_acted_on_v1beta1",
    "parse_dgd",
    "update_problems",
    "validate_dgd",
]


@dataclass
class ValidationResult:
    """Outcome of `validate_dgd`: the parsed DGD (None when invalid), errors and warnings.

    `dgd` is the v1alpha1 model the builders consume (for a v1beta1 document, of its
    down-converted view); `hub` the v1beta1 wire dict (a copy of the document itself, or the
    v1alpha1 document converted up), None when invalid or not asked for; `api_version` the
    version the user wrote.
    """

    dgd: DynamoGraphDeployment | None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    hub: dict[str, Any] | None = None
    api_version: str = constants.GROUP_VERSION

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


def validate_dgd(
    doc: Mapping[str, Any], *, creating: bool = True, images: bool = True, keep_hub: bool = True
) -> ValidationResult:
    """Validate one DGD document (v1alpha1 or v1beta1) as the API server plus Dynamo's
    admission webhook would, and list the fields dgd does not act on as warnings.

    `creating` selects the create-time rules (a restart request must be unset); with False
    the document is checked as an update's new object (restart requests are validated instead).
    Never raises for bad input: every problem is returned with its field path, in the
    version the document is written in. `images=False` leaves out Dynamo's v1beta1 `main`
    image and runtime-version rules, which its webhook applies only to requests written in
    v1beta1 (a stored v1beta1 object may have been written in v1alpha1). `keep_hub=False` leaves
    `ValidationResult.hub` out of a valid v1beta1 document's result (the reconcile only needs
    the model; the hub is a copy of the whole document). `doc` is never changed; the model
    of a v1beta1 document shares nothing with it (it is built from a converted copy).
    """
    if not isinstance(doc, Mapping):
        return ValidationResult(None, [Problem("", f"expected a mapping, got {describe(doc)}")])
    api_version = doc.get("apiVersion")
    if api_version not in (constants.GROUP_VERSION, constants.GROUP_VERSION_V1BETA1):
        message = (
            f"must be {constants.GROUP_VERSION} or {constants.GROUP_VERSION_V1BETA1}, "
            f"got {show(api_version)}"
        )
        return ValidationResult(None, [Problem("apiVersion", message)])
    if doc.get("kind") != constants.DGD_KIND:
        kind = show(doc.get("kind"))
        return ValidationResult(
            None,
            [Problem("kind", f"must be {constants.DGD_KIND}, got {kind}")],
            api_version=api_version,
        )
    if api_version == constants.GROUP_VERSION_V1BETA1:
        return _validate_v1beta1(doc, creating=creating, images=images, keep_hub=keep_hub)

    result, pruned = _validate_v1alpha1(doc, creating=creating)
    hub: dict[str, Any] | None = None
    if not result.errors:  # conversion assumes the shapes the schema guarantees
        try:
            hub = _up(doc, pruned)
        except ConversionError as exc:
            result.errors.append(_conversion_problem(exc))
    if hub is not None:
        # Dynamo's webhook sees every request as v1beta1: its rules apply to v1alpha1 too,
        # reported in the v1alpha1 spelling (the v1alpha1 rules already cover restarts).
        rules = [
            Problem(to_v1alpha1_path(p.path, hub), p.message, p.severity)
            for p in v1beta1_problems(hub, creating=True, images=False)
        ]
        result.errors = merge(result.errors, [p for p in rules if p.severity == "error"])
    unacted = not_acted_on(doc)
    result.warnings = _without_superseded(result.warnings, unacted) + unacted
    if result.errors:
        result.dgd = None
    else:
        result.hub = hub
    return result


def _up(doc: Mapping[str, Any], pruned: dict[str, Any]) -> dict[str, Any]:
    """The v1beta1 hub of a valid v1alpha1 document; the pruned document when the original
    holds a graph-level field the API server would prune (conversion refuses those)."""
    try:
        return convert(dict(doc), constants.GROUP_VERSION_V1BETA1)
    except ConversionError:
        return convert(pruned, constants.GROUP_VERSION_V1BETA1)


def _conversion_problem(exc: ConversionError) -> Problem:
    path, _, message = str(exc).partition(": ")
    return Problem(path, message) if message else Problem("", str(exc))


def _without_superseded(warnings: list[Problem], unacted: list[Problem]) -> list[Problem]:
    """Drop "unknown field" warnings for fields the v1alpha1 model lacks but Dynamo's schema
    has, where a not-acted-on warning names the field (or a field inside it) instead."""
    return [
        w
        for w in warnings
        if not (
            w.message.startswith(k8s.UNKNOWN_FIELD)
            and any(u.path == w.path or u.path.startswith(w.path + ".") for u in unacted)
        )
    ]


def _validate_v1beta1(
    doc: Mapping[str, Any], *, creating: bool, images: bool = True, keep_hub: bool = True
) -> ValidationResult:
    """The v1beta1 model and rules, then the v1alpha1 rules on the down-converted view."""
    beta = constants.GROUP_VERSION_V1BETA1
    rules = list(v1beta1_problems(doc, creating=creating, images=images))
    warnings = [p for p in rules if p.severity == "warning"]
    try:
        v1beta1.DynamoGraphDeployment.model_validate(doc)
    except ValidationError as exc:
        # The list rules of GraphSpec (unique names, one epp) are about spec.components.
        schema = [
            Problem("spec.components", p.message) if p.path == "spec" else p
            for p in problems_from_pydantic(exc)
        ]
        # The view of a document the model refuses would only restate these problems.
        errors = merge(schema, [p for p in rules if p.severity == "error"])
        return ValidationResult(None, errors, warnings, api_version=beta)
    errors = [p for p in rules if p.severity == "error"]
    try:
        view = convert(dict(doc), constants.GROUP_VERSION)
    except ConversionError as exc:
        errors.append(_conversion_problem(exc))
        return ValidationResult(None, errors, warnings, api_version=beta)
    alpha, _ = _validate_v1alpha1(view, creating=creating)
    errors = merge(errors, [_in_v1beta1(p, doc) for p in alpha.errors])
    for problem in alpha.warnings:
        mapped = _in_v1beta1(problem, doc)
        if problem.message.startswith(k8s.UNKNOWN_FIELD) and not _embedded(mapped.path):
            # The v1beta1 model refuses unknown fields; outside embedded Kubernetes objects,
            # this is a v1beta1 field the v1alpha1 model lacks (`not_acted_on` names it).
            continue
        warnings.append(mapped)
    warnings.extend(not_acted_on_v1beta1(doc))
    if errors:
        return ValidationResult(None, errors, warnings, api_version=beta)
    hub = json_copy(dict(doc)) if keep_hub else None
    return ValidationResult(alpha.dgd, errors, warnings, hub=hub, api_version=beta)


def _in_v1beta1(problem: Problem, hub: Mapping[str, Any]) -> Problem:
    """A problem of the v1alpha1 view at its v1beta1 path (or noted as the other spelling)."""
    path, mapped = to_v1beta1_path(problem.path, hub)
    message = problem.message if mapped else problem.message + OTHER_SPELLING_NOTE
    return Problem(path, message, problem.severity)


def _embedded(path: str) -> bool:
    return ".podTemplate" in path or path.startswith("spec.env")


def _validate_v1alpha1(
    doc: Mapping[str, Any], *, creating: bool
) -> tuple[ValidationResult, dict[str, Any]]:
    """The v1alpha1 checks; also returns the document as pruned by the v1alpha1 schema."""
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
        return ValidationResult(None, errors, warnings), pruned

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
    return ValidationResult(None if errors else dgd, errors, warnings), pruned


def parse_dgd(doc: Mapping[str, Any], *, creating: bool = False) -> DynamoGraphDeployment:
    """Validate `doc` and return the model, or raise `DGDValidationError` naming every field.

    Defaults to `creating=False` (the operator parses stored objects, which may carry a
    restart request); pass True to apply the create-time rules.
    """
    result = validate_dgd(doc, creating=creating)
    if result.errors or result.dgd is None:
        raise DGDValidationError(result.errors)
    return result.dgd
