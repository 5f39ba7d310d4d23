"""Validation of DynamoGraphDeployment documents, as the API server and Dynamo's webhook would.

`validate_dgd` takes a decoded YAML/JSON document and returns every problem at once, each
anchored at a field path in Kubernetes style (`spec.services.decode.replicas: must be >= 0`):
the CRD schema rules (types, enums, minimums, quantities; enforced by the pydantic models),
the CEL rules of Dynamo's CRD, and the create-time rules of Dynamo's admission webhook.
Unknown fields are warnings: the API server would silently prune them, so they do nothing.

`update_problems` holds Dynamo's update-time rules (immutable fields). `parse_dgd` is the
strict entry point for code that needs a model or a permanent error naming the field.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from dgd_operator.api import k8s
from dgd_operator.api.models import (
    API_GROUP,
    DGD_KIND,
    FRONTEND_SIDECAR_CONTAINER,
    GROUP_VERSION,
    MAX_SERVICES,
    DynamoGraphDeployment,
    ExtraPodSpec,
    ObjectMeta,
    ServiceSpec,
)

ORIGIN_VERSION_ANNOTATION = "nvidia.com/dynamo-operator-origin-version"
VLLM_EXECUTOR_ANNOTATION = "nvidia.com/vllm-distributed-executor-backend"
DISCOVERY_MODE_ANNOTATION = "nvidia.com/dynamo-kube-discovery-mode"

MAX_NAME_LENGTH = 63
# A StatefulSet's pods carry `controller-revision-hash: <sts>-<hash>`, a label value (<= 63),
# and the hash takes up to 10 characters plus the dash: StatefulSet names must stay <= 52.
MAX_STATEFULSET_NAME_LENGTH = 52
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
KNOWN_COMPONENT_TYPES = ("frontend", "worker", "prefill", "decode", "planner", "epp")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
# Semantic versions as Dynamo's version parser accepts them (optional `v`, minor/patch optional).
_SEMVER = re.compile(
    r"^v?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?(\.(0|[1-9][0-9]*))?"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_ROLLING_UPDATE_BUSY = ("Pending", "InProgress")

# Hints for unknown fields people really write.
_UNKNOWN_FIELD_HINTS = {
    ("ServiceSpec", "pvc"): (
        "the obsolete per-service `pvc` block; declare the claim in spec.pvcs and mount it "
        "with volumeMounts"
    ),
    ("DynamoGraphDeploymentSpec", "components"): (
        "a v1beta1 field; v1alpha1 uses spec.services (a map)"
    ),
}


@dataclass(frozen=True)
class Problem:
    """One error or warning, anchored at a field path such as `spec.services.decode.replicas`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


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


