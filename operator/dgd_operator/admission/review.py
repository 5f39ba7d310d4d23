"""Admission decisions, pure: plain documents in, a `Verdict` (errors and warnings) out.

The rules are those of `dgd validate` (`dgd_operator.api.validation`) plus Dynamo's update
rules: the set of services, `backendFramework`, single-node vs multinode and topology
constraints are fixed after creation; `spec.restart.id` may not change while a rolling update is
Pending or InProgress; the replicas of a service driven by a scaling adapter belong to the
adapter (and the planner).

Updates are *ratcheted* like the API server's own CRD validation: a problem the stored object
already had does not block an unrelated change (labels, finalizers, a replica bump), so objects
created before the webhook existed stay manageable. An object being deleted is always admitted.

Each request is decided in the version it arrives in, on the hub: a v1beta1 object is checked
as it is (Dynamo's v1beta1 rules, then the rules of its v1alpha1 compatibility view, reference
§5.4, named at v1beta1 paths), a v1alpha1 one is converted up and checked the same way, with
problems named in the v1alpha1 spelling its author wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from dgd_operator.api import v1beta1
from dgd_operator.api.constants import DEFAULT_TOPOLOGY_DOMAIN_KEYS, GROUP_VERSION_V1BETA1
from dgd_operator.api.models import DynamoGraphDeployment, DynamoGraphDeploymentScalingAdapter
from dgd_operator.api.naming import PLANNER_SERVICE_ACCOUNT, adapter_name
from dgd_operator.api.validation import (
    Problem,
    ValidationResult,
    update_problems,
    validate_dgd,
)
from dgd_operator.api.validation.errors import problems_from_pydantic, warning
from dgd_operator.api.validation.paths import to_v1beta1_path
from dgd_operator.builders.epp import INFERENCE_POOL_MISSING
from dgd_operator.builders.placement import placement_warnings

CREATE = "CREATE"
UPDATE = "UPDATE"


@dataclass(frozen=True)
class AdmissionPolicy:
    """Request-independent inputs of the decisions (from the webhook settings)."""

    operator_username: str | None = None
    """See `WebhookSettings.operator_username`; None disables the adapter-replicas rule."""
    topology_keys: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_TOPOLOGY_DOMAIN_KEYS)
    )
    """Topology domain names to node label keys (the operator setting), for the placement
    warnings."""
    inference_pool_api: Callable[[], bool | None] = field(default=lambda: None)
    """Whether the cluster serves InferencePools, as last discovered (None: not known, so no
    warning); the admission service refreshes what this returns."""


@dataclass
class Verdict:
    """The decision on one admission request: denied when there are errors."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        """True when the request may proceed."""
        return not self.errors


def review_dgd(
    operation: str,
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    *,
    username: str | None = None,
    policy: AdmissionPolicy | None = None,
) -> Verdict:
    """Decide a CREATE or UPDATE of a DynamoGraphDeployment (`old` is the stored object)."""
    policy = policy or AdmissionPolicy()
    if operation == UPDATE and _being_deleted(new):
        return Verdict()  # never block finalizer removal or other last writes
    if operation != UPDATE or old is None:
        result = validate_dgd(new, creating=True)
        warnings = [*result.warnings, *_placement(result, policy), *_cluster(result, policy, new)]
        return Verdict(list(result.errors), warnings)

    result = validate_dgd(new, creating=False)
    previous = validate_dgd(old, creating=False)
    errors = ratchet(result.errors, previous.errors)
    warnings = ratchet(
        [*result.warnings, *_placement(result, policy)],
        [*previous.warnings, *_placement(previous, policy)],
    )
    warnings.extend(_cluster(result, policy, new))  # what the cluster lacks: said every time
    if result.dgd is not None and previous.dgd is not None:
        # Dynamo's update rules compare the v1alpha1 views (reference §5.4); a v1beta1 request
        # hears about them at its own paths.
        view_problems = [
            *update_problems(previous.dgd, result.dgd),
            *_adapter_replica_problems(previous.dgd, result.dgd, username, policy),
        ]
        if new.get("apiVersion") == GROUP_VERSION_V1BETA1:
            view_problems = [_at_hub_path(p, new) for p in view_problems]
        errors.extend(view_problems)
    return Verdict(_unique(errors), warnings)


def _placement(result: ValidationResult, policy: AdmissionPolicy) -> list[Problem]:
    """What the placement fields of a valid DGD do, in the version it was written in."""
    if result.dgd is None:
        return []
    hub = result.hub if result.api_version == GROUP_VERSION_V1BETA1 else None
    return placement_warnings(result.dgd, hub, topology_keys=policy.topology_keys)


def _cluster(
    result: ValidationResult, policy: AdmissionPolicy, new: Mapping[str, Any]
) -> list[Problem]:
    """What this cluster lacks for the graph: an endpoint picker without the InferencePool API."""
    if result.dgd is None or policy.inference_pool_api() is not False:
        return []
    problems = [
        warning(f"spec.services.{name}", INFERENCE_POOL_MISSING)
        for name, service in sorted(result.dgd.spec.services.items())
        if service is not None and service.component_type == "epp"
    ]
    if new.get("apiVersion") == GROUP_VERSION_V1BETA1:
        problems = [_at_hub_path(p, new) for p in problems]
    return problems


def _at_hub_path(problem: Problem, hub: Mapping[str, Any]) -> Problem:
    """`problem` of the v1alpha1 view, named at its path in the v1beta1 object `hub`."""
    path, _ = to_v1beta1_path(problem.path, hub)
    return Problem(path, problem.message, problem.severity)


def review_dgdsa(
    operation: str, new: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> Verdict:
    """Decide a CREATE or UPDATE of a DynamoGraphDeploymentScalingAdapter."""
    if operation == UPDATE and _being_deleted(new):
        return Verdict()
    errors = _adapter_problems(new)
    if operation == UPDATE and old is not None:
        errors = ratchet(errors, _adapter_problems(old))
    return Verdict(errors)


def ratchet(current: Iterable[Problem], stored: Iterable[Problem]) -> list[Problem]:
    """`current` minus the problems the stored object already had (same path and message)."""
    known = {(p.path, p.message) for p in stored}
    return [p for p in current if (p.path, p.message) not in known]


def is_planner(username: str) -> bool:
    """Whether `username` is Dynamo's planner ServiceAccount (in any namespace)."""
    parts = username.split(":")
    return (
        len(parts) == 4
        and parts[:2] == ["system", "serviceaccount"]
        and parts[3] == PLANNER_SERVICE_ACCOUNT
    )


