"""What a recipe expects of the cluster it runs on, read from the objects `dgd render` makes.

Production recipes assume things a fresh local cluster lacks: enough 8-GPU nodes for every pod
(a multinode group takes one node per rank), a model-cache PVC created beforehand
(``pvcs: [{name: model-cache, create: false}]``) and an ``hf-token-secret``. The demo sizes
its cluster from :func:`gpu_nodes_needed` and creates the missing objects of
:func:`missing_objects` (an unbound PVC the local provisioner binds; Secrets holding
placeholder values: the mock engine downloads nothing).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from dgd_operator.dev.rest import JsonDict

GPU = "nvidia.com/gpu"
PLACEHOLDER = "dgd-demo-placeholder"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def _pod_specs(rendered: Sequence[JsonDict]) -> Iterator[tuple[int, JsonDict]]:
    """(replicas, pod spec) of every workload in ``rendered``."""
    for obj in rendered:
        if obj.get("kind") in WORKLOAD_KINDS:
            spec = obj.get("spec") or {}
            replicas = 1 if spec.get("replicas") is None else int(spec["replicas"])
            yield replicas, ((spec.get("template") or {}).get("spec") or {})


def _gpus(pod: JsonDict) -> int:
    total = 0
    for container in pod.get("containers") or []:
        resources = container.get("resources") or {}
        wanted = (resources.get("limits") or {}).get(GPU) or (resources.get("requests") or {}).get(
            GPU
        )
        total += int(wanted or 0)
    return total


def gpu_nodes_needed(rendered: Sequence[JsonDict], gpus_per_node: int) -> int:
    """Nodes of ``gpus_per_node`` GPUs that hold every pod (first fit, largest pods first).

    A pod larger than a node fits nowhere and adds no node: it stays Pending, and the demo's
    wait reports the scheduler's reason.
    """
    pods = sorted(
        (_gpus(pod) for replicas, pod in _pod_specs(rendered) for _ in range(replicas)),
        reverse=True,
    )
    free: list[int] = []
    for gpus in pods:
        if gpus == 0 or gpus > gpus_per_node:
            continue
        slot = next((i for i, room in enumerate(free) if room >= gpus), None)
        if slot is None:
            free.append(gpus_per_node - gpus)
        else:
            free[slot] -= gpus
    return len(free)


def missing_objects(rendered: Sequence[JsonDict], namespace: str) -> list[JsonDict]:
    """PVCs and Secrets the pods of ``rendered`` mount or read but ``rendered`` does not create.

    Optional references are skipped (a pod starts without them).
    """
    made = {(o.get("kind"), (o.get("metadata") or {}).get("name")) for o in rendered}
    claims: set[str] = set()
    secrets: dict[str, set[str]] = {}
    for _, pod in _pod_specs(rendered):
        for volume in pod.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                claims.add(str(claim))
            secret = volume.get("secret") or {}
            if secret.get("secretName") and not secret.get("optional"):
                secrets.setdefault(str(secret["secretName"]), set())
        for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            for source in container.get("envFrom") or []:
                ref = source.get("secretRef") or {}
                if ref.get("name") and not ref.get("optional"):
                    secrets.setdefault(str(ref["name"]), set())
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
                if ref.get("name") and not ref.get("optional"):
                    secrets.setdefault(str(ref["name"]), set()).add(str(ref.get("key", "")))
    out: list[JsonDict] = [
        _claim(name, namespace)
        for name in sorted(claims)
        if ("PersistentVolumeClaim", name) not in made
    ]
    out += [
        _secret(name, namespace, keys)
        for name, keys in sorted(secrets.items())
        if ("Secret", name) not in made
    ]
    return out


def _claim(name: str, namespace: str) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def _secret(name: str, namespace: str, keys: set[str]) -> JsonDict:
    data: dict[str, Any] = {key: PLACEHOLDER for key in sorted(keys) if key}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": data,
    }


def describe(obj: JsonDict) -> str:
    """``PersistentVolumeClaim model-cache`` style."""
    return f"{obj['kind']} {obj['metadata']['name']}"
