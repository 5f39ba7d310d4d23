"""SGLang multinode launch rules: Dynamo's reference table (exact) and our placeholders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from dgd_operator.builders.backends import (
    DgdGroupAddressing,
    GroveAddressing,
    LaunchOptions,
    LwsAddressing,
    MultinodeAddressing,
    with_backend_launch,
)
from dgd_operator.builders.backends.quoting import k8s_to_shell_vars
from dgd_operator.builders.backends.types import BackendResult, Role

pytestmark = pytest.mark.unit

COMPAT = LaunchOptions(dynamo_compat=True)


@dataclass(frozen=True)
class SimpleMock:
    """Dynamo's unit-test deployer without shell needs."""

    def leader_host(self) -> str:
        return "leader.example.com"

    def worker_rank(self) -> str:
        return "1"

    def worker_rank_needs_shell(self) -> bool:
        return False

    def worker_host(self, index: int) -> str:
        return f"worker-{index}.example.com"

    def rank_arithmetic_operand(self) -> str:
        return "1"

    def leader_host_for_script(self) -> str:
        return self.leader_host()

    def needs_dns_wait(self) -> bool:
        return False


@dataclass(frozen=True)
class ShellMock:
    """Dynamo's unit-test deployer whose rank needs a shell."""

    def leader_host(self) -> str:
        return "$(LEADER_HOST)"

    def worker_rank(self) -> str:
        return "$(WORKER_INDEX)"

    def worker_rank_needs_shell(self) -> bool:
        return True

    def worker_host(self, index: int) -> str:
        return f"$(LEADER_HOST)-{index}"

    def rank_arithmetic_operand(self) -> str:
        return self.worker_rank()

    def leader_host_for_script(self) -> str:
        return k8s_to_shell_vars(self.leader_host())

    def needs_dns_wait(self) -> bool:
        return False


SIMPLE, SHELL, LWS, GROVE = (
    SimpleMock(),
    ShellMock(),
    LwsAddressing(),
    GroveAddressing("test-service"),
)
GROVE_LEADER = "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-test-service-ldr-0.$(GROVE_HEADLESS_SERVICE)"


def run(
    container: dict[str, Any],
    role: Role,
    addressing: MultinodeAddressing,
    *,
    nodes: int = 2,
    options: LaunchOptions = COMPAT,
) -> BackendResult:
    return with_backend_launch(
        container,
        {},
        backend="sglang",
        role=role,
        node_count=nodes,
        gpus_per_pod=4,
        annotations={},
        dgd_name="test-dgd",
        addressing=addressing,
        options=options,
    )


@pytest.mark.parametrize(
    ("container", "role", "addressing", "nodes", "expected"),
    [
        (
            {"command": ["python3"], "args": ["-m", "dynamo.sglang", "--model", "llama"]},
            "worker",
            SIMPLE,
            2,
            {
                "command": ["python3"],
                "args": [
                    "-m",
                    "dynamo.sglang",
                    "--model",
                    "llama",
                    "--dist-init-addr",
                    "leader.example.com:29500",
                    "--nnodes",
                    "2",
                    "--node-rank",
                    "1",
                ],
            },
        ),
        (
            {"command": ["python3"], "args": ["-m", "dynamo.sglang", "--model", "llama"]},
            "worker",
            LWS,
            2,
            {
                "command": ["python3"],
                "args": [
                    "-m",
                    "dynamo.sglang",
                    "--model",
                    "llama",
                    "--dist-init-addr",
                    "$(LWS_LEADER_ADDRESS):29500",
                    "--nnodes",
                    "2",
                    "--node-rank",
                    "$(LWS_WORKER_INDEX)",
                ],
            },
        ),
        (
            {"command": ["python3"], "args": ["-m", "dynamo.sglang"]},
            "leader",
            LWS,
            2,
            {
                "command": ["python3"],
                "args": [
                    "-m",
                    "dynamo.sglang",
                    "--dist-init-addr",
                    "$(LWS_LEADER_ADDRESS):29500",
                    "--nnodes",
                    "2",
                    "--node-rank",
                    "0",
                ],
            },
        ),
        (
            {"command": ["python3"], "args": ["-m", "dynamo.sglang", "--model", "llama"]},
            "worker",
            SHELL,
            2,
            {
                "command": ["sh", "-c"],
                "args": [
                    "exec python3 -m dynamo.sglang --model llama --dist-init-addr "
                    "$(LEADER_HOST):29500 --nnodes 2 --node-rank $(WORKER_INDEX)"
                ],
            },
        ),
        (
            {"command": ["python"], "args": ["-m", "dynamo.sglang"]},
            "leader",
            SHELL,
            3,
            {
                "command": ["python"],
                "args": [
                    "-m",
                    "dynamo.sglang",
                    "--dist-init-addr",
                    "$(LEADER_HOST):29500",
                    "--nnodes",
                    "3",
                    "--node-rank",
                    "0",
                ],
            },
        ),
        (
            {
                "command": ["python3", "-m", "dynamo.sglang"],
                "args": ["--model-path", "Qwen/Qwen3-0.6B", "--tp-size", "8"],
            },
            "worker",
            SIMPLE,
            2,
            {
                "command": ["python3", "-m", "dynamo.sglang"],
                "args": [
                    "--model-path",
                    "Qwen/Qwen3-0.6B",
                    "--tp-size",
                    "8",
                    "--dist-init-addr",
                    "leader.example.com:29500",
                    "--nnodes",
                    "2",
                    "--node-rank",
                    "1",
                ],
            },
        ),
        (
            {"command": ["/home/user/.pyenv/shims/python3.9"], "args": ["-m", "dynamo.sglang"]},
            "worker",
            SHELL,
            2,
            {
                "command": ["sh", "-c"],
                "args": [
                    "exec /home/user/.pyenv/shims/python3.9 -m dynamo.sglang --dist-init-addr "
                    "$(LEADER_HOST):29500 --nnodes 2 --node-rank $(WORKER_INDEX)"
                ],
            },
        ),
        (
            {"command": ["java"], "args": ["-jar", "x.jar"]},
            "worker",
            SIMPLE,
            2,
            {"command": ["java"], "args": ["-jar", "x.jar"]},
        ),
        (
            {"command": ["sh", "-c"], "args": ["python -m dynamo.sglang"]},
            "leader",
            GROVE,
            2,
            {
                "command": ["sh", "-c"],
                "args": [
                    f"python -m dynamo.sglang --dist-init-addr {GROVE_LEADER}:29500 --nnodes 2 --node-rank 0"
                ],
            },
        ),
        (
            {"command": ["sh", "-c"], "args": ["python -m dynamo.sglang"]},
            "worker",
            GROVE,
            3,
            {
                "command": ["sh", "-c"],
                "args": [
                    f"python -m dynamo.sglang --dist-init-addr {GROVE_LEADER}:29500 --nnodes 3 "
                    "--node-rank $((GROVE_PCLQ_POD_INDEX + 1))"
                ],
            },
        ),
        (
            {
                "command": ["sh", "-c"],
                "args": ["echo start", "python -m dynamo.sglang", "echo done"],
            },
            "leader",
            GROVE,
            2,
            {
                "command": ["sh", "-c"],
                "args": [
                    "echo start",
                    f"python -m dynamo.sglang --dist-init-addr {GROVE_LEADER}:29500 "
                    "--nnodes 2 --node-rank 0",
                    "echo done",
                ],
            },
        ),
        (
            {
                "command": ["sh", "-c"],
                "args": ["python -m dynamo.sglang", "python -m dynamo.sglang --other-flags"],
            },
            "leader",
            GROVE,
            2,
            {
                "command": ["sh", "-c"],
                "args": [
                    f"python -m dynamo.sglang --dist-init-addr {GROVE_LEADER}:29500 --nnodes 2 "
                    "--node-rank 0",
                    "python -m dynamo.sglang --other-flags",
                ],
            },
        ),
        (
            {"command": ["sh", "-c"], "args": ["python -m some.other.module"]},
            "leader",
            GROVE,
            2,
            {"command": ["sh", "-c"], "args": ["python -m some.other.module"]},
        ),
    ],
)
def test_dynamo_reference_table(
    container: dict[str, Any],
    role: Role,
    addressing: MultinodeAddressing,
    nodes: int,
    expected: dict[str, Any],
) -> None:
    assert run(container, role, addressing, nodes=nodes).container == expected


