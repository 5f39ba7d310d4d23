"""The webhook reviews on the wire, pure: a review document in, its response document out.

The API server sends three kinds of request to the operator's webhook server:

* a `ConversionReview` (`apiextensions.k8s.io/v1`) asking for DGDs or DGDSAs at another
  version (`convert_review`), answered with `dgd_operator.api.conversion`;
* a validating `AdmissionReview` (`admission.k8s.io/v1`) for a DGD or DGDSA
  (`validate_review`), decided by `dgd_operator.admission.review`;
* a mutating `AdmissionReview` for a DGD (`mutate_review`): Dynamo's defaults (reference §4) as
  an RFC 6902 JSON patch.

Objects arrive at the version the webhook is registered for (v1beta1, the hub, once the CRDs
serve it; v1alpha1 before). The validation rules read the v1alpha1 view, so hub objects are
converted down first; the defaults are written in the object's own version.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from dgd_operator.admission.messages import rejection_message, warning_text
from dgd_operator.admission.review import (
    CREATE,
    AdmissionPolicy,
    Verdict,
    review_dgd,
    review_dgdsa,
)
from dgd_operator.api.constants import (
    ANNOTATION_ORIGIN_VERSION,
    API_VERSION,
    DGD_KIND,
    DGDSA_KIND,
    GROUP_VERSION,
    GROUP_VERSION_V1BETA1,
)
from dgd_operator.api.conversion import ConversionError, convert

Review = dict[str, Any]

CONVERSION_API_VERSION: Final = "apiextensions.k8s.io/v1"
ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
# HTTP status of a denial (what controller-runtime, and so Dynamo's webhook, answers).
DENIED: Final = 403
# HTTP status of a request the webhook cannot read.
BAD_REQUEST: Final = 400
CONVERTIBLE_KINDS: Final = frozenset({DGD_KIND, DGDSA_KIND})

# Webhook ids; `/<id>` is the URL path of each review (the configurations route by path).
DGD_WEBHOOK_ID: Final = "validate-dgd"
DGDSA_WEBHOOK_ID: Final = "validate-dgdsa"
MUTATE_DGD_WEBHOOK_ID: Final = "mutate"
CONVERT_PATH: Final = "/convert"


class ReviewError(ValueError):
    """The review document itself is malformed (answered with HTTP 400)."""


def _request(review: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    if review.get("kind") != kind:
        raise ReviewError(f"expected a {kind}, got kind {review.get('kind')!r}")
    request = review.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise ReviewError(f"{kind}: `request.uid` is missing")
    return request


# --- conversion ------------------------------------------------------------------------------


def convert_review(review: Mapping[str, Any]) -> Review:
    """Answer a ConversionReview: every object at `request.desiredAPIVersion`, or a Failure.

    A failed conversion answers `result.status: Failure` with a message naming the object and
    the field, which the API server passes on to the client whose read or write needed it.
    """
    request = _request(review, "ConversionReview")
    desired = request.get("desiredAPIVersion")
    objects = request.get("objects") or []
    response: Review = {"uid": request["uid"]}
    try:
        if desired not in (GROUP_VERSION, GROUP_VERSION_V1BETA1):
            raise ConversionError(f"cannot convert to {desired!r}")
        response["convertedObjects"] = [_convert_one(obj, str(desired)) for obj in objects]
        response["result"] = {"status": "Success"}
    except ConversionError as exc:
        response["result"] = {"status": "Failure", "message": str(exc)}
    return {"apiVersion": CONVERSION_API_VERSION, "kind": "ConversionReview", "response": response}


def _convert_one(obj: Any, desired: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ConversionError("objects: every object must be a JSON object")
    kind = obj.get("kind")
    if kind not in CONVERTIBLE_KINDS:
        raise ConversionError(f"kind {kind!r} is not converted by this webhook")
    try:
        return convert(obj, desired)
    except ConversionError as exc:
        name = (obj.get("metadata") or {}).get("name")
        raise ConversionError(f"{kind} {name!r}: {exc}") from exc


# --- validation ------------------------------------------------------------------------------


def validate_review(
    review: Mapping[str, Any], *, kind: str, policy: AdmissionPolicy | None = None
) -> Review:
    """Answer a validating AdmissionReview for a DGD (`kind=DGD_KIND`) or a DGDSA."""
    request = _request(review, "AdmissionReview")
    operation = str(request.get("operation") or CREATE)
    source = (request.get("requestKind") or request.get("kind") or {}).get("version")
    new = _document(request.get("object"), source)
    old = _document(request.get("oldObject"), source) if request.get("oldObject") else None
    if kind == DGD_KIND:
        username = (request.get("userInfo") or {}).get("username")
        verdict = review_dgd(
            operation, new, old, username=str(username) if username else None, policy=policy
        )
    elif kind == DGDSA_KIND:
        verdict = review_dgdsa(operation, new, old)
    else:
        raise ReviewError(f"no validation for kind {kind!r}")
    return _admission_response(request, _verdict_fields(verdict, kind, new))


def _document(obj: Any, source: Any) -> dict[str, Any]:
    """The object under review in the version its author wrote (`source`, the request's
    `requestKind.version`): as it arrived, or the v1alpha1 spoke of a hub object the API
    server converted for us (Dynamo's webhook reads the source version the same way, §5).
    The reviews check both versions on the hub (`validate_dgd`)."""
    if not isinstance(obj, dict):
        raise ReviewError("AdmissionReview: `request.object` is missing")
    if obj.get("apiVersion") == GROUP_VERSION_V1BETA1 and source == API_VERSION:
        try:
            return convert(obj, GROUP_VERSION)
        except ConversionError as exc:
            raise ReviewError(f"cannot read the object: {exc}") from exc
    return obj


def _name_of(body: Mapping[str, Any]) -> str | None:
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return str(name) if name else None


def _verdict_fields(verdict: Verdict, kind: str, body: Mapping[str, Any]) -> Review:
    fields: Review = {"allowed": verdict.allowed}
    if verdict.warnings:
        fields["warnings"] = [warning_text(p) for p in verdict.warnings]
    if not verdict.allowed:
        fields["status"] = {
            "code": DENIED,
            "reason": "Forbidden",
            "message": rejection_message(kind, _name_of(body), verdict.errors),
        }
    return fields


def _admission_response(request: Mapping[str, Any], fields: Review) -> Review:
    return {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": "AdmissionReview",
        "response": {"uid": request["uid"], **fields},
    }


def bad_request(message: str) -> Review:
    """The body of an HTTP 400 answer to an unreadable review."""
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message}


# --- defaulting ------------------------------------------------------------------------------


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer from unescaped path segments."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def default_patch(operation: str, obj: Mapping[str, Any], *, origin_version: str) -> list[Review]:
    """Dynamo's defaults for a DGD (reference §4) as JSON patch operations on `obj`.

    * CREATE only, when absent: annotation `nvidia.com/dynamo-operator-origin-version` =
      `origin_version` (what gates vLLM's `mp` multinode launch; never changed afterwards);
    * every operation: `replicas: 1` on each component (v1alpha1: service) that has none, so
      readers such as the planner, which read a missing count as 0, see the real one.
    """
    ops: list[Review] = []
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations")
    if operation == CREATE and ANNOTATION_ORIGIN_VERSION not in (annotations or {}):
        if isinstance(annotations, Mapping):
            path = pointer("metadata", "annotations", ANNOTATION_ORIGIN_VERSION)
            ops.append({"op": "add", "path": path, "value": origin_version})
        else:
            value = {ANNOTATION_ORIGIN_VERSION: origin_version}
            ops.append({"op": "add", "path": "/metadata/annotations", "value": value})
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return ops
    if obj.get("apiVersion") == GROUP_VERSION_V1BETA1:
        components = spec.get("components")
        if isinstance(components, list):
            for index, component in enumerate(components):
                if isinstance(component, Mapping) and component.get("replicas") is None:
                    path = pointer("spec", "components", index, "replicas")
                    ops.append({"op": "add", "path": path, "value": 1})
    else:
        services = spec.get("services")
        if isinstance(services, Mapping):
            for name, service in services.items():
                if isinstance(service, Mapping) and service.get("replicas") is None:
                    path = pointer("spec", "services", name, "replicas")
                    ops.append({"op": "add", "path": path, "value": 1})
    return ops


def mutate_review(review: Mapping[str, Any], *, origin_version: str) -> Review:
    """Answer a mutating AdmissionReview for a DGD with `default_patch` (always allowed)."""
    request = _request(review, "AdmissionReview")
    obj = request.get("object")
    if not isinstance(obj, Mapping):
        raise ReviewError("AdmissionReview: `request.object` is missing")
    fields: Review = {"allowed": True}
    if obj.get("kind") == DGD_KIND:
        ops = default_patch(
            str(request.get("operation") or CREATE), obj, origin_version=origin_version
        )
        if ops:
            fields["patchType"] = "JSONPatch"
            fields["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    return _admission_response(request, fields)


def review_handlers(
    policy: AdmissionPolicy, *, origin_version: str
) -> dict[str, Callable[[Mapping[str, Any]], Review]]:
    """The webhook server's routes: URL path -> review function."""
    return {
        CONVERT_PATH: convert_review,
        f"/{DGD_WEBHOOK_ID}": lambda review: validate_review(review, kind=DGD_KIND, policy=policy),
        f"/{DGDSA_WEBHOOK_ID}": lambda review: validate_review(review, kind=DGDSA_KIND),
        f"/{MUTATE_DGD_WEBHOOK_ID}": lambda review: mutate_review(
            review, origin_version=origin_version
        ),
    }
