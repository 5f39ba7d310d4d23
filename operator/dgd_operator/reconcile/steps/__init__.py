"""The reconcile's ordered steps, each `async def step(ctx: ReconcileContext) -> StepResult`.

observe (watch cache only, validates and plans in memory) → build (pure) → prerequisites
(namespace-wide objects) → adapters → children (apply in waves, prune) → groups (whole-group
restarts) → restart (restart progress Events). Nothing is written before `build` succeeded.
"""
