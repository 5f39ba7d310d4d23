"""Names the reconciler writes or looks for: labels, annotations, Event reasons, condition reasons."""

from __future__ import annotations

# Labels every child carries (team contract); the operator finds its children by them.
LABEL_DGD_NAME = "nvidia.com/dynamo-graph-deployment-name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "dgd-operator"
LABEL_COMPONENT = "nvidia.com/dynamo-component"
# Multinode group pods (builders/multinode.py): role leader/worker and the group index.
LABEL_ROLE = "role"
LABEL_GROUP_INDEX = "instance-id"

# Annotations (Dynamo's names where Dynamo has one).
ANNOTATION_LAST_APPLIED_HASH = "nvidia.com/last-applied-hash"
ANNOTATION_RESTART_AT = "nvidia.com/restartAt"

# kopf's bookkeeping goes under our own prefix (nothing is stored there today, see handlers).
KOPF_PREFIX = "dgd.nvidia.com"
KOPF_FINALIZER = "dgd.nvidia.com/finalizer"

# DGD `status.state` values.
STATE_PENDING = "pending"
STATE_SUCCESSFUL = "successful"
STATE_FAILED = "failed"

# `Ready` condition reasons (Dynamo's strings).
REASON_ALL_READY = "all_resources_are_ready"
REASON_NOT_READY = "some_resources_are_not_ready"
REASON_INVALID_SPEC = "invalid_spec"
REASON_RECONCILE_FAILED = "failed_to_reconcile_the_resources"
# Ours: a multinode group spent its restart budget.
REASON_GROUP_FAILED = "GroupRestartBudgetExhausted"

# Event reasons (stable, CamelCase as Kubernetes convention).
EVENT_CREATED = "Created"
EVENT_UPDATED = "Updated"
EVENT_DELETED = "Deleted"
EVENT_SCALED = "Scaled"
EVENT_RESTART_STARTED = "RestartStarted"
EVENT_RESTART_COMPLETED = "RestartCompleted"
EVENT_INVALID_SPEC = "InvalidSpec"
EVENT_APPLY_FAILED = "ApplyFailed"
EVENT_ADAPTER_CREATED = "AdapterCreated"
EVENT_ADAPTER_DELETED = "AdapterDeleted"
EVENT_RECONCILE_FAILED = "ReconcileFailed"
EVENT_GROUP_RESTART = "GroupRestart"
EVENT_GROUP_FAILED = "GroupRestartBudgetExhausted"

# `status.restart.phase` values.
RESTART_RESTARTING = "Restarting"
RESTART_COMPLETED = "Completed"
