"""vLLM multinode launch rules: Dynamo's reference vectors V1-V19 (exact, `dynamo_compat`) and
the same cases with our StatefulSet-group placeholders and startup ordering."""

from __future__ import annotations

import re
import subprocess
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
from dgd_operator.builders.backends.types import BackendResult, Role
from dgd_operator.builders.backends.vllm import use_mp_executor

pytestmark = pytest.mark.unit

COMPAT = LaunchOptions(dynamo_compat=True)
OURS = LaunchOptions()
GROVE = GroveAddressing("test-service")
LWS = LwsAddressing()
DGD = DgdGroupAddressing("test-dgd", "Test-Service", 0)
GROVE_LEADER = "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-test-service-ldr-0.$(GROVE_HEADLESS_SERVICE)"
OUR_LEADER_LITERAL = "test-dgd-test-service-0-ldr-0.test-dgd-test-service-nodes"
ORIGIN_1 = {"nvidia.com/dynamo-operator-origin-version": "1.0.0"}
PROBES = {
    "livenessProbe": {"httpGet": {"path": "/live", "port": 9090}},
    "readinessProbe": {"httpGet": {"path": "/health", "port": 9090}},
    "startupProbe": {"httpGet": {"path": "/live", "port": 9090}},
}


def run(
    container: dict[str, Any],
    *,
    role: Role,
    gpus: int,
    nodes: int = 2,
    addressing: MultinodeAddressing = GROVE,
    annotations: dict[str, str] | None = None,
    options: LaunchOptions = COMPAT,
    pod_spec: dict[str, Any] | None = None,
) -> BackendResult:
    return with_backend_launch(
        container,
        pod_spec or {},
        backend="vllm",
        role=role,
        node_count=nodes,
        gpus_per_pod=gpus,
        annotations=annotations or {},
        dgd_name="test-dgd",
        addressing=addressing,
        options=options,
    )


# --- Ray (V1-V4, V8) ------------------------------------------------------------------------


def test_v1_ray_leader_exact() -> None:
    result = run(
        {
            "command": ["python3", "-m", "dynamo.vllm"],
            "args": ["--model", "test", "--tensor-parallel-size", "8"],
        },
        role="leader",
        gpus=4,
        nodes=3,
    )
    assert result.container["command"] == ["/bin/sh", "-c"]
    assert result.container["args"] == [
        "ray start --head --port=6379 && python3 -m dynamo.vllm --model test --tensor-parallel-size 8 "
        "--distributed-executor-backend ray"
    ]
    assert result.pod_spec == {} and result.extra_objects == []


def test_v1_ray_leader_ours_waits_for_all_nodes_then_execs_engine() -> None:
    result = run(
        {
            "command": ["python3", "-m", "dynamo.vllm"],
            "args": ["--model", "test", "--tensor-parallel-size", "8"],
        },
        role="leader",
        gpus=4,
        nodes=3,
        addressing=DGD,
        options=OURS,
    )
    (script,) = result.container["args"]
    assert script == (
        "ray start --head --port=6379 && python3 /scripts/ray-wait.py --nodes 3 --gpus-per-node 4 "
        "--timeout 1800 && exec python3 -m dynamo.vllm --model test --tensor-parallel-size 8 "
        "--distributed-executor-backend ray"
    )
    # Dynamo's substring survives: the head starts first, the engine line is unchanged.
    assert script.startswith("ray start --head --port=6379 && ")
    assert script.endswith(
        "python3 -m dynamo.vllm --model test --tensor-parallel-size 8 --distributed-executor-backend ray"
    )
    assert {
        "name": "wait-leader-script",
        "mountPath": "/scripts",
        "readOnly": True,
    } in result.container["volumeMounts"]
    assert result.pod_spec["volumes"] == [
        {"name": "wait-leader-script", "configMap": {"name": "test-dgd-wait-leader-script"}}
    ]
    (configmap,) = result.extra_objects
    assert configmap["metadata"]["name"] == "test-dgd-wait-leader-script"
    assert set(configmap["data"]) == {
        "wait-for-leader.py",
        "wait-for-tcp.py",
        "ray-wait.py",
        "placement.py",
    }
    assert "def wait_for_nodes" in configmap["data"]["ray-wait.py"]