def _being_deleted(doc: Mapping[str, Any]) -> bool:
    metadata = doc.get("metadata")
    return isinstance(metadata, Mapping) and bool(metadata.get("deletionTimestamp"))


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            out.append(problem)
    return out


def _adapter_replica_problems(
    old: DynamoGraphDeployment,
    new: DynamoGraphDeployment,
    username: str | None,
    policy: AdmissionPolicy,
) -> Iterable[Problem]:
    """Replicas of a service with `scalingAdapter.enabled` belong to its adapter (Dynamo's rule)."""
    if policy.operator_username is None or username is None:
        return
    if username == policy.operator_username or is_planner(username):
        return
    for name in sorted(set(old.spec.services) & set(new.spec.services)):
        before, after = old.spec.services[name], new.spec.services[name]
        managed = (
            before.scaling_adapter is not None
            and before.scaling_adapter.enabled
            and after.scaling_adapter is not None
            and after.scaling_adapter.enabled
        )
        was = 1 if before.replicas is None else before.replicas
        now = 1 if after.replicas is None else after.replicas
        if managed and was != now:
            adapter = adapter_name(new.metadata.name, name)
            yield Problem(
                f"spec.services.{name}.replicas",
                f"is managed by the DynamoGraphDeploymentScalingAdapter {adapter!r}; scale "
                f"that instead (kubectl scale dgdsa {adapter} --replicas={now})",
            )


def _adapter_problems(doc: Mapping[str, Any]) -> list[Problem]:
    """The schema problems of an adapter, in the version it is written in."""
    model = (
        v1beta1.DynamoGraphDeploymentScalingAdapter
        if doc.get("apiVersion") == GROUP_VERSION_V1BETA1
        else DynamoGraphDeploymentScalingAdapter
    )
    try:
        model.model_validate(dict(doc))
    except ValidationError as exc:
        return problems_from_pydantic(exc)
    return []
