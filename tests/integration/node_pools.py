"""Names shared by the ``pool_nodes`` fixture (conftest) and the tests that use it."""

from __future__ import annotations

from collections.abc import Callable

from dgd_operator.dev.kubelet import NodePlan

# Label and taint key of a test's private nodes; the value is the test's namespace.
POOL_KEY = "dgd.dev/test-pool"
# ``add(count, **node_plans keyword arguments) -> plans`` of the added nodes.
AddNodes = Callable[..., list[NodePlan]]
