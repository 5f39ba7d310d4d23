"""Report a reconcile: the status (calculated, written only on change) and its Events.

`report` runs after the steps: it calculates the typed status from what they observed, writes
it through the one status writer together with the change Events, and posts the restart Events
only when the status reporting them was written. `report_rejected` does the same for a graph
the operator cannot act on: `state: failed`, `Ready=False` naming the fields, one Warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from dgd_operator import metrics
from dgd_operator.controllerkit.kubeapi import ApiError, TransientError
from dgd_operator.controllerkit.workers import raise_first
from dgd_operator.reconcile.context import ReconcileContext, RejectedError
from dgd_operator.reconcile.readiness import graph_readiness
from dgd_operator.reconcile.status import (
    ObservedGraph,
    StatusWrite,
    calculate_status,
    parse_status,
    rejected_status,
    write_status_if_changed,
)
from dgd_operator.reconcile.steps.observe import rfc3339

logger = logging.getLogger("dgd_operator.reconcile")


def rejection_mark(body: Mapping[str, Any]) -> str:
    """What must change before a rejected DGD is looked at again: uid, generation (the spec),
    labels and annotations (they steer rendering too), never status."""
    meta = body.get("metadata") or {}
    return json.dumps(
        [
            meta.get("uid"),
            meta.get("generation"),
            meta.get("labels") or {},
            meta.get("annotations") or {},
        ],
        sort_keys=True,
    )


def observed_graph(ctx: ReconcileContext) -> ObservedGraph:
    """What the steps found, as `calculate_status` reads it."""
    assert ctx.graph is not None, "build step did not run"
    live = {(ck[1], ck[2]): obj for ck, obj in (*ctx.live.items(), *ctx.fresh.items())}
    names = {svc: list(w.names) for svc, w in ctx.graph.services.items()}
    return ObservedGraph(
        generation=ctx.generation,
        readiness=graph_readiness(ctx.desired, live, names, ctx.services.view.graph_pods(ctx.key)),
        groups=ctx.groups,
        group_failures=ctx.group_failures,
        restart=ctx.restart.status if ctx.restart is not None else None,
        placement=ctx.placement,
        placement_waits=ctx.placement_waits,
    )


async def report(ctx: ReconcileContext) -> StatusWrite:
    """Write the status if it changed, post the Events; the write's outcome."""
    now = rfc3339(ctx.services.wall_clock())
    status = calculate_status(parse_status(ctx.body.get("status")), observed_graph(ctx), now=now)
    write, *posted = await asyncio.gather(
        write_status_if_changed(
            ctx.services.client, ctx.key, ctx.body.get("status"), status, ctx.memory
        ),
        *(ctx.event("Normal", reason, text) for reason, text in ctx.notices),
        return_exceptions=True,
    )
    raise_first([write, *posted])  # Events never raise an API error; the status write may
    assert isinstance(write, StatusWrite)
    ctx.outcome.status_written = write.written
    if write.written:
        # No Event on becoming ready: the Ready condition's transition already says it.
        for reason, text in ctx.status_notices:
            await ctx.event("Normal", reason, text)
    return write


async def report_rejected(ctx: ReconcileContext, rejected: RejectedError) -> None:
    """`state: failed`, `Ready=False` naming the fields, one Warning Event; children untouched."""
    ctx.memory.rejected_mark = rejection_mark(ctx.body)
    metrics.RECONCILE_ERRORS.labels(reason="invalid").inc()
    message = str(rejected)
    logger.warning("dgd %s/%s rejected: %s", *ctx.key, message)
    now = rfc3339(ctx.services.wall_clock())
    previous = parse_status(ctx.body.get("status"))
    status = rejected_status(
        previous, reason=rejected.reason, message=message, generation=ctx.generation, now=now
    )
    try:
        write = await write_status_if_changed(
            ctx.services.client, ctx.key, ctx.body.get("status"), status, ctx.memory
        )
    except ApiError as exc:
        ctx.memory.rejected_mark = None
        raise TransientError(exc.status, exc.reason, exc.message) from exc
    if write.written:
        await ctx.event("Warning", rejected.event_reason, message)
