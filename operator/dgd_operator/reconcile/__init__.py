"""The DGD reconcile: `controller` runs the ordered `steps/` over one `ReconcileContext`
(`context`), remembers per graph in `state`, reads the watch cache through `view`, and reports
through `status`. The pure planners sit beside them: `sync` (what to apply or delete),
`readiness`, `groups` (whole-group restarts), `restart` (`spec.restart`), `scaling` (adapters),
`notices` (change Events); `resources` names the kinds it reads, writes and watches."""
