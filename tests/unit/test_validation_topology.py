"""Topology admission (`api.validation.topology`): parallelism flags vs GPUs per pod x nodeCount."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests import peer_corpus
from tests.fixtures.catalog import graph_paths
from tests.fixtures.dgd import DGD

from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation.topology import check_topology

pytestmark = pytest.mark.unit


def dgd(
    *,
    command: list[str],
    args: list[str] | None = None,
    gpus: str | None = "8",
    nodes: int | None = None,
    backend: str | None = None,
    name: str = "VllmDecodeWorker",
) -> DynamoGraphDeployment:
    graph = (
        DGD("g")
        .worker(name, replicas=None)
        .container(image="img", command=command, args=args or [])
    )
    if gpus is not None:
        graph.gpus(gpus)
    if nodes is not None:
        graph.multinode(nodes)
    if backend:
        graph.backend(backend)
    return graph.model()


VLLM = ["python3", "-m", "dynamo.vllm"]
SGLANG = ["python3", "-m", "dynamo.sglang"]
TRTLLM = ["python3", "-m", "dynamo.trtllm"]


def errors(doc: DynamoGraphDeployment) -> list[str]:
    return [str(p) for p in check_topology(doc) if p.severity == "error"]


def warnings(doc: DynamoGraphDeployment) -> list[str]:
    return [str(p) for p in check_topology(doc) if p.severity == "warning"]


@pytest.mark.parametrize(
    "path",
    [*graph_paths(), *peer_corpus.cases(peer_corpus.v1alpha1_example_paths())],
    ids=lambda p: Path(p).name,
)
def test_every_graph_and_dynamo_example_is_accepted_without_findings(path: Path) -> None:
    docs = [
        d
        for d in yaml.safe_load_all(path.read_text())
        if d and d.get("kind") == "DynamoGraphDeployment"
    ]
    assert docs
    for doc in docs:
        assert check_topology(DynamoGraphDeployment.model_validate(doc)) == []


@peer_corpus.peer_corpus
def test_example_count_is_twenty() -> None:
    assert len(peer_corpus.v1alpha1_example_paths()) == peer_corpus.V1ALPHA1_COUNT


# --- vLLM -----------------------------------------------------------------------------------


def test_vllm_tp_too_large_for_single_pod_message_names_flags_and_arithmetic() -> None:
    assert errors(dgd(command=VLLM, args=["--tensor-parallel-size", "16"])) == [
        "spec.services.VllmDecodeWorker: --tensor-parallel-size 16 \u00d7 --pipeline-parallel-size 1 = 16 GPUs per "
        "engine, but the service has 8 GPUs per pod \u00d7 1 node = 8"
    ]


@pytest.mark.parametrize(
    "args",
    [["--tensor-parallel-size=16"], ["-tp", "16"], ["--tensor_parallel_size", "16"], ["-tp=16"]],
    ids=["equals", "short", "underscore", "short-equals"],
)
def test_vllm_every_tp_spelling_is_read(args: list[str]) -> None:
    (message,) = errors(dgd(command=VLLM, args=args))
    assert f"{' '.join(args)} \u00d7 --pipeline-parallel-size 1 = 16 GPUs per engine" in message


def test_vllm_tp_times_pp_times_dp_single_pod() -> None:
    (message,) = errors(dgd(command=VLLM, args=["-tp", "2", "-pp", "2", "-dp", "4"]))
    assert (
        "-tp 2 \u00d7 -pp 2 \u00d7 -dp 4 = 16 GPUs, but the service has 8 GPUs per pod \u00d7 1 node = 8"
        in message
    )
    assert errors(dgd(command=VLLM, args=["-tp", "2", "-pp", "2", "-dp", "2"])) == []


def test_vllm_dp_local_decides_a_single_pod() -> None:
    assert (
        errors(
            dgd(
                command=VLLM, args=["--data-parallel-size", "16", "--data-parallel-size-local", "8"]
            )
        )
        == []
    )
    (message,) = errors(dgd(command=VLLM, args=["--data-parallel-size", "16", "-dpl", "16"]))
    assert "-dpl 16 = 16 GPUs" in message


def test_vllm_multinode_tp_fits_nodes() -> None:
    assert errors(dgd(command=VLLM, args=["--tensor-parallel-size", "16"], nodes=2)) == []
    (message,) = errors(dgd(command=VLLM, args=["--tensor-parallel-size", "32"], nodes=2))
    assert (
        "--tensor-parallel-size 32 \u00d7 --pipeline-parallel-size 1 = 32 GPUs per engine, but the service has 8 GPUs per pod \u00d7 2 nodes = 16"
        in message
    )


def test_vllm_multinode_partial_use_warns() -> None:
    doc = dgd(command=VLLM, args=["--tensor-parallel-size", "12"], nodes=2)
    assert errors(doc) == []
    assert "uses 12 of the 16 GPUs" in warnings(doc)[0]


def test_vllm_multinode_data_parallel_must_match_ranks() -> None:
    assert errors(dgd(command=VLLM, args=["--data-parallel-size", "16"], nodes=2)) == []
    (message,) = errors(dgd(command=VLLM, args=["--data-parallel-size", "12"], nodes=2))
    assert (
        "--data-parallel-size 12 must equal" in message
        and "= 8 ranks per pod \u00d7 2 nodes = 16" in message
    )


@pytest.mark.parametrize(
    ("command", "args"),
    [
        (VLLM, ["-tp", "16"]),
        (VLLM, ["-tp", "8", "-pp", "2"]),
        (VLLM, ["--tensor-parallel-size=8", "--pipeline_parallel_size", "2"]),
        ([*VLLM, "--tensor-parallel-size", "16"], []),
        (["sh", "-c"], ["exec python3 -m dynamo.vllm -tp 8 -pp 2"]),
    ],
    ids=["short", "short-tp-pp", "equals-underscore", "in-command", "shell"],
)
def test_vllm_multinode_every_spelling_is_accepted(command: list[str], args: list[str]) -> None:
    # The launch reads the same parser, so a layout the engine accepts is one it can start.
    doc = dgd(command=command, args=args, nodes=2)
    assert errors(doc) == [] and warnings(doc) == []


def test_vllm_multinode_data_parallel_flag_in_command_is_read() -> None:
    assert errors(dgd(command=[*VLLM, "--data-parallel-size", "16"], nodes=2)) == []
    (message,) = errors(dgd(command=[*VLLM, "-dp", "12"], nodes=2))
    assert "-dp 12 must equal" in message


def test_vllm_multinode_that_fits_one_pod_warns_independent_engines() -> None:
    doc = dgd(command=VLLM, args=["--tensor-parallel-size", "8"], nodes=2)
    assert errors(doc) == []
    assert "each of the 2 pods runs its own engine" in warnings(doc)[0]


def test_vllm_shell_script_multiline_with_continuations() -> None:
    script = (
        "set -e\necho start | tee /tmp/x\nexec python3 -m dynamo.vllm \\\n  --model m \\\n"
        "  --tensor-parallel-size 16 \\\n  --pipeline-parallel-size=2 && echo done\n"
    )
    (message,) = errors(dgd(command=["/bin/bash", "-c"], args=[script]))
    assert (
        "--tensor-parallel-size 16 \u00d7 --pipeline-parallel-size=2 = 32 GPUs per engine"
        in message
    )


def test_vllm_non_numeric_value_is_not_checked() -> None:
    assert (
        errors(
            dgd(command=["sh", "-c"], args=["python3 -m dynamo.vllm --tensor-parallel-size $TP"])
        )
        == []
    )


# --- SGLang ---------------------------------------------------------------------------------


def test_sglang_tp_is_total_over_nodes() -> None:
    assert errors(dgd(command=SGLANG, args=["--tp-size", "8"], gpus="4", nodes=2)) == []
    (message,) = errors(dgd(command=SGLANG, args=["--tp", "16"], gpus="4", nodes=2))
    assert message.endswith(
        "--tp 16 \u00d7 --pp-size 1 = 16 GPUs per engine, but the service has 4 GPUs per pod \u00d7 2 nodes = 8"
    )


@pytest.mark.parametrize(
    "args", [["--tensor-parallel-size", "16"], ["--tp-size=16"], ["--tp", "16"]]
)
def test_sglang_tp_spellings(args: list[str]) -> None:
    assert len(errors(dgd(command=SGLANG, args=args, gpus="8"))) == 1


def test_sglang_dp_multiplies_unless_dp_attention() -> None:
    (message,) = errors(dgd(command=SGLANG, args=["--tp", "8", "--dp", "8"], gpus="8"))
    assert "--tp 8 \u00d7 --pp-size 1 \u00d7 --dp 8 = 64 GPUs" in message
    assert (
        errors(
            dgd(
                command=SGLANG,
                args=["--tp", "8", "--dp-size", "8", "--enable-dp-attention", "--ep", "8"],
                gpus="8",
            )
        )
        == []
    )
    (message,) = errors(
        dgd(command=SGLANG, args=["--tp", "8", "--dp", "3", "--enable-dp-attention"], gpus="8")
    )
    assert "must be a multiple of --dp 3" in message


def test_sglang_uneven_split_over_nodes() -> None:
    (message,) = errors(dgd(command=SGLANG, args=["--tp", "6"], gpus="4", nodes=4))
    assert "cannot be split evenly over 4 nodes" in message


def test_sglang_pipeline_parallel_and_ep_warning() -> None:
    assert (
        errors(dgd(command=SGLANG, args=["--tp", "4", "--pp-size", "2"], gpus="4", nodes=2)) == []
    )
    doc = dgd(command=SGLANG, args=["--tp", "4", "--expert-parallel-size", "8"], gpus="4")
    assert errors(doc) == [] and "larger than --tp 4" in warnings(doc)[0]


# --- TensorRT-LLM -----------------------------------------------------------------------------


def test_trtllm_engine_yaml_is_invisible() -> None:
    doc = dgd(
        command=TRTLLM,
        args=["--extra-engine-args", "/cfg.yaml", "--tensor-parallel-size", "64"],
        gpus="4",
        nodes=2,
    )
    assert errors(doc) == [] and warnings(doc) == []


def test_trtllm_cli_flags_checked_without_yaml() -> None:
    assert (
        errors(dgd(command=TRTLLM, args=["--tensor-parallel-size", "8"], gpus="4", nodes=2)) == []
    )
    (message,) = errors(
        dgd(command=TRTLLM, args=["--tensor-parallel-size", "4"], gpus="4", nodes=2)
    )
    assert "mpirun starts one rank per GPU" in message
    (message,) = errors(dgd(command=TRTLLM, args=["--tp_size", "16"], gpus="4", nodes=2))
    assert "--tp_size 16 \u00d7 --pipeline-parallel-size 1 = 16 GPUs per engine" in message


# --- not checked / other errors -------------------------------------------------------------------


def test_no_gpus_or_no_engine_invocation_is_not_checked() -> None:
    assert errors(dgd(command=VLLM, args=["-tp", "16"], gpus=None)) == []
    assert (
        errors(
            dgd(
                command=["sh", "-c"],
                args=["python3 components/worker.py --tensor-parallel-size 16"],
                backend="vllm",
            )
        )
        == []
    )


def test_backend_mismatch_is_an_error_at_the_main_container() -> None:
    assert errors(dgd(command=VLLM, backend="sglang")) == [
        "spec.services.VllmDecodeWorker.extraPodSpec.mainContainer: backend framework mismatch: detected 'vllm' "
        "from the command but spec.backendFramework is 'sglang'"
    ]
