"""The kopf validating handlers for DGDs and DGDSAs, and their registration.

kopf calls the handlers with keyword arguments (`operation`, `body`, `old`, `userinfo`,
`warnings`); a denial is a `kopf.AdmissionError` whose message the API server shows to the
kubectl user. The API server calls them on every CREATE and UPDATE of the two kinds, never on
the `status` or `scale` subresources (the operator's own writes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from dgd_operator.admission.messages import rejection_message, warning_text
from dgd_operator.admission.review import (
    CREATE,
    UPDATE,
    AdmissionPolicy,
    Verdict,
    review_dgd,
    review_dgdsa,
)
from dgd_operator.api.constants import (
    API_GROUP,
    API_VERSION,
    DGD_KIND,
    DGD_PLURAL,
    DGDSA_KIND,
    DGDSA_PLURAL,
)
from dgd_operator.settings import OperatorSettings

# Handler ids are also the URL paths of the webhooks (`/validate-dgd`): the chart's
# ValidatingWebhookConfiguration routes each resource to its handler by path.
DGD_WEBHOOK_ID = "validate-dgd"
DGDSA_WEBHOOK_ID = "validate-dgdsa"
# HTTP status of a denial (what controller-runtime, and so Dynamo's webhook, answers).
DENIED = 403


def _name_of(body: Mapping[str, Any]) -> str | None:
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    # Validating admission runs after the API server generated a `generateName` name.
    name = metadata.get("name")
    return str(name) if name else None


def _decide(verdict: Verdict, kind: str, body: Mapping[str, Any], warnings: list[str]) -> None:
    warnings.extend(warning_text(p) for p in verdict.warnings)
    if verdict.errors:
        raise kopf.AdmissionError(
            rejection_message(kind, _name_of(body), verdict.errors), code=DENIED
        )


def admit_dgd(
    *,
    operation: str | None,
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    userinfo: Mapping[str, Any] | None = None,
    warnings: list[str],
    policy: AdmissionPolicy | None = None,
    **_: Any,
) -> None:
    """kopf validating handler for DGDs: raise `kopf.AdmissionError` to deny, append warnings."""
    username = (userinfo or {}).get("username")
    verdict = review_dgd(
        operation or CREATE,
        body,
        old,
        username=str(username) if username else None,
        policy=policy,
    )
    _decide(verdict, DGD_KIND, body, warnings)


def admit_dgdsa(
    *,
    operation: str | None,
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    warnings: list[str],
    **_: Any,
) -> None:
    """kopf validating handler for DGDSAs: raise `kopf.AdmissionError` to deny."""
    verdict = review_dgdsa(operation or CREATE, body, old)
    _decide(verdict, DGDSA_KIND, body, warnings)


def register_admission(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    *,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Add the DGD and DGDSA validating handlers to `registry`.

    Register them only together with `configure_admission`: kopf refuses to start with
    admission handlers but no server. `labels` narrows the handlers (and a kopf-managed
    configuration's objectSelector) to objects carrying them; tests use it to stay isolated.
    """
    policy = AdmissionPolicy(operator_username=settings.webhook.operator_username)
    common: dict[str, Any] = {
        "operations": [CREATE, UPDATE],
        "ignore_failures": settings.webhook.failure_policy == "Ignore",
        "side_effects": False,
        "registry": registry,
    }
    if labels:
        common["labels"] = dict(labels)

    def dgd_handler(**kwargs: Any) -> None:
        admit_dgd(policy=policy, **kwargs)

    def dgdsa_handler(**kwargs: Any) -> None:
        admit_dgdsa(**kwargs)

    kopf.on.validate(API_GROUP, API_VERSION, DGD_PLURAL, id=DGD_WEBHOOK_ID, **common)(dgd_handler)
    kopf.on.validate(API_GROUP, API_VERSION, DGDSA_PLURAL, id=DGDSA_WEBHOOK_ID, **common)(
        dgdsa_handler
    )
