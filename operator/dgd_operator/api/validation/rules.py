"""Dynamo's CEL rules and create-time webhook rules, and the child-name length limits."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from dgd_operator.api import constants, naming
from dgd_operator.api.models import FRONTEND_SIDECAR_CONTAINER, DynamoGraphDeployment, ServiceSpec
from dgd_operator.api.validation.errors import Problem, get_path, join, service_path, warning

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
# Semantic versions as Dynamo's version parser accepts them (optional `v`, minor/patch optional).
_SEMVER = re.compile(
    r"^v?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?(\.(0|[1-9][0-9]*))?"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)


def create_problems(
    dgd: DynamoGraphDeployment, doc: Mapping[str, Any], *, creating: bool
) -> Iterator[Problem]:
    """Dynamo's CEL and create-time webhook rules; `doc` is the pruned document (raw values)."""
    spec = dgd.spec
    raw_services = get_path(doc, "spec", "services")
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
                service_path(service_name),
                f"collides with service {other!r}: object names are lower-case, so both "
                f"would be named {naming.component_name(name, service_name)}",
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
    version = annotations.get(constants.ANNOTATION_ORIGIN_VERSION)
    if version is not None and not _SEMVER.match(version):
        yield Problem(
            join(path, constants.ANNOTATION_ORIGIN_VERSION),
            f"must be a semantic version such as 1.0.0, got {version!r}",
        )
    backend = annotations.get(constants.ANNOTATION_VLLM_EXECUTOR)
    if backend is not None and backend.lower() not in ("mp", "ray"):
        yield Problem(
            join(path, constants.ANNOTATION_VLLM_EXECUTOR),
            f"must be 'mp' or 'ray', got {backend!r}",
        )
    mode = annotations.get(constants.ANNOTATION_KUBE_DISCOVERY_MODE)
    if mode is not None and mode not in ("pod", "container"):
        yield Problem(
            join(path, constants.ANNOTATION_KUBE_DISCOVERY_MODE),
            f"must be 'pod' or 'container', got {mode!r}",
        )


def _service_problems(
    dgd_name: str, service_name: str, service: ServiceSpec, raw: Mapping[str, Any]
) -> Iterator[Problem]:
    path = service_path(service_name)
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
            yield Problem(join(path, key), f"invalid key: {reason}")
        if labels and (len(value) > naming.MAX_LABEL_VALUE or not _LABEL_VALUE.match(value)):
            yield Problem(
                join(path, key),
                f"invalid label value {value!r}: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
            )


def _qualified_name_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return f"prefix {prefix!r} must be a DNS subdomain such as example.com"
    if not name or len(name) > naming.MAX_LABEL_VALUE or not _QUALIFIED_NAME.match(name):
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
    base = naming.component_name(dgd_name, service_name)
    if len(base) > naming.MAX_LABEL_VALUE or not _DNS1035_LABEL.match(base):
        yield Problem(
            path,
            f"child name {base!r} must be a DNS-1035 label of at most {naming.MAX_LABEL_VALUE} "
            f"characters (now {len(base)}); shorten the DGD or service name",
        )
        return
    if service.is_multinode:
        replicas = service.replicas if service.replicas is not None else 1
        longest = naming.longest_group_statefulset_name(dgd_name, service_name, replicas)
        nodes = naming.nodes_service_name(dgd_name, service_name)
        if len(longest) > naming.MAX_STATEFULSET_NAME or len(nodes) > naming.MAX_LABEL_VALUE:
            yield Problem(
                path,
                f"multinode StatefulSet name {longest!r} is longer than "
                f"{naming.MAX_STATEFULSET_NAME} characters; shorten the DGD or service name",
            )


def deprecation_warnings(dgd: DynamoGraphDeployment) -> Iterator[Problem]:
    """Fields that are accepted but do nothing, and component types that run as plain containers."""
    for service_name, service in dgd.spec.services.items():
        path = service_path(service_name)
        component_type = service.component_type
        if component_type and component_type not in constants.COMPONENT_TYPES:
            close = difflib.get_close_matches(component_type, constants.COMPONENT_TYPES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            yield warning(
                f"{path}.componentType",
                f"{component_type!r} is not one of {', '.join(constants.COMPONENT_TYPES)}: the "
                f"service runs as a plain container{hint}",
            )
        if service.dynamo_namespace is not None:
            yield warning(
                f"{path}.dynamoNamespace",
                "deprecated and ignored: the Dynamo namespace is computed from the "
                "DGD's namespace and name",
            )
        if service.autoscaling is not None:
            yield warning(
                f"{path}.autoscaling",
                "deprecated and ignored: set scalingAdapter.enabled and point an HPA or "
                "KEDA at the DynamoGraphDeploymentScalingAdapter",
            )


def label_value_problems(k8s_namespace: str, dgd: DynamoGraphDeployment) -> list[Problem]:
    """Names that would make a child's label value longer than 63 characters.

    The API server refuses such children with a 422 only when they are applied; the DGD name
    is copied into `nvidia.com/dynamo-graph-deployment-name`, and `<namespace>-<name>` into
    `nvidia.com/dynamo-namespace` of every service without `globalDynamoNamespace`.
    """
    name = dgd.metadata.name
    limit = naming.MAX_LABEL_VALUE
    if len(name) > limit:
        return [
            Problem(
                "metadata.name",
                f"{len(name)} characters: it becomes the label value {constants.LABEL_GRAPH}, "
                f"which is limited to {limit}",
            )
        ]
    if all(spec.global_dynamo_namespace for spec in dgd.spec.services.values()):
        return []
    value = naming.dynamo_namespace(k8s_namespace, name)
    if len(value) <= limit:
        return []
    allowed = limit - len(k8s_namespace) - 1
    return [
        Problem(
            "metadata.name",
            f"the Dynamo namespace {value!r} (<namespace>-<name>) is {len(value)} characters, but "
            f"it is the label value {constants.LABEL_DYNAMO_NAMESPACE}, limited to {limit}: in "
            f"namespace {k8s_namespace!r} the name may have at most {max(allowed, 0)} characters",
        )
    ]
