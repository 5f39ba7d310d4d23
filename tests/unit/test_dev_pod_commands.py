"""Which container commands the executing fake kubelet runs, and how Dynamo's are mapped to our
runtime with the mock engine (dgd_operator.dev.pod_commands)."""

from __future__ import annotations

import pytest

from dgd_operator.dev.pod_commands import LocalCommand, expand, translate

IP = "127.244.0.2"
MODEL = "/state/model"
WORKER = "dgd_runtime.worker"
FRONTEND = "dgd_runtime.frontend"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        (
            ["python3", "-m", "dynamo.vllm"],
            ["--model", "Qwen/Qwen2.5-1.5B-Instruct", "--max-model-len", "8192"],
            LocalCommand(
                WORKER,
                (
                    "--engine", "mock", "--model-path", MODEL,
                    "--model-name", "Qwen/Qwen2.5-1.5B-Instruct",
                    "--context-length", "8192", "--system-host", IP,
                ),
            ),
        ),
        (
            ["python3"],
            ["-m", "dynamo.vllm", "--model=m", "--is-prefill-worker", "--block-size", "32",
             "--gpu-memory-utilization", "0.9", "--enforce-eager"],
            LocalCommand(
                WORKER,
                ("--engine", "mock", "--model-path", MODEL, "--model-name", "m",
                 "--block-size", "32", "--component", "prefill", "--system-host", IP),
            ),
        ),
        (
            ["python3", "-m", "dynamo.sglang"],
            ["--model-path", "ds", "--served-model-name", "served", "--page-size", "16",
             "--disaggregation-mode", "prefill", "--tp", "2"],
            LocalCommand(
                WORKER,
                ("--engine", "mock", "--model-path", MODEL, "--model-name", "served",
                 "--block-size", "16", "--component", "prefill", "--system-host", IP),
            ),
        ),
        (
            ["python3", "-m", "dynamo.trtllm"],
            ["--model-path", "x", "--disaggregation-mode", "decode"],
            LocalCommand(
                WORKER,
                ("--engine", "mock", "--model-path", MODEL, "--model-name", "x",
                 "--system-host", IP),
            ),
        ),
        (
            ["python3"],
            ["-m", "dynamo.frontend", "--http-port", "8000", "--router-mode", "kv",
             "--kv-cache-block-size", "16"],
            LocalCommand(
                FRONTEND,
                ("--http-port", "8000", "--router-mode", "kv", "--http-host", IP),
            ),
        ),
        (
            ["sh", "-c"],
            ["set -e; export X=1\nexec python3 -m dynamo.vllm --model m --max-model-len 512 && echo done"],
            LocalCommand(
                WORKER,
                ("--engine", "mock", "--model-path", MODEL, "--model-name", "m",
                 "--context-length", "512", "--system-host", IP),
            ),
        ),
        (
            ["/bin/bash", "-c", "ray start --head; python3 -m dynamo.frontend"],
            [],
            LocalCommand(FRONTEND, ("--http-host", IP)),
        ),
        (
            ["python", "-m", "dgd_runtime.worker"],
            ["--model-path", "/m", "--system-host", "0.0.0.0", "--engine", "mock"],
            LocalCommand(WORKER, ("--model-path", "/m", "--engine", "mock", "--system-host", IP)),
        ),
        (
            ["python3.11", "-m", "dgd_runtime.frontend", "--http-port", "8000"],
            [],
            LocalCommand(FRONTEND, ("--http-port", "8000", "--http-host", IP)),
        ),
        (
            ["python3", "-m", "dynamo.vllm"],
            ["--model", "m", "--nnodes", "2", "--node-rank", "0", "--master-addr", "x"],
            LocalCommand(
                WORKER,
                ("--engine", "mock", "--model-path", MODEL, "--model-name", "m",
                 "--system-host", IP),
            ),
        ),
        (["python3", "-m", "dynamo.vllm"], ["--model", "m", "--node-rank", "1", "--headless"], None),
        (["sh", "-c", "exec python3 -m dynamo.sglang --model-path m --node-rank $((I + 1))"], [], None),
        (["python3", "-m", "dynamo.planner"], [], None),
        (["python3", "-m", "http.server"], [], None),
        (["sleep", "infinity"], [], None),
        (["sh", "-c", "python3 -m my.thing && sleep 1"], [], None),
        ([], [], None),
        (["sh", "-c", "echo 'unterminated"], [], None),
    ],
)  # fmt: skip
def test_translate(command: list[str], args: list[str], expected: LocalCommand | None) -> None:
    """Known commands map to our runtime bound to the pod's loopback IP; others are None."""
    assert translate(command, args, pod_ip=IP, model_dir=MODEL) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("$(POD_NAME)-x", {"POD_NAME": "p"}, "p-x"),
        ("$(MISSING)", {}, "$(MISSING)"),
        ("$$(POD_NAME)", {"POD_NAME": "p"}, "$(POD_NAME)"),
        ("plain $HOME", {"HOME": "h"}, "plain $HOME"),
    ],
)
def test_expand(text: str, env: dict[str, str], expected: str) -> None:
    """Kubernetes' $(VAR) expansion: known replaced, unknown kept, $$ escapes."""
    assert expand(text, env) == expected