def test_v2_json_argument_is_double_quoted_inside_ray_line() -> None:
    result = run(
        {
            "command": ["python3", "-m", "dynamo.vllm"],
            "args": [
                "--model",
                "test",
                "--tensor-parallel-size",
                "8",
                "--kv-transfer-config",
                '{"kv_connector": "NixlConnector", "kv_role": "kv_both"}',
            ],
        },
        role="leader",
        gpus=4,
        nodes=3,
    )
    assert result.container["args"] == [
        "ray start --head --port=6379 && python3 -m dynamo.vllm --model test --tensor-parallel-size 8 "
        '--kv-transfer-config "{\\"kv_connector\\": \\"NixlConnector\\", \\"kv_role\\": \\"kv_both\\"}" '
        "--distributed-executor-backend ray"
    ]


def test_v3_ray_worker_grove_discards_user_command_and_probes() -> None:
    result = run(
        {
            "command": ["python3"],
            "args": ["-m", "dynamo.vllm", "--model", "test", "--tensor-parallel-size", "8"],
            **PROBES,
        },
        role="worker",
        gpus=4,
    )
    assert result.container["command"] == ["/bin/sh", "-c"]
    assert result.container["args"] == [f"ray start --address={GROVE_LEADER}:6379 --block"]
    assert not set(PROBES) & set(result.container)
    assert result.pod_spec == {}


def test_v3_ray_worker_ours_waits_for_leader_gcs_in_init_container() -> None:
    result = run(
        {
            "image": "img:1",
            "command": ["python3"],
            "args": ["-m", "dynamo.vllm", "--tensor-parallel-size", "8"],
            **PROBES,
        },
        role="worker",
        gpus=4,
        addressing=DGD,
        options=OURS,
    )
    assert result.container["args"] == ["ray start --address=$(DGD_LEADER_ADDRESS):6379 --block"]
    (init,) = result.pod_spec["initContainers"]
    assert init["name"] == "wait-for-leader" and init["image"] == "img:1"
    assert init["command"] == [
        "sh",
        "-c",
        f'export LEADER_HOST="{OUR_LEADER_LITERAL}" LEADER_PORT="6379" DGD_WAIT_TIMEOUT="1800" '
        'DGD_WAIT_WHAT="the Ray head of the leader" && exec python3 /scripts/wait-for-leader.py',
    ]


def test_v4_ray_worker_lws_without_command() -> None:
    result = run(
        {"args": ["python3", "-m", "dynamo.vllm", "--tensor-parallel-size", "8"]},
        role="worker",
        gpus=4,
        addressing=LWS,
    )
    assert result.container["args"] == ["ray start --address=$(LWS_LEADER_ADDRESS):6379 --block"]


def test_v8_ray_override_beats_origin_version() -> None:
    result = run(
        {
            "command": ["python3", "-m", "dynamo.vllm"],
            "args": ["--model", "test", "--tensor-parallel-size", "8"],
        },
        role="leader",
        gpus=4,
        nodes=3,
        annotations={**ORIGIN_1, "nvidia.com/vllm-distributed-executor-backend": "ray"},
    )
    assert result.container["args"][0].startswith("ray start --head --port=6379 && ")


def test_ray_leader_shell_form_patches_script_instead_of_wrapping_sh() -> None:
    script = "exec python3 -m dynamo.vllm \\\n  --model m \\\n  --tensor-parallel-size 16\n"
    result = run(
        {"command": ["/bin/bash", "-c"], "args": [script]}, role="leader", gpus=8, options=COMPAT
    )
    assert result.container["command"] == ["/bin/bash", "-c"]
    assert result.container["args"] == [
        "ray start --head --port=6379 || exit 1\n"
        "exec python3 -m dynamo.vllm --distributed-executor-backend ray \\\n  --model m \\\n  --tensor-parallel-size 16"
    ]


# --- mp (V5-V7, V9, V19) --------------------------------------------------------------------

MP_INPUT = {"command": ["python3"], "args": ["-m", "dynamo.vllm", "--tensor-parallel-size", "16"]}


def test_v5_mp_leader_appends_flags() -> None:
    result = run(MP_INPUT, role="leader", gpus=8, annotations=ORIGIN_1)
    assert result.container["args"] == [
        "-m",
        "dynamo.vllm",
        "--tensor-parallel-size",
        "16",
        "--distributed-executor-backend",
        "mp",
        "--nnodes",
        "2",
        "--master-addr",
        GROVE_LEADER,
        "--master-port",
        "29500",
        "--node-rank",
        "0",
    ]
    assert result.container["env"] == [
        {
            "name": "VLLM_NIXL_SIDE_CHANNEL_HOST",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
        }
    ]
    assert result.pod_spec == {}  # the leader gets no wait-for-leader init container


