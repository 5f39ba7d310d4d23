"""The validating admission webhook for DynamoGraphDeployments and their scaling adapters.

The API server calls it on every CREATE and UPDATE of a DGD or DGDSA, so a bad graph is refused
at `kubectl apply` time with every problem listed as `path: message`, instead of failing later
inside the operator. Served by the operator process through kopf's admission support:

* `review` decides (pure), `messages` words the answer, `handlers` are the kopf handlers;
* `register_admission(registry, settings)` adds the two `@kopf.on.validate` handlers;
* `configure_admission(kopf_settings, settings)` sets the HTTPS server (`server`).
"""

from __future__ import annotations

import kopf

from dgd_operator.admission.handlers import register_admission
from dgd_operator.admission.server import configure_admission
from dgd_operator.settings import OperatorSettings

__all__ = ["configure_admission", "enable_admission", "register_admission"]


def enable_admission(
    registry: kopf.OperatorRegistry,
    kopf_settings: kopf.OperatorSettings,
    settings: OperatorSettings,
) -> bool:
    """`configure_admission` plus `register_admission` when the webhook is enabled (one call
    for the operator's main); returns whether it is."""
    if not configure_admission(kopf_settings, settings):
        return False
    register_admission(registry, settings)
    return True