class DGDValidationError(Exception):
    """Raised by `parse_dgd` for an invalid DGD; `.problems` names every bad field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(
            "; ".join(str(p) for p in self.problems) or "invalid DynamoGraphDeployment"
        )


def is_dgd(doc: object) -> bool:
    """True when `doc` is a mapping of kind DynamoGraphDeployment in API group nvidia.com."""
    if not isinstance(doc, Mapping) or doc.get("kind") != DGD_KIND:
        return False
    api_version = doc.get("apiVersion")
    return isinstance(api_version, str) and api_version.split("/")[0] == API_GROUP


def validate_dgd(doc: Mapping[str, Any], *, creating: bool = True) -> ValidationResult:
    """Validate one DGD document as the API server plus Dynamo's admission webhook would.

    `creating` selects the create-time rules (a restart request must be unset); with False
    the document is checked as an update's new object (restart requests are validated instead).
    Never raises for bad input: every problem is returned with its field path.
    """
    if not isinstance(doc, Mapping):
        return ValidationResult(None, [Problem("", f"expected a mapping, got {_describe(doc)}")])
    api_version = doc.get("apiVersion")
    if api_version != GROUP_VERSION:
        if api_version == f"{API_GROUP}/v1beta1":
            message = f"{API_GROUP}/v1beta1 is not supported yet (use {GROUP_VERSION})"
        else:
            message = f"must be {GROUP_VERSION}, got {_show(api_version)}"
        return ValidationResult(None, [Problem("apiVersion", message)])
    if doc.get("kind") != DGD_KIND:
        return ValidationResult(
            None, [Problem("kind", f"must be {DGD_KIND}, got {_show(doc.get('kind'))}")]
        )

    findings = k8s.Findings()
    pruned = _prune(doc, DynamoGraphDeployment, "", findings)
    warnings = [Problem(path, message) for path, message in findings.warnings]
    embedded_errors = [Problem(path, message) for path, message in findings.errors]
    try:
        dgd = DynamoGraphDeployment.model_validate(pruned)
    except ValidationError as exc:
        errors = _merge(_problems_from_pydantic(exc), embedded_errors)
        # Report the webhook rules too, checked on the document minus its broken fields, so
        # one run lists every problem instead of one layer at a time.
        partial = _without_errors(pruned, exc)
        if partial is not None:
            known = {p.path for p in errors}
            errors.extend(
                p
                for p in _create_problems(partial, pruned, creating=creating)
                if p.path not in known
            )
            warnings.extend(_deprecation_warnings(partial))
        return ValidationResult(None, errors, warnings)

    errors = embedded_errors + list(_create_problems(dgd, pruned, creating=creating))
    warnings.extend(_deprecation_warnings(dgd))
    topology_errors, topology_warnings = _topology_problems(dgd)
    errors.extend(topology_errors)
    if dgd.metadata.namespace:
        # Only knowable with the namespace (the webhook's object always carries it).
        from dgd_operator.builders.names import label_value_problems

        known = {p.path for p in errors}
        errors.extend(
            Problem(path, message)
            for path, message in label_value_problems(dgd.metadata.namespace, dgd)
            if path not in known
        )
    warnings.extend(topology_warnings)
    return ValidationResult(None if errors else dgd, errors, warnings)


def _topology_problems(dgd: DynamoGraphDeployment) -> tuple[list[Problem], list[Problem]]:
    """Backend detection and parallelism-vs-GPU checks, run on an otherwise valid graph.

    They live with the builders because they read launch arguments the way the backend
    injection does; importing lazily keeps the model layer free of the build layer at import.
    """
    from dgd_operator.builders.topology import check_topology

    report = check_topology(dgd)
    return (
        [Problem(p.path, p.message) for p in report.errors],
        [Problem(p.path, p.message) for p in report.warnings],
    )


def parse_dgd(doc: Mapping[str, Any], *, creating: bool = False) -> DynamoGraphDeployment:
    """Validate `doc` and return the model, or raise `DGDValidationError` naming every field.

    Defaults to `creating=False` (the operator parses stored objects, which may carry a
    restart request); pass True to apply the create-time rules.
    """
    result = validate_dgd(doc, creating=creating)
    if result.errors or result.dgd is None:
        raise DGDValidationError(result.errors)
    return result.dgd


def update_problems(old: DynamoGraphDeployment, new: DynamoGraphDeployment) -> list[Problem]:
    """Dynamo's update rules between the stored DGD `old` and the proposed `new`."""
    problems: list[Problem] = []
    if old.spec.backend_framework != new.spec.backend_framework:
        problems.append(
            Problem(
                "spec.backendFramework",
                f"is immutable (was {_show(old.spec.backend_framework)}, "
                f"now {_show(new.spec.backend_framework)})",
            )
        )
    old_names, new_names = set(old.spec.services), set(new.spec.services)
    if old_names != new_names:
        parts = []
        if added := sorted(new_names - old_names):
            parts.append(f"services added: [{', '.join(added)}]")
        if removed := sorted(old_names - new_names):
            parts.append(f"services removed: [{', '.join(removed)}]")
        problems.append(
            Problem(
                "spec.services",
                "service topology is immutable and cannot be modified after creation: "
                + ", ".join(parts),
            )
        )
    for name in sorted(old_names & new_names):
        before, after = old.spec.services[name], new.spec.services[name]
        if before.is_multinode != after.is_multinode:
            was, now = (
                ("multinode", "single-node")
                if before.is_multinode
                else ("single-node", "multinode")
            )
            problems.append(
                Problem(
                    f"{_service_path(name)}.multinode",
                    f"cannot change from {was} to {now} after creation",
                )
            )
        if before.topology_constraint != after.topology_constraint:
            problems.append(Problem(f"{_service_path(name)}.topologyConstraint", "is immutable"))
    if old.spec.topology_constraint != new.spec.topology_constraint:
        problems.append(Problem("spec.topologyConstraint", "is immutable"))
    old_restart = old.spec.restart.id if old.spec.restart else None
    new_restart = new.spec.restart.id if new.spec.restart else None
    rolling = old.status.rolling_update if old.status else None
    if new_restart != old_restart and rolling is not None and rolling.phase in _ROLLING_UPDATE_BUSY:
        problems.append(
            Problem(
                "spec.restart.id",
                f"cannot change while a rolling update is {rolling.phase}",
            )
        )
    return problems