def test_v6_mp_worker_grove_needs_shell() -> None:
    result = run(MP_INPUT, role="worker", gpus=8, annotations=ORIGIN_1)
    assert result.container["command"] == ["sh", "-c"]
    assert result.container["args"] == [
        f"exec python3 -m dynamo.vllm --tensor-parallel-size 16 --distributed-executor-backend mp --nnodes 2 "
        f"--master-addr {GROVE_LEADER} --master-port 29500 --node-rank $((GROVE_PCLQ_POD_INDEX + 1)) --headless"
    ]


def test_v7_mp_worker_lws_appends_without_shell() -> None:
    result = run(MP_INPUT, role="worker", gpus=8, addressing=LWS, annotations=ORIGIN_1)
    assert result.container["command"] == ["python3"]
    assert result.container["args"][4:] == [
        "--distributed-executor-backend",
        "mp",
        "--nnodes",
        "2",
        "--master-addr",
        "$(LWS_LEADER_ADDRESS)",
        "--master-port",
        "29500",
        "--node-rank",
        "$(LWS_WORKER_INDEX)",
        "--headless",
    ]


def test_v7_mp_worker_ours_appends_without_shell() -> None:
    result = run(
        MP_INPUT, role="worker", gpus=8, addressing=DGD, annotations=ORIGIN_1, options=OURS
    )
    assert result.container["command"] == ["python3"]
    assert result.container["args"][4:] == [
        "--distributed-executor-backend",
        "mp",
        "--nnodes",
        "2",
        "--master-addr",
        "$(DGD_LEADER_ADDRESS)",
        "--master-port",
        "29500",
        "--node-rank",
        "$(DGD_NODE_RANK)",
        "--headless",
    ]
    (init,) = result.pod_spec["initContainers"]
    assert init["name"] == "wait-for-leader-mp"
    assert (
        f'LEADER_HOST="{OUR_LEADER_LITERAL}" LEADER_PORT="29500" DGD_WAIT_TIMEOUT="1800"'
        in init["command"][2]
    )


def test_v9_mp_override_without_origin() -> None:
    result = run(
        MP_INPUT,
        role="leader",
        gpus=8,
        annotations={"nvidia.com/vllm-distributed-executor-backend": "mp"},
    )
    assert "--distributed-executor-backend" in result.container["args"]
    assert (
        result.container["args"][
            result.container["args"].index("--distributed-executor-backend") + 1
        ]
        == "mp"
    )


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, False),
        (
            {
                "nvidia.com/vllm-distributed-executor-backend": "mp",
                "nvidia.com/dynamo-operator-origin-version": "0.1.0",
            },
            True,
        ),
        (
            {
                "nvidia.com/vllm-distributed-executor-backend": "ray",
                "nvidia.com/dynamo-operator-origin-version": "1.0.0",
            },
            False,
        ),
        (
            {
                "nvidia.com/vllm-distributed-executor-backend": "invalid",
                "nvidia.com/dynamo-operator-origin-version": "1.0.0",
            },
            True,
        ),
        ({"nvidia.com/vllm-distributed-executor-backend": "MP"}, True),
        (
            {
                "nvidia.com/vllm-distributed-executor-backend": "RAY",
                "nvidia.com/dynamo-operator-origin-version": "1.2.0",
            },
            False,
        ),
        ({"nvidia.com/dynamo-operator-origin-version": "0.9.9"}, False),
        ({"nvidia.com/dynamo-operator-origin-version": "1.0.0-rc.1"}, False),
        ({"nvidia.com/dynamo-operator-origin-version": "v1.3.0"}, True),
        ({"nvidia.com/dynamo-operator-origin-version": "not-a-version"}, False),
    ],
)
def test_mp_vs_ray_truth_table(annotations: dict[str, str], expected: bool) -> None:
    assert use_mp_executor(annotations) is expected


