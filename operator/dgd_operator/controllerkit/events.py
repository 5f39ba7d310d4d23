"""Posting Kubernetes Events about an object: best effort, never fatal.

An Event is a side note to people (`kubectl describe`); failing to post one must never fail
or retry a reconcile. The manifest comes from a pure builder the caller passes in, so the
kit stays free of any one operator's component names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from dgd_operator.controllerkit.kubeapi import ApiError, KubeAPI, Manifest

logger = logging.getLogger(__name__)

EventBuilder = Callable[[Mapping[str, Any], str, str, str], Manifest]
"""(involved object, type, reason, message) -> the Event manifest."""


class EventRecorder:
    """Posts Events through a `KubeAPI`; API errors are logged and swallowed."""

    def __init__(self, client: KubeAPI, build: EventBuilder) -> None:
        self._client = client
        self._build = build

    async def post(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Post one Event of `type_` (Normal or Warning) with a stable `reason` on `involved`."""
        try:
            await self._client.create(self._build(involved, type_, reason, message))
        except ApiError as exc:
            name = (involved.get("metadata") or {}).get("name")
            logger.warning("could not post event %s on %s: %s", reason, name, exc)
