"""Restart: tell the progress of a `spec.restart` request as Events.

The restart itself was planned in `observe` (`restart.plan_graph_restart`) and stamped on the
pod templates by `build`/`children`. Its Events are posted only once the status reporting the
same progress is written, so a reconcile that writes nothing repeats nothing.
"""

from __future__ import annotations

from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, StepResult
from dgd_operator.reconcile.restart import restart_notices


async def restart(ctx: ReconcileContext) -> StepResult:
    """Queue the restart progress Events for after the status write."""
    if ctx.restart is not None:
        previous = (ctx.body.get("status") or {}).get("restart")
        ctx.status_notices.extend(restart_notices(ctx.restart, previous))
    return CONTINUE