@pytest.mark.parametrize(
    ("addressing", "host"),
    [
        (
            GROVE,
            "${GROVE_PCSG_NAME}-${GROVE_PCSG_INDEX}-test-service-ldr-0.${GROVE_HEADLESS_SERVICE}",
        ),
        (LWS, "${LWS_LEADER_ADDRESS}"),
    ],
)
def test_v19_mp_worker_wait_for_leader_init_container_exact(
    addressing: MultinodeAddressing, host: str
) -> None:
    result = run(
        {**MP_INPUT, "image": "vllm:1"},
        role="worker",
        gpus=8,
        addressing=addressing,
        annotations=ORIGIN_1,
        pod_spec={"volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}]},
    )
    assert result.pod_spec["volumes"] == [
        {"name": "shm", "emptyDir": {"medium": "Memory"}},
        {"name": "wait-leader-script", "configMap": {"name": "test-dgd-wait-leader-script"}},
    ]
    assert result.pod_spec["initContainers"] == [
        {
            "name": "wait-for-leader-mp",
            "image": "vllm:1",
            "command": [
                "sh",
                "-c",
                f'export LEADER_HOST="{host}" LEADER_PORT="29500" && exec python3 /scripts/wait-for-leader.py',
            ],
            "volumeMounts": [
                {"name": "wait-leader-script", "mountPath": "/scripts", "readOnly": True}
            ],
        }
    ]
    assert [o["metadata"]["name"] for o in result.extra_objects] == ["test-dgd-wait-leader-script"]


def test_v19_no_init_container_for_leader_dp_worker_or_single_node() -> None:
    assert (
        "initContainers" not in run(MP_INPUT, role="leader", gpus=8, annotations=ORIGIN_1).pod_spec
    )
    dp = {"command": ["python3"], "args": ["-m", "dynamo.vllm", "--data-parallel-size", "16"]}
    assert "initContainers" not in run(dp, role="worker", gpus=8, annotations=ORIGIN_1).pod_spec
    assert run(MP_INPUT, role="main", gpus=8, nodes=1, annotations=ORIGIN_1).pod_spec == {}


# --- data parallel (V10-V15) ------------------------------------------------------------------

DP_INPUT = {"command": ["python3"], "args": ["-m", "dynamo.vllm", "--data-parallel-size", "16"]}


@pytest.mark.parametrize(
    ("addressing", "leader"), [(GROVE, GROVE_LEADER), (LWS, "$(LWS_LEADER_ADDRESS)")]
)
def test_v10_dp_leader(addressing: MultinodeAddressing, leader: str) -> None:
    result = run(DP_INPUT, role="leader", gpus=8, addressing=addressing)
    assert result.container["args"] == [
        "-m",
        "dynamo.vllm",
        "--data-parallel-size",
        "16",
        "--data-parallel-hybrid-lb",
        "--data-parallel-size-local",
        "8",
        "--data-parallel-start-rank",
        "0",
        "--data-parallel-address",
        leader,
        "--data-parallel-rpc-port",
        "13445",
    ]


def test_v11_dp_worker_grove_shell_arithmetic() -> None:
    result = run({**DP_INPUT, **PROBES}, role="worker", gpus=8)
    assert result.container["command"] == ["sh", "-c"]
    assert result.container["args"] == [
        "exec python3 -m dynamo.vllm --data-parallel-size 16 --data-parallel-hybrid-lb --data-parallel-size-local 8 "
        "--data-parallel-start-rank $(( 8 * $((GROVE_PCLQ_POD_INDEX + 1)) )) "
        f"--data-parallel-address {GROVE_LEADER} --data-parallel-rpc-port 13445"
    ]
    assert not set(PROBES) & set(result.container)


def test_v12_dp_local_size_divides_by_tensor_parallel() -> None:
    result = run(
        {
            "command": ["python3"],
            "args": [
                "-m",
                "dynamo.vllm",
                "--data-parallel-size",
                "8",
                "--tensor-parallel-size",
                "2",
            ],
        },
        role="worker",
        gpus=8,
    )
    assert (
        "--data-parallel-size-local 4 --data-parallel-start-rank $(( 4 * $((GROVE_PCLQ_POD_INDEX + 1)) ))"
        in result.container["args"][0]
    )


DP_FLAGS_LEADER = (
    "--data-parallel-hybrid-lb --data-parallel-size-local 4 --data-parallel-start-rank 0 "
    f"--data-parallel-address {GROVE_LEADER} --data-parallel-rpc-port 13445"
)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "python3 -m dynamo.vllm --data-parallel-size 8",
            f"python3 -m dynamo.vllm {DP_FLAGS_LEADER} --data-parallel-size 8",
        ),
        (
            "echo blah | wc -l && python3 -m dynamo.vllm --data-parallel-size 8 && ls -al",
            f"echo blah | wc -l && python3 -m dynamo.vllm {DP_FLAGS_LEADER} --data-parallel-size 8 && ls -al",
        ),
        (
            "python3 -m dynamo.vllm --data-parallel-size 8 | tee /tmp/log",
            f"python3 -m dynamo.vllm {DP_FLAGS_LEADER} --data-parallel-size 8 | tee /tmp/log",
        ),
    ],
    ids=["V13", "V14", "V15"],
)
def test_v13_v15_dp_shell_form_insertion(script: str, expected: str) -> None:
    result = run({"command": ["sh", "-c"], "args": [script]}, role="leader", gpus=4)
    assert result.container == {"command": ["sh", "-c"], "args": [expected]}


