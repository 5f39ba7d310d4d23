"""Container images: every container the operator creates needs one, and an unexpanded
`${VAR}` (a template variable nobody substituted, as in Dynamo's examples' `${IMAGE_TAG}`)
would only fail at the kubelet's pull, so it is warned about here.

An empty image is an error. A main container without an `image` key is left alone: Dynamo's
v1alpha1 webhook admits it (it requires the image only for v1beta1) and the graphs of tests
and tools often omit it; sidecar and init containers have nothing to inherit from, so a
missing image there is an error.

The API server accepts a DGD with `image: ""` (the CRD types it as a plain string); the
Deployment the operator then builds is refused, and the graph fails at reconcile. Checking at
validation (and so at admission) names the field before anything is created.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from dgd_operator.api.validation.errors import Problem, get_path, join, service_path, warning

_UNEXPANDED = re.compile(r"\$\{[^}]*\}")


def image_problems(doc: Mapping[str, Any]) -> Iterator[Problem]:
    """Problems of the images of every service's main, sidecar and init containers in the
    (pruned) DGD document `doc`."""
    services = get_path(doc, "spec", "services")
    if not isinstance(services, Mapping):
        return
    for name, service in services.items():
        pod = get_path(service, "extraPodSpec") if isinstance(service, Mapping) else None
        base = join(service_path(str(name)), "extraPodSpec")
        main = get_path(pod, "mainContainer") if isinstance(pod, Mapping) else None
        yield from _check(
            main if isinstance(main, Mapping) else {}, join(base, "mainContainer"), main=True
        )
        if not isinstance(pod, Mapping):
            continue
        for key in ("containers", "initContainers"):
            containers = pod.get(key)
            if not isinstance(containers, list):
                continue
            for index, container in enumerate(containers):
                if isinstance(container, Mapping):
                    yield from _check(container, f"{base}.{key}[{index}]", main=False)


def _check(container: Mapping[str, Any], path: str, *, main: bool) -> Iterator[Problem]:
    image = container.get("image")
    where = join(path, "image")
    if image is None:
        if not main:
            yield Problem(where, "required")
    elif not isinstance(image, str) or not image.strip():
        yield Problem(where, "must not be empty")
    elif image != image.strip() or any(c.isspace() for c in image):
        yield Problem(where, f"{image!r} contains whitespace")
    elif match := _UNEXPANDED.search(image):
        yield warning(
            where,
            f"{image!r} contains {match.group()}, which Kubernetes does not expand; "
            "substitute it (envsubst, Kustomize, Helm) before applying",
        )