def _without_errors(doc: dict[str, Any], exc: ValidationError) -> DynamoGraphDeployment | None:
    """The model of `doc` with every field pydantic rejected removed, if that parses."""
    current: Any = copy.deepcopy(doc)
    for _attempt in range(4):
        locs = []
        for error in exc.errors(include_url=False):
            loc = [part for part in error["loc"] if part != "[key]"]
            if error["type"] == "missing":
                loc = loc[:-1]  # drop the object that lacks a required field
            if len(loc) < 2:
                return None  # metadata or spec itself is broken: nothing sensible to check
            locs.append(loc)
        # Deepest and highest list indices first, so earlier deletions do not shift later ones.
        for loc in sorted(
            locs, key=lambda parts: [(isinstance(p, str), p) for p in parts], reverse=True
        ):
            _delete(current, loc)
        try:
            return DynamoGraphDeployment.model_validate(current)
        except ValidationError as again:
            exc = again
    return None


def _delete(doc: Any, loc: list[int | str]) -> None:
    parent = doc
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return
    last = loc[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        del parent[last]


# --- unknown fields (pruning) ------------------------------------------------------------


def _prune(value: Any, annotation: Any, path: str, findings: k8s.Findings) -> Any:
    """Return `value` without the fields the API server would prune, recording each one.

    Embedded Kubernetes objects are checked against their real schemas on the way.
    """
    model = _model_of(annotation)
    if model is not None:
        if not isinstance(value, Mapping):
            return value  # pydantic reports the wrong type
        if model is ExtraPodSpec:
            return k8s.check(value, k8s.cached_extra_pod_spec_schema(), path, findings)
        if model is ObjectMeta:
            return dict(value)  # the API server owns metadata
        fields = {(info.alias or name): info for name, info in model.model_fields.items()}
        kept: dict[str, Any] = {}
        for key, item in value.items():
            info = fields.get(key) if isinstance(key, str) else None
            child = _join(path, key)
            if info is None:
                findings.warnings.append((child, _unknown_field_message(model, key, fields)))
                continue
            embedded = k8s.EMBEDDED_FIELDS.get((model.__name__, key))
            if embedded is not None:
                name, is_list = embedded
                if isinstance(item, list if is_list else Mapping):
                    item = k8s.check(item, k8s.cached_field_schema(name, is_list), child, findings)
                kept[key] = item
                continue
            kept[key] = _prune(item, info.annotation, child, findings)
        return kept
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is dict and len(args) == 2 and isinstance(value, Mapping):
        return {k: _prune(v, args[1], _join(path, k), findings) for k, v in value.items()}
    if origin is list and args and isinstance(value, list):
        return [_prune(v, args[0], f"{path}[{i}]", findings) for i, v in enumerate(value)]
    return value


def _merge(first: list[Problem], second: list[Problem]) -> list[Problem]:
    """Both lists, without a second problem for a path the first already names."""
    paths = {p.path for p in first}
    return first + [p for p in second if p.path not in paths]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation denotes (through Optional and Annotated), if any."""
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _unwrap(annotation: Any) -> Iterator[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _unwrap(get_args(annotation)[0])
    elif origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            if arg is not type(None):
                yield from _unwrap(arg)
    else:
        yield annotation


def _unknown_field_message(model: type[BaseModel], key: object, fields: Mapping[str, Any]) -> str:
    message = k8s.UNKNOWN_FIELD
    hint = _UNKNOWN_FIELD_HINTS.get((model.__name__, str(key)))
    if hint:
        return f"{message} ({hint})"
    close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.75)
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    return message


# --- pydantic errors -> field paths ---------------------------------------------------------


def _problems_from_pydantic(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[Problem] = set()
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if part != "[key]"]
        problem = Problem(_loc_to_path(loc), _error_message(error, loc))
        if problem not in seen:
            seen.add(problem)
            problems.append(problem)
    return problems


def _loc_to_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, part)
    return path


def _error_message(error: Any, loc: list[int | str]) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    got = _describe(value)
    if kind == "missing":
        return "required"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {got}"
    if kind == "string_type":
        hint = (
            f' (quote it: "{value}")'
            if isinstance(value, int | float) and not isinstance(value, bool)
            else ""
        )
        return f"must be a string, got {got}{hint}"
    if kind == "bool_type":
        return f"must be true or false, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {got}"
    if kind == "list_type":
        return f"must be a list, got {got}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}, got {value}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {_show(value)}"
    if kind == "too_long":
        if loc == ["spec", "services"]:
            return f"at most {MAX_SERVICES} services are allowed, got {ctx.get('actual_length')}"
        return f"at most {ctx.get('max_length')} items are allowed, got {ctx.get('actual_length')}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}, got {_show(value)}"
    message: str = error.get("msg", "invalid value")
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        return message
    return message[:1].lower() + message[1:]


# --- Dynamo's CEL and webhook rules -----------------------------------------------------------


def _create_problems(
    dgd: DynamoGraphDeployment, doc: Mapping[str, Any], *, creating: bool
) -> Iterator[Problem]:
    spec = dgd.spec
    raw_services = _get(doc, "spec", "services")
    name = dgd.metadata.name
    if not _DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        yield Problem(
            "metadata.name",
            f"{name!r} is not a valid name: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit",
        )
    if not spec.services:
        yield Problem("spec.services", "must have at least one service")

    for index, pvc in enumerate(spec.pvcs):
        if pvc.create:
            for attr, alias in (
                ("size", "size"),
                ("storage_class", "storageClass"),
                ("volume_access_mode", "volumeAccessMode"),
            ):
                if getattr(pvc, attr) is None:
                    yield Problem(f"spec.pvcs[{index}].{alias}", "required when create is true")

    if spec.restart is not None:
        if creating:
            yield Problem(
                "spec.restart",
                "must be unset when the DynamoGraphDeployment is created "
                "(set restart.id later to request a restart)",
            )
        else:
            yield from _restart_problems(dgd)

    yield from _annotation_problems(dgd.metadata.annotations, "metadata.annotations")
    for labels_path, labels, are_labels in (
        ("metadata.labels", dgd.metadata.labels, True),
        ("spec.labels", spec.labels, True),
        ("spec.annotations", spec.annotations, False),
    ):
        yield from _metadata_map_problems(labels, labels_path, labels=are_labels)

    for service_name, service in spec.services.items():
        raw = raw_services.get(service_name) if isinstance(raw_services, Mapping) else None
        yield from _service_problems(name, service_name, service, raw or {})
    first_by_child: dict[str, str] = {}
    for service_name in sorted(spec.services):  # sorted: YAML tools may reorder keys
        other = first_by_child.setdefault(service_name.lower(), service_name)
        if other != service_name:
            yield Problem(
                _service_path(service_name),
                f"collides with service {other!r}: object names are lower-case, so both "
                f"would be named {name}-{service_name.lower()}",
            )


def _restart_problems(dgd: DynamoGraphDeployment) -> Iterator[Problem]:
    restart = dgd.spec.restart
    if restart is None or restart.strategy is None or not restart.strategy.order:
        return
    order = restart.strategy.order
    path = "spec.restart.strategy.order"
    if restart.strategy.type == "Parallel":
        yield Problem(path, "must not be set when strategy.type is Parallel")
        return
    duplicates = sorted({s for s in order if order.count(s) > 1})
    if duplicates:
        yield Problem(path, f"lists services more than once: [{', '.join(duplicates)}]")
    unknown = sorted(set(order) - set(dgd.spec.services))
    if unknown:
        yield Problem(path, f"names services not in spec.services: [{', '.join(unknown)}]")
    missing = sorted(set(dgd.spec.services) - set(order))
    if missing:
        yield Problem(path, f"must list every service; missing: [{', '.join(missing)}]")


def _annotation_problems(annotations: Mapping[str, str], path: str) -> Iterator[Problem]:
    version = annotations.get(ORIGIN_VERSION_ANNOTATION)
    if version is not None and not _SEMVER.match(version):
        yield Problem(
            _join(path, ORIGIN_VERSION_ANNOTATION),
            f"must be a semantic version such as 1.0.0, got {version!r}",
        )
    backend = annotations.get(VLLM_EXECUTOR_ANNOTATION)
    if backend is not None and backend.lower() not in ("mp", "ray"):
        yield Problem(
            _join(path, VLLM_EXECUTOR_ANNOTATION), f"must be 'mp' or 'ray', got {backend!r}"
        )
    mode = annotations.get(DISCOVERY_MODE_ANNOTATION)
    if mode is not None and mode not in ("pod", "container"):
        yield Problem(
            _join(path, DISCOVERY_MODE_ANNOTATION), f"must be 'pod' or 'container', got {mode!r}"
        )


def _service_problems(
    dgd_name: str, service_name: str, service: ServiceSpec, raw: Mapping[str, Any]
) -> Iterator[Problem]:
    path = _service_path(service_name)
    yield from _name_problems(dgd_name, service_name, service, path)

    if service.ingress is not None and service.ingress.enabled and not service.ingress.host:
        yield Problem(f"{path}.ingress.host", "required when ingress.enabled is true")

    for index, mount in enumerate(service.volume_mounts):
        if not mount.mount_point and not mount.use_as_compilation_cache:
            yield Problem(
                f"{path}.volumeMounts[{index}].mountPoint",
                "required unless useAsCompilationCache is true",
            )

    raw_shm = raw.get("sharedMemory")
    if isinstance(raw_shm, Mapping) and raw_shm.get("disabled") is True and "size" in raw_shm:
        yield Problem(f"{path}.sharedMemory.size", "must be unset when disabled is true")

    if service.frontend_sidecar is not None and service.extra_pod_spec is not None:
        containers = service.extra_pod_spec.pod_spec().get("containers")
        for index, container in enumerate(containers if isinstance(containers, list) else []):
            if (
                isinstance(container, Mapping)
                and container.get("name") == FRONTEND_SIDECAR_CONTAINER
            ):
                yield Problem(
                    f"{path}.frontendSidecar",
                    f"conflicts with extraPodSpec.containers[{index}], already named "
                    f"{FRONTEND_SIDECAR_CONTAINER!r}",
                )

    yield from _annotation_problems(service.annotations, f"{path}.annotations")
    maps: list[tuple[str, Mapping[str, str], bool]] = [
        (f"{path}.labels", service.labels, True),
        (f"{path}.annotations", service.annotations, False),
    ]
    if service.extra_pod_metadata is not None:
        maps.append((f"{path}.extraPodMetadata.labels", service.extra_pod_metadata.labels, True))
        maps.append(
            (f"{path}.extraPodMetadata.annotations", service.extra_pod_metadata.annotations, False)
        )
    if service.ingress is not None:
        maps.append((f"{path}.ingress.labels", service.ingress.labels, True))
        maps.append((f"{path}.ingress.annotations", service.ingress.annotations, False))
    for map_path, values, are_labels in maps:
        yield from _metadata_map_problems(values, map_path, labels=are_labels)


def _metadata_map_problems(
    values: Mapping[str, str], path: str, *, labels: bool
) -> Iterator[Problem]:
    """Label and annotation keys must be qualified names; label values must be label values."""
    for key, value in values.items():
        reason = _qualified_name_problem(key)
        if reason:
            yield Problem(_join(path, key), f"invalid key: {reason}")
        if labels and (len(value) > MAX_NAME_LENGTH or not _LABEL_VALUE.match(value)):
            yield Problem(
                _join(path, key),
                f"invalid label value {value!r}: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
            )


def _qualified_name_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return f"prefix {prefix!r} must be a DNS subdomain such as example.com"
    if not name or len(name) > MAX_NAME_LENGTH or not _QUALIFIED_NAME.match(name):
        return (
            f"name part {name!r} must be at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def _name_problems(
    dgd_name: str, service_name: str, service: ServiceSpec, path: str
) -> Iterator[Problem]:
    """Children are named `<dgd>-<lower(service)>`: that must be a valid Service name."""
    lowered = service_name.lower()
    if not _DNS1123_LABEL.match(lowered):
        yield Problem(
            path,
            f"service name {service_name!r} must consist of letters, digits and '-', starting "
            "and ending with a letter or digit (it becomes part of Kubernetes object names)",
        )
        return
    base = f"{dgd_name}-{lowered}"
    if len(base) > MAX_NAME_LENGTH or not _DNS1035_LABEL.match(base):
        yield Problem(
            path,
            f"child name {base!r} must be a DNS-1035 label of at most {MAX_NAME_LENGTH} "
            f"characters (now {len(base)}); shorten the DGD or service name",
        )
        return
    if service.is_multinode:
        last_group = max((service.replicas if service.replicas is not None else 1) - 1, 0)
        longest = f"{base}-{last_group}-ldr"
        if len(longest) > MAX_STATEFULSET_NAME_LENGTH or len(f"{base}-nodes") > MAX_NAME_LENGTH:
            yield Problem(
                path,
                f"multinode StatefulSet name {longest!r} is longer than "
                f"{MAX_STATEFULSET_NAME_LENGTH} characters; shorten the DGD or service name",
            )


def _deprecation_warnings(dgd: DynamoGraphDeployment) -> Iterator[Problem]:
    for service_name, service in dgd.spec.services.items():
        path = _service_path(service_name)
        component_type = service.component_type
        if component_type and component_type not in KNOWN_COMPONENT_TYPES:
            close = difflib.get_close_matches(component_type, KNOWN_COMPONENT_TYPES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            yield Problem(
                f"{path}.componentType",
                f"{component_type!r} is not one of {', '.join(KNOWN_COMPONENT_TYPES)}: the "
                f"service runs as a plain container{hint}",
            )
        if service.dynamo_namespace is not None:
            yield Problem(
                f"{path}.dynamoNamespace",
                "deprecated and ignored: the Dynamo namespace is computed from the "
                "DGD's namespace and name",
            )
        if service.autoscaling is not None:
            yield Problem(
                f"{path}.autoscaling",
                "deprecated and ignored: set scalingAdapter.enabled and point an HPA or "
                "KEDA at the DynamoGraphDeploymentScalingAdapter",
            )


# --- small helpers ---------------------------------------------------------------------------


def _service_path(service_name: str) -> str:
    return _join("spec.services", service_name)


_join = k8s.join
_describe = k8s.describe


def _get(doc: Mapping[str, Any], *keys: str) -> Any:
    value: Any = doc
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else _describe(value)
