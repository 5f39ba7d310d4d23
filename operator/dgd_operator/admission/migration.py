"""Stored-version migration of our CRDs: every object rewritten in the storage version.

A cluster that ran an older Dynamo has DGDs stored as `v1alpha1`, and the CRD lists it in
`status.storedVersions`; Kubernetes refuses to stop serving a version that objects may still be
stored in. Writing each object back unchanged makes the API server store it in the current
storage version (the stored bytes differ, so the write is not skipped); afterwards the old entry
can be dropped from `storedVersions`. Objects are never deleted or changed.

Idempotent and safe on every replica: a CRD whose `storedVersions` is already just its storage
version costs one GET and no write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from dgd_operator.admission.certificates import CRD_PATH
from dgd_operator.controllerkit.kube import KubeClient
from dgd_operator.controllerkit.kubeapi import ApiError, ConflictError, NotFoundError

log = logging.getLogger(__name__)


def storage_version(crd: dict[str, Any]) -> str | None:
    """The version the CRD stores objects in."""
    for version in crd.get("spec", {}).get("versions") or []:
        if version.get("storage"):
            return str(version["name"])
    return None


def needs_migration(crd: dict[str, Any]) -> bool:
    """Whether `status.storedVersions` lists anything but the storage version."""
    storage = storage_version(crd)
    stored = (crd.get("status") or {}).get("storedVersions") or []
    return storage is not None and list(stored) != [storage]


async def migrate_stored_versions(client: KubeClient, crds: Iterable[str]) -> int:
    """Rewrite the objects of every named CRD that needs it, then set `storedVersions`.

    Returns the number of objects rewritten. A missing CRD is skipped; without the right to
    list the objects everywhere (namespace mode) the CRD is left for a cluster admin, with a
    warning.
    """
    rewritten = 0
    for name in crds:
        try:
            crd = await client.request("GET", f"{CRD_PATH}/{name}", verb="get", resource="crds")
        except NotFoundError:
            continue
        if not needs_migration(crd):
            continue
        storage = storage_version(crd)
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        collection = f"/apis/{group}/{storage}/{plural}"
        try:
            listing = await client.request("GET", collection, verb="list", resource=plural)
        except ApiError as exc:
            if exc.status != 403:
                raise
            log.warning("%s: storedVersions %s need a migration this operator may not do: %s",
                        name, crd["status"]["storedVersions"], exc)  # fmt: skip
            continue
        for item in listing.get("items") or []:
            meta = item["metadata"]
            path = f"/apis/{group}/{storage}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"
            try:
                await client.request("PUT", path, verb="update", resource=plural, body=item)
            except (ConflictError, NotFoundError):
                continue  # changed or gone since the list: that write stored it anew already
            rewritten += 1
        status = {"status": {"storedVersions": [storage]}}
        await client.request(
            "PATCH", f"{CRD_PATH}/{name}/status", verb="patch", resource="crds/status",
            body=status, content_type="application/merge-patch+json",
        )  # fmt: skip
        log.info("%s: %d objects stored as %s; storedVersions set", name, rewritten, storage)
    return rewritten
