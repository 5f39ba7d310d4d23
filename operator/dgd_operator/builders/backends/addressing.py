"""How the pods of one multinode group find each other: leader host, node rank, worker hosts.

`MultinodeAddressing` is the seam between the launch rules (which only need strings to put
in command lines) and the workload layout. `DgdGroupAddressing` is ours (plain StatefulSets,
see the team's multinode-groups contract). `GroveAddressing` and `LwsAddressing` reproduce the
strings NVIDIA Dynamo emits for Grove and LeaderWorkerSet; they exist so our launch rules can
be checked against Dynamo's own test vectors.

Kubelet `$(VAR)` references in command/args are expanded without a shell. Anything else
(`$((...))`, `$(echo ...)`, `${VAR}`) needs the command to run under a shell; the kubelet
leaves such text alone because `$(` only expands when the text up to the next `)` is a
defined variable name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dgd_operator.api.naming import leader_address, worker_address
from dgd_operator.builders.backends.quoting import k8s_to_shell_vars


class MultinodeAddressing(Protocol):
    """Strings that locate the pods of one multinode group."""

    def leader_host(self) -> str:
        """The leader's host name as written in the main container's command/args."""
        ...

    def worker_rank(self) -> str:
        """This worker's node rank (1..N-1) as written in command/args."""
        ...

    def worker_rank_needs_shell(self) -> bool:
        """True when `worker_rank()` only works under a shell (e.g. `$((INDEX + 1))`)."""
        ...

    def worker_host(self, index: int) -> str:
        """Host name of worker `index` (1..N-1) as written in a shell command line."""
        ...

    def rank_arithmetic_operand(self) -> str:
        """The rank as an operand inside shell arithmetic `$(( k * <operand> ))`."""
        ...

    def leader_host_for_script(self) -> str:
        """The leader host for a shell script in any container of the pod (init containers too)."""
        ...

    def needs_dns_wait(self) -> bool:
        """True when worker host names may not resolve yet when the leader starts (LWS)."""
        ...


@dataclass(frozen=True)
class DgdGroupAddressing:
    """Our layout: leader/worker StatefulSets per group, one headless Service per service.

    The pods carry `DGD_LEADER_ADDRESS` and `DGD_NODE_RANK` (downward API on workers: the
    `apps.kubernetes.io/pod-index` label, which is the rank because worker ordinals start at 1),
    so command lines need no shell for either.
    """

    dgd_name: str
    service_name: str
    group_index: int

    def leader_host(self) -> str:
        """`$(DGD_LEADER_ADDRESS)`, expanded by the kubelet."""
        return "$(DGD_LEADER_ADDRESS)"

    def worker_rank(self) -> str:
        """`$(DGD_NODE_RANK)`, expanded by the kubelet."""
        return "$(DGD_NODE_RANK)"

    def worker_rank_needs_shell(self) -> bool:
        """Never: the rank is a plain env var."""
        return False

    def worker_host(self, index: int) -> str:
        """Literal DNS name `<D>-<svc>-<g>-wkr-<i>.<D>-<svc>-nodes`."""
        return worker_address(self.dgd_name, self.service_name, self.group_index, index)

    def rank_arithmetic_operand(self) -> str:
        """`${DGD_NODE_RANK}`: a kubelet `$(..)` cannot sit inside `$(( ))` (the kubelet would
        stop at the first `)` and leave it for the shell to run as a command)."""
        return "${DGD_NODE_RANK}"

    def leader_host_for_script(self) -> str:
        """The literal leader DNS name, so init containers need no env of their own."""
        return leader_address(self.dgd_name, self.service_name, self.group_index)

    def needs_dns_wait(self) -> bool:
        """No: the leader waits for every worker's port, which includes resolving its name."""
        return False


@dataclass(frozen=True)
class GroveAddressing:
    """Dynamo's Grove deployer (late v1alpha1): PodCliqueScalingGroup env vars."""

    service_name: str

    def leader_host(self) -> str:
        """Leader pod of the PCSG replica via Grove's headless service."""
        return (
            f"$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-{self.service_name.lower()}-ldr-0"
            ".$(GROVE_HEADLESS_SERVICE)"
        )

    def worker_rank(self) -> str:
        """Clique pod index + 1 (needs shell arithmetic)."""
        return "$((GROVE_PCLQ_POD_INDEX + 1))"

    def worker_rank_needs_shell(self) -> bool:
        """Yes: `$((...))`."""
        return True

    def worker_host(self, index: int) -> str:
        """Worker clique pods are numbered from 0."""
        return (
            f"$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-{self.service_name.lower()}-wkr-{index - 1}"
            ".$(GROVE_HEADLESS_SERVICE)"
        )

    def rank_arithmetic_operand(self) -> str:
        """Dynamo nests the rank expression verbatim."""
        return self.worker_rank()

    def leader_host_for_script(self) -> str:
        """`$(X)` -> `${X}` (Grove appends its env after the operator's)."""
        return k8s_to_shell_vars(self.leader_host())

    def needs_dns_wait(self) -> bool:
        """No."""
        return False


@dataclass(frozen=True)
class LwsAddressing:
    """Dynamo's LeaderWorkerSet deployer (late era)."""

    def leader_host(self) -> str:
        """`$(LWS_LEADER_ADDRESS)`."""
        return "$(LWS_LEADER_ADDRESS)"

    def worker_rank(self) -> str:
        """`$(LWS_WORKER_INDEX)` (kubelet-expanded)."""
        return "$(LWS_WORKER_INDEX)"

    def worker_rank_needs_shell(self) -> bool:
        """No."""
        return False

    def worker_host(self, index: int) -> str:
        """Derived from the leader address at runtime (needs a shell)."""
        return f"$(echo \"$LWS_LEADER_ADDRESS\" | sed 's/\\./-{index}\\./')"

    def rank_arithmetic_operand(self) -> str:
        """Dynamo nests the rank expression verbatim."""
        return self.worker_rank()

    def leader_host_for_script(self) -> str:
        """`${LWS_LEADER_ADDRESS}`."""
        return k8s_to_shell_vars(self.leader_host())

    def needs_dns_wait(self) -> bool:
        """Yes: LWS worker names may not resolve when the leader starts."""
        return True
