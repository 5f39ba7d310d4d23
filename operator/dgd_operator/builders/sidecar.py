"""`frontendSidecar`: a frontend container in a worker's pod (Gateway API Inference Extension).

The two API versions mean different things by the field, and the builders see both through
the v1alpha1 view:

- v1alpha1 `frontendSidecar: {image, args, envFromSecret, envs}` describes a container that is
  appended to the pod as `sidecar-frontend`;
- v1beta1 `frontendSidecar: <name>` names a container of `podTemplate.spec.containers` (kept in
  `extraPodSpec.containers` by the conversion, the name in the `nvidia.com/dgd-spec` payload).

Either way the container is built as a frontend of the same component (`dynamo-v1beta1.md`
§8.3): the frontend defaults (command, port `http` 8000, probes, env with
`DYN_COMPONENT=frontend` and `DYN_NAMESPACE_PREFIX`), the user's container merged over them,
the operator's infrastructure env, then the main container's volume mounts it lacks.
"""

from __future__ import annotations

import json
from typing import Any

from dgd_operator.api import constants
from dgd_operator.api.models import FRONTEND_SIDECAR_CONTAINER, FrontendSidecar
from dgd_operator.api.tree import json_copy
from dgd_operator.builders.container import (
    Container,
    default_container,
    merge_main_container,
    ordered_container,
)
from dgd_operator.builders.context import ServiceContext
from dgd_operator.builders.env import add_missing_envs, env_var, infrastructure_env, merge_envs
from dgd_operator.builders.errors import BuildError


def named_sidecar(ctx: ServiceContext) -> str | None:
    """The v1beta1 `frontendSidecar` container name of this component, from the conversion
    payload of the v1alpha1 view (None when the graph was written as v1alpha1 or sets none)."""
    raw = ctx.graph.dgd.metadata.annotations.get(constants.ANNOTATION_DGD_SPEC)
    if not raw:
        return None
    try:
        payload = json.loads(raw)
    except ValueError:
        return None  # an unreadable payload carries nothing for us (the conversion ignores it too)
    spec = payload.get("spec", payload) if isinstance(payload, dict) else None
    components = spec.get("components") if isinstance(spec, dict) else None
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and component.get("name") == ctx.service:
            name = component.get("frontendSidecar")
            return name if isinstance(name, str) and name else None
    return None


def sidecar_container_spec(sidecar: FrontendSidecar) -> Container:
    """The container a v1alpha1 `frontendSidecar` object describes."""
    container: Container = {"name": FRONTEND_SIDECAR_CONTAINER, "image": sidecar.image}
    if sidecar.args:
        container["args"] = list(sidecar.args)
    if sidecar.envs:
        container["env"] = json_copy(list(sidecar.envs))
    if sidecar.env_from_secret:
        container["envFrom"] = [{"secretRef": {"name": sidecar.env_from_secret}}]
    return container


def frontend_context(ctx: ServiceContext) -> ServiceContext:
    """The same component seen as a frontend (same graph, name and Dynamo namespace)."""
    spec = ctx.spec.model_copy(update={"component_type": constants.COMPONENT_FRONTEND})
    return ServiceContext(ctx.graph, ctx.service, spec, ctx.restart_id)


def build_frontend_sidecar(ctx: ServiceContext, user: Container, main: Container) -> Container:
    """Frontend defaults, `user` merged over them, infrastructure env, main's missing mounts."""
    name = str(user["name"])
    container = merge_main_container(default_container(frontend_context(ctx)), user)
    container["name"] = name
    env = container.get("env") or []
    if any(var.get("name") == "CONTAINER_NAME" for var in env):
        # Container discovery mode: the sidecar registers under its own container name.
        env = merge_envs(env, [env_var("CONTAINER_NAME", name)])
    container["env"] = add_missing_envs(env, infrastructure_env(ctx.graph.options))
    mounts: list[dict[str, Any]] = list(container.get("volumeMounts") or [])
    taken = {m.get("name") for m in mounts}
    mounts += [json_copy(m) for m in main.get("volumeMounts") or [] if m.get("name") not in taken]
    if mounts:
        container["volumeMounts"] = mounts
    return ordered_container(container)


def with_frontend_sidecar(
    ctx: ServiceContext, containers: list[Container], main: Container
) -> list[Container]:
    """The pod's containers with the component's frontend sidecar built (if it has one).

    A v1alpha1 sidecar is appended after the others (it takes the name `sidecar-frontend`, so a
    user container of that name gives way); a v1beta1 one is rebuilt in place. A v1beta1 name
    that matches no container is a `BuildError`.
    """
    if ctx.spec.frontend_sidecar is not None:
        user = sidecar_container_spec(ctx.spec.frontend_sidecar)
        others = [c for c in containers if c.get("name") != FRONTEND_SIDECAR_CONTAINER]
        return [*others, build_frontend_sidecar(ctx, user, main)]
    name = named_sidecar(ctx)
    if name is None:
        return containers
    if not any(c.get("name") == name for c in containers):
        raise BuildError(
            f"{ctx.path}.frontendSidecar", f"names no container of the pod template: {name!r}"
        )
    return [
        build_frontend_sidecar(ctx, c, main) if c.get("name") == name else c for c in containers
    ]
