"""PersistentVolumeClaims the graph asks the operator to create (`spec.pvcs[].create: true`)."""

from __future__ import annotations

from dgd_operator.api.k8s import Manifest
from dgd_operator.builders.context import GraphContext
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.labels import object_metadata


def build_pvcs(graph: GraphContext) -> list[Manifest]:
    """One PVC per `pvcs[]` entry with `create: true`; the others must already exist."""
    claims: list[Manifest] = []
    for index, pvc in enumerate(graph.dgd.spec.pvcs):
        if not pvc.create:
            continue
        missing = [
            alias
            for alias, value in (
                ("size", pvc.size),
                ("storageClass", pvc.storage_class),
                ("volumeAccessMode", pvc.volume_access_mode),
            )
            if not value
        ]
        if missing:
            raise BuildError(f"spec.pvcs[{index}]", f"create: true requires {', '.join(missing)}")
        claims.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": object_metadata(graph, pvc.name, {}),
                "spec": {
                    "accessModes": [pvc.volume_access_mode],
                    "storageClassName": pvc.storage_class,
                    "resources": {"requests": {"storage": pvc.size}},
                },
            }
        )
    return claims
