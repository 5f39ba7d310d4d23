"""What a local graph runs: plain data, produced by whoever reads the graph definition.

The operator's ``dgd serve`` parses and validates a DynamoGraphDeployment and hands the
runtime a :class:`LocalPlan`; the runtime never reads a DGD itself (it does not import the
operator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

WorkerRole = Literal["worker", "prefill", "decode", "encode"]
DEFAULT_MODEL_NAME: Final = "dgd-tiny"


@dataclass(slots=True, frozen=True)
class LocalComponent:
    """One worker service of the graph: ``replicas`` worker processes in one role."""

    name: str
    role: WorkerRole
    """``worker`` (aggregated), ``prefill``, ``decode`` or ``encode`` (media to embeddings)."""
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

    def replicas_of(self, role: WorkerRole) -> int:
        """Worker processes in ``role``."""
        return sum(c.replicas for c in self.components if c.role == role)

    def describe(self) -> str:
        """The serving shape, e.g. ``encode 1 → prefill 2 → decode 2 (disaggregated)``."""
        prefill, decode = self.replicas_of("prefill"), self.replicas_of("decode")
        agg, encode = self.replicas_of("worker"), self.replicas_of("encode")
        stages: list[str] = []
        if encode:
            stages.append(f"encode {encode}")
        if prefill and decode:
            shape = f"prefill {prefill} → decode {decode} (disaggregated)"
        elif decode:
            shape = f"decode {decode} (local prefill: no prefill workers)"
        elif prefill:
            shape = f"prefill {prefill} (no decode workers: requests cannot be served)"
        else:
            shape = ""
        if shape:
            stages.append(shape)
        text = " → ".join(stages)
        if agg:
            aggregated = f"{agg} aggregated worker{'s' if agg != 1 else ''}"
            text = (
                f"{text} + {aggregated}"
                if shape
                else f"{text} → {aggregated}"
                if text
                else aggregated
            )
        return text
