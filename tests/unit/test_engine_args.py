"""`api.engine_args`: every spelling each engine accepts, read once for admission and injection."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.api.engine_args import (
    container_parallelism,
    engine_argv,
    launch_parallelism,
    option_value,
    parse_parallelism,
    vllm_multinode_mode,
)
from dgd_operator.api.validation import validate_dgd
from dgd_operator.builders.graph import build_graph
from dgd_operator.builders.options import BuildOptions

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("backend", "argv", "expected"),
    [
        # vLLM: argparse long and short names, `=`, and underscores read as dashes.
        ("vllm", ["-tp", "8", "-pp", "2"], {"tp": 8, "pp": 2}),
        ("vllm", ["--tensor-parallel-size", "8"], {"tp": 8}),
        ("vllm", ["--tensor-parallel-size=8", "--pipeline-parallel-size=2"], {"tp": 8, "pp": 2}),
        ("vllm", ["--tensor_parallel_size", "8", "--pipeline_parallel_size=2"], {"tp": 8, "pp": 2}),
        ("vllm", ["-tp=4"], {"tp": 4}),
        ("vllm", ["-dp", "4", "--data-parallel-size-local", "2"], {"dp": 4, "dp_local": 2}),
        ("vllm", ["--data_parallel_size", "4", "-dpl", "2"], {"dp": 4, "dp_local": 2}),
        ("vllm", ["-tp", "2", "-tp", "4"], {"tp": 4}),  # last wins, as in argparse
        ("vllm", ["--tp-size", "8", "--tp", "8"], {}),  # SGLang's names mean nothing to vLLM
        # SGLang: two names per size, the prefixes its docs use, `=`; no underscores.
        ("sglang", ["--tp-size", "8", "--pp-size", "2"], {"tp": 8, "pp": 2}),
        ("sglang", ["--tp", "8", "--dp", "2", "--ep", "8"], {"tp": 8, "dp": 2, "ep": 8}),
        ("sglang", ["--tensor-parallel-size=8", "--dp-size=2"], {"tp": 8, "dp": 2}),
        ("sglang", ["--expert-parallel-size", "4", "--ep-size", "8"], {"ep": 8}),
        ("sglang", ["--tensor_parallel_size", "8", "-tp", "8"], {}),
        # TensorRT-LLM: dynamo.trtllm's long names and trtllm-serve's underscore names.
        (
            "trtllm",
            ["--tensor-parallel-size", "8", "--pipeline-parallel-size", "2"],
            {"tp": 8, "pp": 2},
        ),
        (
            "trtllm",
            ["--tp_size", "8", "--pp_size", "2", "--ep_size", "4"],
            {"tp": 8, "pp": 2, "ep": 4},
        ),
        ("trtllm", ["--expert-parallel-size=4"], {"ep": 4}),
        ("trtllm", ["-tp", "8", "--tp-size", "8"], {}),
    ],
)
def test_every_spelling_the_engine_accepts(
    backend: str, argv: list[str], expected: dict[str, int]
) -> None:
    found = parse_parallelism(argv, backend)
    assert {name: value.value for name, value in found.values.items()} == expected


def test_spelling_is_kept_for_messages_and_non_numbers_are_unknown() -> None:
    found = parse_parallelism(["-tp=8", "--pipeline-parallel-size", "$PP"], "vllm")
    assert found.values["tp"].spelling == "-tp=8"
    assert found.values["pp"].spelling == "--pipeline-parallel-size $PP"
    assert found.get("pp") is None and found.size("pp") == 1 and found.world == 8


def test_switches_and_config_files() -> None:
    parsed = parse_parallelism(["--enable-expert-parallel", "-dp", "8"], "vllm")
    assert "expert_parallel" in parsed.switches and parsed.get("dp") == 8
    assert "expert_parallel" in parse_parallelism(["-ep"], "vllm").switches
    assert "dp_attention" in parse_parallelism(["--enable-dp-attention"], "sglang").switches
    assert parse_parallelism(["--extra-engine-args", "/c.yaml"], "trtllm").config_file == "/c.yaml"
    assert parse_parallelism(["--extra_llm_api_options=/c.yaml"], "trtllm").config_file == "/c.yaml"


def test_engine_argv_finds_invocation_in_chains() -> None:
    container = {
        "command": ["sh", "-c"],
        "args": ["pip list | grep vllm; python3 -m dynamo.vllm --tp 2 > /tmp/log 2>&1"],
    }
    assert (engine_argv(container, "vllm") or [])[:3] == ["--tp", "2", ">"]
    assert engine_argv({"command": ["vllm", "serve", "m", "-tp", "2"]}, "vllm") == ["m", "-tp", "2"]
    assert engine_argv({"command": ["trtllm-serve", "m", "--tp_size", "8"]}, "trtllm") == [
        "m",
        "--tp_size",
        "8",
    ]


def test_launch_reads_flags_even_without_a_visible_entry_point() -> None:
    wrapped: dict[str, Any] = {"command": ["/entrypoint.sh"], "args": ["-tp", "16"]}
    assert container_parallelism(wrapped, "vllm") is None  # admission does not guess
    assert launch_parallelism(wrapped, "vllm").world == 16  # the launch still reads the flags


@pytest.mark.parametrize(
    ("argv", "gpus", "mode"),
    [
        (["-tp", "8", "-pp", "2"], 8, "distributed"),
        (["-tp", "16"], 8, "distributed"),
        (["-dp", "16"], 8, "data-parallel"),
        (["-tp", "2", "-dp", "8"], 8, "data-parallel"),
        (["-tp", "8"], 8, "none"),
        (["-tp", "16"], 0, "none"),
    ],
)
def test_vllm_multinode_mode(argv: list[str], gpus: int, mode: str) -> None:
    assert vllm_multinode_mode(parse_parallelism(argv, "vllm"), gpus) == mode


def _two_node_vllm(args: list[str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "g", "namespace": "ns", "annotations": annotations or {}},
        "spec": {
            "services": {
                "worker": {
                    "componentType": "worker",
                    "multinode": {"nodeCount": 2},
                    "resources": {"limits": {"gpu": "8"}},
                    "extraPodSpec": {
                        "mainContainer": {
                            "image": "img",
                            "command": ["python3", "-m", "dynamo.vllm"],
                            "args": ["--model", "m", *args],
                        }
                    },
                }
            }
        },
    }


def _main_containers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = validate_dgd(doc)
    assert result.errors == [] and result.warnings == [] and result.dgd is not None
    return {
        obj["metadata"]["name"]: obj["spec"]["template"]["spec"]["containers"][0]
        for obj in build_graph(result.dgd, "ns", BuildOptions())
        if obj["kind"] == "StatefulSet"
    }


def test_short_tp_pp_on_two_8_gpu_nodes_is_admitted_and_launched_with_mp() -> None:
    containers = _main_containers(
        _two_node_vllm(
            ["-tp", "8", "-pp", "2"], {"nvidia.com/vllm-distributed-executor-backend": "mp"}
        )
    )
    engine = [
        "--model",
        "m",
        "-tp",
        "8",
        "-pp",
        "2",
        "--distributed-executor-backend",
        "mp",
        "--nnodes",
        "2",
    ]
    where = ["--master-addr", "$(DGD_LEADER_ADDRESS)", "--master-port", "29500"]
    assert containers["g-worker-0-ldr"]["args"] == [*engine, *where, "--node-rank", "0"]
    assert containers["g-worker-0-wkr"]["args"] == [
        *engine,
        *where,
        "--node-rank",
        "$(DGD_NODE_RANK)",
        "--headless",
    ]


def test_short_tp_pp_on_two_8_gpu_nodes_is_launched_with_ray_by_default() -> None:
    containers = _main_containers(_two_node_vllm(["-tp", "8", "-pp", "2"]))
    (leader,) = containers["g-worker-0-ldr"]["args"]
    assert leader.startswith("ray start --head --port=6379")
    assert (
        "python3 -m dynamo.vllm --model m -tp 8 -pp 2 --distributed-executor-backend ray" in leader
    )
    (worker,) = containers["g-worker-0-wkr"]["args"]
    assert "ray start --address=$(DGD_LEADER_ADDRESS):6379 --block" in worker


def test_short_dp_on_two_8_gpu_nodes_splits_ranks_without_repeating_the_total() -> None:
    containers = _main_containers(_two_node_vllm(["-dp", "16"]))
    leader = containers["g-worker-0-ldr"]["args"]
    assert leader[:4] == ["--model", "m", "-dp", "16"]
    assert (
        "--data-parallel-size-local" in leader
        and leader[leader.index("--data-parallel-size-local") + 1] == "8"
    )
    assert "--data-parallel-size" not in leader  # the engine already reads `-dp 16`


@pytest.mark.parametrize(
    ("backend", "argv", "flags", "expected"),
    [
        (
            "vllm",
            ["--model", "a", "--served-model-name=b"],
            ("--served-model-name", "--model"),
            "b",
        ),
        ("vllm", ["--served_model_name", "b"], ("--served-model-name",), "b"),
        (
            "sglang",
            ["--model-path", "p", "--disaggregation-mode", "prefill"],
            ("--disaggregation-mode",),
            "prefill",
        ),
        ("sglang", ["--disaggregation_mode", "prefill"], ("--disaggregation-mode",), None),
        ("vllm", ["--model"], ("--model",), None),
    ],
)
def test_option_value(
    backend: str, argv: list[str], flags: tuple[str, ...], expected: str | None
) -> None:
    assert option_value(argv, backend, *flags) == expected
