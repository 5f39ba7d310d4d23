"""What a controller needs to know about the Kubernetes API, without an HTTP client.

- `KubeAPI`: the calls a reconcile makes (GET, LIST, server-side apply, merge patch, POST,
  DELETE with a uid precondition). `kube.KubeClient` implements it over aiohttp; test fakes
  implement it in memory and type-check against it.
- The typed error hierarchy (`NotFoundError`, `ConflictError`, `InvalidError`,
  `TransientError`), so a reconcile can tell "fix your spec" from "try again later" (the habit
  of kopf's `clients/errors.py`).
- `ResourceKind` and `Kinds`: where a kind lives in the API (group/version, plural, scope). The
  built-in kinds are listed here; an operator passes its own CRD kinds in. An unknown kind
  raises `UnknownKindError` instead of guessing a plural (`NetworkPolicy` is not
  `networkpolicys`).

This module is what reconcile code imports; only `main` and the kit construct the client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

Manifest = dict[str, Any]
"""A Kubernetes object as plain JSON-shaped data."""


@dataclass(frozen=True)
class ResourceKind:
    """Where a kind lives in the API: group/version, plural, and whether it is namespaced."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        """The API group ("" for the core group)."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        """The API version within the group."""
        return self.api_version.rpartition("/")[2]

    def collection_path(self, namespace: str | None) -> str:
        """URL path of the kind's collection (in `namespace` when namespaced)."""
        base = (
            f"/api/{self.api_version}"
            if "/" not in self.api_version
            else f"/apis/{self.api_version}"
        )
        if self.namespaced and namespace:
            return f"{base}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, namespace: str | None, name: str, subresource: str | None = None) -> str:
        """URL path of one object (optionally one of its subresources)."""
        path = f"{self.collection_path(namespace)}/{quote(name, safe='')}"
        return f"{path}/{subresource}" if subresource else path


BUILTIN_KINDS: tuple[ResourceKind, ...] = (
    ResourceKind("v1", "Service", "services"),
    ResourceKind("v1", "ConfigMap", "configmaps"),
    ResourceKind("v1", "Secret", "secrets"),
    ResourceKind("v1", "ServiceAccount", "serviceaccounts"),
    ResourceKind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ResourceKind("v1", "Pod", "pods"),
    ResourceKind("v1", "Event", "events"),
    ResourceKind("v1", "Namespace", "namespaces", namespaced=False),
    ResourceKind("apps/v1", "Deployment", "deployments"),
    ResourceKind("apps/v1", "StatefulSet", "statefulsets"),
    ResourceKind("rbac.authorization.k8s.io/v1", "Role", "roles"),
    ResourceKind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    ResourceKind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ResourceKind("networking.k8s.io/v1", "Ingress", "ingresses"),
)
"""The built-in kinds controllers here create, read or watch."""


class UnknownKindError(LookupError):
    """A kind that is not in the registry: register it rather than guess its plural."""


class Kinds:
    """A registry of `ResourceKind`s: the built-in ones plus those passed in (CRDs)."""

    def __init__(self, extra: Iterable[ResourceKind] = ()) -> None:
        self._kinds = {(k.api_version, k.kind): k for k in (*BUILTIN_KINDS, *extra)}

    def of(self, api_version: str, kind: str) -> ResourceKind:
        """The `ResourceKind` of `apiVersion`/`kind`; raises `UnknownKindError` if unregistered."""
        try:
            return self._kinds[(api_version, kind)]
        except KeyError:
            raise UnknownKindError(f"{api_version}/{kind} is not a registered kind") from None


class ApiError(Exception):
    """The API server refused a request (or could not be reached)."""

    def __init__(
        self, status: int, reason: str, message: str, *, body: Mapping[str, Any] | None = None
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.body: Mapping[str, Any] = body or {}
        super().__init__(f"{status} {reason}: {message}")


class NotFoundError(ApiError):
    """404: the object (or its kind) does not exist."""


class ConflictError(ApiError):
    """409: an optimistic-concurrency or field-manager conflict; retry after re-reading."""


class InvalidError(ApiError):
    """422 (or 400): the API server rejects the object itself; retrying cannot help."""


class TransientError(ApiError):
    """429, 5xx, timeouts and connection failures: retry later with backoff."""


def error_for(status: int, body: Mapping[str, Any], text: str) -> ApiError:
    """The typed error for an HTTP error response."""
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or text[:500])
    if status == 404:
        return NotFoundError(status, reason or "NotFound", message, body=body)
    if status == 409:
        return ConflictError(status, reason or "Conflict", message, body=body)
    if status in (400, 422):
        return InvalidError(status, reason or "Invalid", message, body=body)
    if status == 429 or status >= 500:
        return TransientError(status, reason or "ServerError", message, body=body)
    return ApiError(status, reason or "Error", message, body=body)


class KubeAPI(Protocol):
    """The Kubernetes calls a controller makes, on plain-dict manifests."""

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Manifest | None:
        """Read one object; `None` when it does not exist."""
        ...

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
    ) -> list[Manifest]:
        """List objects of a kind (in `namespace`, or everywhere when it is None)."""
        ...

    async def discover(self, path: str) -> Manifest | None:
        """GET a discovery document such as `/apis/<group>/<version>`; None when not served."""
        ...

    async def apply(
        self, manifest: Manifest, *, subresource: str | None = None, force: bool = True
    ) -> Manifest:
        """Server-side apply `manifest` (or its subresource); returns the live object."""
        ...

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> Manifest:
        """JSON merge patch (RFC 7386) of one object or subresource."""
        ...

    async def json_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        operations: Sequence[Mapping[str, Any]],
    ) -> Manifest:
        """JSON patch (RFC 6902) of one object (a `metadata.resourceVersion` it sets is a
        precondition: the API server answers a conflict when the object changed)."""
        ...

    async def create(self, manifest: Manifest) -> Manifest:
        """POST a new object."""
        ...

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        """Delete one object (only if its uid still matches); False when it was already gone."""
        ...

    async def close(self) -> None:
        """Release the connection (idempotent)."""
        ...