def test_worker_probes_removed_leader_probes_kept() -> None:
    probes = {
        "livenessProbe": {"tcpSocket": {"port": 9090}},
        "readinessProbe": {"tcpSocket": {"port": 9090}},
        "startupProbe": {"tcpSocket": {"port": 9090}},
    }
    container = {"command": ["python3", "-m", "dynamo.sglang"], **probes}
    assert not set(probes) & set(run(container, "worker", SIMPLE).container)
    assert set(probes) <= set(run(container, "leader", SIMPLE).container)


def test_single_node_and_main_unchanged() -> None:
    container = {"command": ["python3", "-m", "dynamo.sglang"], "args": ["--tp", "1"]}
    assert run(container, "main", SIMPLE, nodes=1).container == container


def test_ours_worker_no_shell_and_waits_for_leader() -> None:
    addressing = DgdGroupAddressing("sglang-disagg-multinode", "decode", 1)
    container = {
        "image": "sglang:1",
        "command": ["python3", "-m", "dynamo.sglang"],
        "args": ["--tp-size", "8"],
    }
    result = run(container, "worker", addressing, options=LaunchOptions())
    assert result.container["args"] == [
        "--tp-size",
        "8",
        "--dist-init-addr",
        "$(DGD_LEADER_ADDRESS):29500",
        "--nnodes",
        "2",
        "--node-rank",
        "$(DGD_NODE_RANK)",
    ]
    (init,) = result.pod_spec["initContainers"]
    assert init["name"] == "wait-for-leader" and init["image"] == "sglang:1"
    assert init["command"][2].startswith(
        'export LEADER_HOST="sglang-disagg-multinode-decode-1-ldr-0.sglang-disagg-multinode-decode-nodes" LEADER_PORT="29500" '
        'DGD_WAIT_TIMEOUT="1800"'
    )
    assert [o["metadata"]["name"] for o in result.extra_objects] == ["test-dgd-wait-leader-script"]


def test_ours_leader_flags() -> None:
    addressing = DgdGroupAddressing("d", "decode", 0)
    result = run(
        {"command": ["python3", "-m", "dynamo.sglang"]},
        "leader",
        addressing,
        options=LaunchOptions(),
    )
    assert result.container["args"] == [
        "--dist-init-addr",
        "$(DGD_LEADER_ADDRESS):29500",
        "--nnodes",
        "2",
        "--node-rank",
        "0",
    ]
    assert result.pod_spec == {} and result.extra_objects == []


def test_ours_args_only_exec_form_is_patched_dynamo_leaves_it() -> None:
    container = {"args": ["python3", "-m", "dynamo.sglang", "--tp", "8"]}
    assert run(container, "leader", SIMPLE).container == container
    ours = run(
        container, "leader", DgdGroupAddressing("d", "s", 0), options=LaunchOptions()
    ).container
    assert ours["args"][-6:] == [
        "--dist-init-addr",
        "$(DGD_LEADER_ADDRESS):29500",
        "--nnodes",
        "2",
        "--node-rank",
        "0",
    ]