def test_deepseek_recipe_bash_script_dp_path() -> None:
    script = (
        "exec python3 -m dynamo.vllm \\\n  --model /model-cache/deepseek-r1 \\\n  --data-parallel-hybrid-lb \\\n"
        "  --tensor-parallel-size 1 \\\n  --data-parallel-size 16 \\\n  --enable-expert-parallel\n"
    )
    result = run({"command": ["/bin/bash", "-c"], "args": [script]}, role="leader", gpus=8)
    (patched,) = result.container["args"]
    assert patched.startswith(
        "exec python3 -m dynamo.vllm --data-parallel-hybrid-lb --data-parallel-size-local 8 "
        f"--data-parallel-start-rank 0 --data-parallel-address {GROVE_LEADER} --data-parallel-rpc-port 13445 \\\n"
    )
    assert "--data-parallel-size 16" in patched and patched.count("--data-parallel-hybrid-lb") == 2
    assert subprocess.run(["bash", "-n", "-c", patched], check=False).returncode == 0


# --- no-ops (V16-V18) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("container", "role", "nodes", "gpus"),
    [
        (
            {"command": ["python3", "-m", "dynamo.vllm"], "args": ["--tensor-parallel-size", "16"]},
            "main",
            1,
            8,
        ),
        ({"args": ["python3", "-m", "dynamo.frontend"]}, "main", 3, 0),
        ({"command": ["python3", "-m", "dynamo.vllm"], "args": []}, "leader", 2, 0),
        (
            {"command": ["python3", "-m", "dynamo.vllm"], "args": ["--tensor-parallel-size", "4"]},
            "leader",
            2,
            8,
        ),
    ],
    ids=["V16-single-node", "V17-main", "V18-no-gpus", "fits-in-one-pod"],
)
def test_v16_v18_unchanged(container: dict[str, Any], role: Role, nodes: int, gpus: int) -> None:
    for options in (COMPAT, OURS):
        result = run(container, role=role, nodes=nodes, gpus=gpus, options=options)
        assert (
            result.container == container and result.pod_spec == {} and result.extra_objects == []
        )


def test_inputs_are_not_mutated() -> None:
    container = {
        "command": ["python3"],
        "args": ["-m", "dynamo.vllm", "--tensor-parallel-size", "16"],
        **PROBES,
    }
    pod_spec: dict[str, Any] = {"volumes": []}
    snapshot = repr((container, pod_spec))
    run(
        container,
        role="worker",
        gpus=8,
        annotations=ORIGIN_1,
        pod_spec=pod_spec,
        options=OURS,
        addressing=DGD,
    )
    assert repr((container, pod_spec)) == snapshot


