"""Prerequisites: the namespace-wide objects pods of the graph use but no graph owns.

- The planner and endpoint-picker ServiceAccounts (and RoleBindings) of namespaces with such
  services. They are watched (`ClusterView.shared_objects`): when one exists nothing is sent;
  when the watch does not show it (deleted, or just created and not delivered yet) it is
  looked up and created if missing.
- The MPI SSH key Secret of namespaces with a multinode service (Secrets are not watched: too
  many and too sensitive). A lookup is trusted for `ControllerState.shared_checked.ttl`
  seconds, so a deleted Secret is re-created by the first reconcile after that.

Neither carries an owner or a graph label, and the operator never deletes them.
"""

from __future__ import annotations

import asyncio
import logging

from dgd_operator.api.naming import EPP_SERVICE_ACCOUNT, PLANNER_SERVICE_ACCOUNT
from dgd_operator.builders.shared import mpi_ssh_secret, shared_account_objects
from dgd_operator.controllerkit.kubeapi import ConflictError
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, StepResult

logger = logging.getLogger(__name__)


async def ensure_shared_accounts(ctx: ReconcileContext) -> None:
    """Create the planner/EPP ServiceAccounts (and RoleBindings) the graph's pods run as."""
    services = ctx.services
    settings = services.settings
    namespace = ctx.namespace
    types = {spec.component_type for spec in ctx.built().spec.services.values()}
    for component_type, account, role in (
        ("planner", PLANNER_SERVICE_ACCOUNT, settings.planner_cluster_role_name),
        ("epp", EPP_SERVICE_ACCOUNT, settings.epp_cluster_role_name),
    ):
        if component_type not in types:
            continue
        for manifest in shared_account_objects(namespace, account, role):
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            if (kind, name) in services.view.shared_objects(namespace):
                continue
            ident = (namespace, kind, name)
            # Several workers reconcile graphs of one namespace at once: one creates, the
            # others wait and then find it done, instead of all applying the same object.
            async with services.state.shared_lock(ident):
                if services.state.shared_checked.fresh(ident):
                    continue
                if await services.client.get(manifest["apiVersion"], kind, namespace, name) is None:
                    await ctx.apply(manifest)
                    logger.info("created %s %s/%s", kind, namespace, name)
                services.state.shared_checked.mark(ident)


async def ensure_mpi_secret(ctx: ReconcileContext) -> None:
    """Create the MPI SSH key Secret TensorRT-LLM multinode pods mount, if missing.

    Like Dynamo, any multinode service asks for it. It is never rotated; a concurrent creator
    wins (409 is fine).
    """
    services = ctx.services
    name = services.options.mpi_ssh_secret_name
    if not name or not any(spec.is_multinode for spec in ctx.built().spec.services.values()):
        return
    namespace = ctx.namespace
    ident = (namespace, "Secret", name)
    async with services.state.shared_lock(ident):
        if services.state.shared_checked.fresh(ident):
            return
        if await services.client.get("v1", "Secret", namespace, name) is None:
            manifest = await asyncio.to_thread(mpi_ssh_secret, namespace, name)
            try:
                await services.client.create(manifest)
            except ConflictError:
                pass  # created meanwhile by someone else: theirs is as good
            else:
                logger.info("created MPI SSH Secret %s/%s", namespace, name)
        services.state.shared_checked.mark(ident)


async def prerequisites(ctx: ReconcileContext) -> StepResult:
    """Make sure the namespace-wide objects the graph's pods use exist."""
    await ensure_shared_accounts(ctx)
    await ensure_mpi_secret(ctx)
    return CONTINUE
