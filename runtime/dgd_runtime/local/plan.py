"""What a local graph runs: plain data, produced by whoever reads the graph definition.

The operator's ``dgd serve`` parses and validates a DynamoGraphDeployment and hands the
runtime a :class:`LocalPlan`; the runtime never reads a DGD itself (it does not import the
operator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

WorkerRole = Literal["worker", "prefill", "decode"]
DEFAULT_MODEL_NAME: Final = "dgd-tiny"


@dataclass(slots=True, frozen=True)
class LocalComponent:
    """One worker service of the graph: ``replicas`` worker processes in one role."""

    name: str
    role: WorkerRole
    """``worker`` (aggregated), ``prefill`` or ``decode``."""
    replicas: int
    env: dict[str, str] = field(default_factory=dict, hash=False)
    """Extra environment of its processes (the supervisor's own variables win on a clash)."""


@dataclass(slots=True, frozen=True)
class LocalPlan:
    """The processes of one local graph (besides nats-server and the frontend)."""

    name: str
    namespace: str
    """Dynamo namespace the workers register in and the frontend discovers."""
    components: tuple[LocalComponent, ...]
    model_name: str = DEFAULT_MODEL_NAME

    @property
    def worker_count(self) -> int:
        """Worker processes in total."""
        return sum(c.replicas for c in self.components)