# --- our placeholders survive the kubelet and the shell ------------------------------------------


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion: `$$` escapes, `$(` reads to the first `)`, unknown names stay."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, f"$({name})"))
                    i = end + 1
                    continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def test_ours_dp_worker_rank_arithmetic_survives_kubelet_and_shell() -> None:
    result = run(DP_INPUT, role="worker", gpus=8, addressing=DGD, options=OURS)
    assert result.container["command"] == ["sh", "-c"]
    (script,) = result.container["args"]
    assert "--data-parallel-start-rank $(( 8 * ${DGD_NODE_RANK} ))" in script
    env = {"DGD_LEADER_ADDRESS": OUR_LEADER_LITERAL, "DGD_NODE_RANK": "1"}
    expanded = kubelet_expand(script, env)
    # Run it with `printf` in place of the engine to see the argv the engine would get.
    probe = re.sub(r"^exec python3", "exec printf '%s\\n' python3", expanded)
    argv = subprocess.run(
        ["sh", "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert argv[argv.index("--data-parallel-start-rank") + 1] == "8"
    assert argv[argv.index("--data-parallel-address") + 1] == OUR_LEADER_LITERAL


def test_dynamo_lws_style_dp_rank_would_not_survive_the_kubelet() -> None:
    # Why DgdGroupAddressing.rank_arithmetic_operand is `${DGD_NODE_RANK}`: a kubelet reference
    # nested in `$(( ))` is left alone by the kubelet and run as a command by the shell.
    result = run(DP_INPUT, role="worker", gpus=8, addressing=LWS)
    expanded = kubelet_expand(result.container["args"][0], {"LWS_WORKER_INDEX": "1"})
    assert "$(( 8 * $(LWS_WORKER_INDEX) ))" in expanded


# --- the same vectors with our placeholders (no shell needed for the rank) -------------------------


@pytest.mark.parametrize(
    ("container", "role", "gpus", "annotations", "expected"),
    [
        (
            MP_INPUT,
            "leader",
            8,
            ORIGIN_1,
            {
                "command": ["python3"],
                "args": [
                    "-m",
                    "dynamo.vllm",
                    "--tensor-parallel-size",
                    "16",
                    "--distributed-executor-backend",
                    "mp",
                    "--nnodes",
                    "2",
                    "--master-addr",
                    "$(DGD_LEADER_ADDRESS)",
                    "--master-port",
                    "29500",
                    "--node-rank",
                    "0",
                ],
            },
        ),
        (
            DP_INPUT,
            "leader",
            8,
            {},
            {
                "command": ["python3"],
                "args": [
                    "-m",
                    "dynamo.vllm",
                    "--data-parallel-size",
                    "16",
                    "--data-parallel-hybrid-lb",
                    "--data-parallel-size-local",
                    "8",
                    "--data-parallel-start-rank",
                    "0",
                    "--data-parallel-address",
                    "$(DGD_LEADER_ADDRESS)",
                    "--data-parallel-rpc-port",
                    "13445",
                ],
            },
        ),
        (
            DP_INPUT,
            "worker",
            8,
            {},
            {
                "command": ["sh", "-c"],
                "args": [
                    "exec python3 -m dynamo.vllm --data-parallel-size 16 --data-parallel-hybrid-lb --data-parallel-size-local 8 "
                    "--data-parallel-start-rank $(( 8 * ${DGD_NODE_RANK} )) --data-parallel-address $(DGD_LEADER_ADDRESS) "
                    "--data-parallel-rpc-port 13445"
                ],
            },
        ),
        (
            {
                "command": ["sh", "-c"],
                "args": ["python3 -m dynamo.vllm --data-parallel-size 8 | tee /tmp/log"],
            },
            "leader",
            4,
            {},
            {
                "command": ["sh", "-c"],
                "args": [
                    "python3 -m dynamo.vllm --data-parallel-hybrid-lb --data-parallel-size-local 4 --data-parallel-start-rank 0 "
                    "--data-parallel-address $(DGD_LEADER_ADDRESS) --data-parallel-rpc-port 13445 --data-parallel-size 8 | tee /tmp/log"
                ],
            },
        ),
    ],
    ids=["V5-ours", "V10-ours", "V11-ours", "V15-ours"],
)
def test_vectors_with_our_placeholders(
    container: dict[str, Any],
    role: Role,
    gpus: int,
    annotations: dict[str, str],
    expected: dict[str, Any],
) -> None:
    result = run(
        container, role=role, gpus=gpus, addressing=DGD, annotations=annotations, options=OURS
    )
    assert {k: result.container[k] for k in ("command", "args")} == expected


def test_ray_leader_shell_form_ours_waits_between_head_and_script() -> None:
    script = "exec python3 -m dynamo.vllm \\\n  --tensor-parallel-size 16\n"
    result = run(
        {"command": ["/bin/bash", "-c"], "args": [script]},
        role="leader",
        gpus=8,
        addressing=DGD,
        options=OURS,
    )
    (line,) = result.container["args"]
    assert line == (
        "ray start --head --port=6379 || exit 1\n"
        "python3 /scripts/ray-wait.py --nodes 2 --gpus-per-node 8 --timeout 1800 || exit 1\n"
        "exec python3 -m dynamo.vllm --distributed-executor-backend ray \\\n  --tensor-parallel-size 16"
    )
    assert subprocess.run(["bash", "-n", "-c", line], check=False).returncode == 0
