"""Shared backend pieces: the quoters, the Python-interpreter test, framework detection, the
generic flag injector, our addressing names and the shell templates."""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

import pytest

from dgd_operator.api.engine_args import BackendError, gpus_per_pod, resolve_backend
from dgd_operator.api.models import ResourceItem, Resources
from dgd_operator.api.naming import (
    leader_address,
    leader_statefulset_name,
    nodes_service_name,
    worker_address,
    worker_statefulset_name,
)
from dgd_operator.builders.backends import (
    DgdGroupAddressing,
    with_backend_launch,
)
from dgd_operator.builders.backends.inject import inject_flags_into_container_command
from dgd_operator.builders.backends.quoting import bash_c_quote, is_python_interpreter, sh_quote
from dgd_operator.builders.backends.scripts import render

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("token", "quoted"),
    [
        ("--model", "--model"),
        ("Qwen/Qwen3-0.6B", "Qwen/Qwen3-0.6B"),
        (
            '{"load_format": "DUMMY", "tensor_parallel_size": 8}',
            '"{\\"load_format\\": \\"DUMMY\\", \\"tensor_parallel_size\\": 8}"',
        ),
        ("$HOME/path", '"\\$HOME/path"'),
        ("it's", '"it\'"\'"\'s"'),
        ("a b", '"a b"'),
        ("back\\slash", '"back\\\\slash"'),
        ("`cmd`", '"\\`cmd\\`"'),
        ("[x]", '"[x]"'),
        ("wow!", '"wow!"'),
        ("", '""'),
    ],
)
def test_bash_c_quote_dynamo_vectors(token: str, quoted: str) -> None:
    assert bash_c_quote(token) == quoted


@pytest.mark.parametrize(
    "token", ["it's", '{"a": [1, 2]}', '$HOME `x` \\ "q"', "tab\there", "line\nbreak", ""]
)
def test_sh_quote_round_trips_through_sh(token: str) -> None:
    out = subprocess.run(
        ["sh", "-c", f"printf %s {sh_quote(token)}"], capture_output=True, text=True, check=True
    ).stdout
    assert out == token


@pytest.mark.parametrize(
    ("executable", "expected"),
    [
        ("python", True),
        ("python3", True),
        ("python3.11", True),
        ("/usr/bin/python3.8", True),
        ("./python3", True),
        ("/home/user/.pyenv/shims/python3.9", True),
        ("python-config", False),
        ("pythonx", False),
        ("python ", False),
        ("python/", False),
        ("sh", False),
        ("java", False),
    ],
)
def test_python_interpreter_detection(executable: str, expected: bool) -> None:
    assert is_python_interpreter(executable) is expected


@pytest.mark.parametrize(
    ("component_type", "container", "explicit", "expected"),
    [
        ("worker", {"command": ["python3", "-m", "dynamo.vllm"]}, None, "vllm"),
        (
            "decode",
            {"command": ["python3"], "args": ["-m", "dynamo.sglang", "--tp", "8"]},
            None,
            "sglang",
        ),
        (
            "prefill",
            {"command": ["/bin/sh", "-c"], "args": ["python3 -m dynamo.trtllm --x"]},
            "trtllm",
            "trtllm",
        ),
        (
            "worker",
            {"command": ["/bin/sh", "-c"], "args": ["python3 components/encode_worker.py"]},
            "vllm",
            "vllm",
        ),
        (
            "worker",
            {"command": ["/bin/sh", "-c"], "args": ["python3 components/encode_worker.py"]},
            None,
            "noop",
        ),
        ("frontend", {"command": ["python3", "-m", "dynamo.vllm"]}, "sglang", "noop"),
        ("planner", None, "vllm", "noop"),
        ("worker", None, None, "noop"),
        (
            "worker",
            {
                "command": ["sh", "-c"],
                "args": ["python3 -m dynamo.vllm && python3 -m dynamo.sglang"],
            },
            "sglang",
            "sglang",
        ),
    ],
)
def test_resolve_backend(
    component_type: str, container: dict[str, Any] | None, explicit: str | None, expected: str
) -> None:
    assert resolve_backend(component_type, container, explicit) == expected


def test_resolve_backend_errors() -> None:
    with pytest.raises(BackendError, match="backend framework mismatch"):
        resolve_backend("worker", {"command": ["python3", "-m", "dynamo.vllm"]}, "sglang")
    with pytest.raises(BackendError, match="multiple frameworks detected"):
        resolve_backend(
            "worker",
            {"command": ["sh", "-c"], "args": ["python3 -m dynamo.vllm; python3 -m dynamo.sglang"]},
            None,
        )


def test_inject_shell_form_first_framework_token_only() -> None:
    container = {
        "command": ["sh", "-c"],
        "args": ["python3 -m dynamo.vllm --model /models/vllm-tiny --x 1"],
    }
    out = inject_flags_into_container_command(
        container, "--a b", needs_shell=False, framework="vllm"
    )
    assert out["args"] == ["python3 -m dynamo.vllm --a b --model /models/vllm-tiny --x 1"]
    assert container["args"] == [
        "python3 -m dynamo.vllm --model /models/vllm-tiny --x 1"
    ]  # input untouched


def test_inject_python_needs_shell_quotes_tokens_for_direct_sh() -> None:
    container = {"command": ["python3", "-m", "dynamo.vllm"], "args": ["--cfg", "{'a': 1}"]}
    out = inject_flags_into_container_command(
        container, "--rank $((I + 1))", needs_shell=True, framework="vllm"
    )
    assert out["command"] == ["sh", "-c"]
    (line,) = out["args"]
    argv = subprocess.run(
        ["sh", "-c", line.replace("exec python3", "exec printf '%s|' python3", 1)],
        env={"I": "2", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert argv == "python3|-m|dynamo.vllm|--cfg|{'a': 1}|--rank|3|"


def test_our_group_names() -> None:
    assert nodes_service_name("dsr1", "VllmDecodeWorker") == "dsr1-vllmdecodeworker-nodes"
    assert leader_statefulset_name("dsr1", "VllmDecodeWorker", 2) == "dsr1-vllmdecodeworker-2-ldr"
    assert worker_statefulset_name("dsr1", "VllmDecodeWorker", 2) == "dsr1-vllmdecodeworker-2-wkr"
    assert (
        leader_address("dsr1", "VllmDecodeWorker", 2)
        == "dsr1-vllmdecodeworker-2-ldr-0.dsr1-vllmdecodeworker-nodes"
    )
    assert (
        worker_address("dsr1", "VllmDecodeWorker", 2, 3)
        == "dsr1-vllmdecodeworker-2-wkr-3.dsr1-vllmdecodeworker-nodes"
    )
    addressing = DgdGroupAddressing("dsr1", "VllmDecodeWorker", 2)
    assert (
        addressing.leader_host(),
        addressing.worker_rank(),
        addressing.worker_rank_needs_shell(),
    ) == ("$(DGD_LEADER_ADDRESS)", "$(DGD_NODE_RANK)", False)
    assert addressing.worker_host(1) == "dsr1-vllmdecodeworker-2-wkr-1.dsr1-vllmdecodeworker-nodes"
    assert addressing.leader_host_for_script() == leader_address("dsr1", "VllmDecodeWorker", 2)


def test_gpus_per_pod_rules() -> None:
    both = Resources.model_validate({"requests": {"gpu": "2"}, "limits": {"gpu": "4"}})
    assert gpus_per_pod(both, "trtllm") == 2 and gpus_per_pod(both, "vllm") == 4
    assert gpus_per_pod(Resources.model_validate({"requests": {"gpu": "8"}}), "sglang") == 8
    # The model refuses fractions; a rendered object that skipped validation counts 0 GPUs.
    fractional = Resources.model_construct(limits=ResourceItem.model_construct(gpu="1.5"))
    assert gpus_per_pod(fractional, "vllm") == 0
    assert gpus_per_pod(None, "vllm") == 0


def test_noop_backend_copies() -> None:
    container = {"command": ["python3", "-m", "dynamo.frontend"]}
    result = with_backend_launch(
        container,
        {},
        backend="noop",
        role="leader",
        node_count=3,
        gpus_per_pod=0,
        annotations={},
        dgd_name="d",
        addressing=DgdGroupAddressing("d", "s", 0),
    )
    assert result.container == container and result.container is not container


@pytest.mark.parametrize(
    ("template", "values"),
    [
        (
            "ray_leader.sh.j2",
            {
                "port": 6379,
                "wait_command": "python3 /scripts/ray-wait.py --nodes 2",
                "engine": "python3 -m x",
                "shell_script": False,
            },
        ),
        (
            "ray_leader.sh.j2",
            {"port": 6379, "wait_command": None, "engine": "python3 -m x", "shell_script": False},
        ),
        (
            "ray_leader.sh.j2",
            {
                "port": 6379,
                "wait_command": "true",
                "engine": "exec python3 -m x \\\n --y",
                "shell_script": True,
            },
        ),
        ("ray_worker.sh.j2", {"port": 6379, "leader_host": "h"}),
        (
            "wait_for_leader.sh.j2",
            {
                "leader_host": "h",
                "port": 1,
                "timeout": 5,
                "what": "it's me",
                "mount_path": "/s",
                "script_key": "w.py",
            },
        ),
        ("sshd_worker.sh.j2", {"ssh_port": 2222, "exec_sshd": True}),
        (
            "mpirun_leader.sh.j2",
            {
                "ssh_port": 2222,
                "dns_wait_hosts": ["a", "b"],
                "wait_workers_command": "true",
                "total_ranks": 4,
                "hosts": ["l", "a", "b"],
                "env_names": ["PATH"],
                "command_line": "python3 -m x",
            },
        ),
    ],
)
def test_templates_render_valid_sh(template: str, values: dict[str, Any]) -> None:
    script = render(template, **values)
    assert "\n\n" not in script and not script.endswith("\n")
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0, script


def test_template_missing_value_is_an_error() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        render("ray_worker.sh.j2", port=6379)


def test_wait_for_leader_template_quotes_what() -> None:
    script = render(
        "wait_for_leader.sh.j2",
        leader_host="h",
        port=1,
        timeout=5,
        what="it's me",
        mount_path="/s",
        script_key="w.py",
    )
    assert "DGD_WAIT_WHAT=it's me" in shlex.split(script)


# --- launch helpers, pure parts (the real-socket / real-Ray runs are in tests/runtime) ------------


def test_wait_tcp_usage_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dgd_operator.builders.backends.launch import wait_tcp

    monkeypatch.delenv("LEADER_HOST", raising=False)
    assert wait_tcp.main([]) == 2
    assert wait_tcp.main(["no-port"]) == 2
    assert "pass HOST:PORT or set LEADER_HOST/LEADER_PORT" in capsys.readouterr().err
    assert wait_tcp.parse_target("a.b-c.svc:2222") == ("a.b-c.svc", 2222)


def test_ray_wait_counts_only_alive_nodes_with_enough_gpus() -> None:
    from dgd_operator.builders.backends.launch.ray_wait import (
        ClusterNotReadyError,
        count_nodes,
        wait_for_nodes,
    )

    nodes = [
        {"Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"GPU": 8.0}},
        {"Alive": True, "NodeManagerAddress": "10.0.0.2", "Resources": {"GPU": 4.0}},
        {"Alive": False, "NodeManagerAddress": "10.0.0.3", "Resources": {"GPU": 8.0}},
    ]
    assert count_nodes(nodes, 8).ready_nodes == 1
    with pytest.raises(ClusterNotReadyError) as timed_out:
        wait_for_nodes(2, 8, timeout=0, list_nodes=lambda: nodes, log=lambda _: None)
    assert str(timed_out.value) == (
        "dgd: timed out after 0s waiting for the Ray cluster: 1/2 nodes with >= 8 GPU(s) joined (2 alive, 12/16 GPUs); "
        "joined: 10.0.0.1 (8 GPU), 10.0.0.2 (4 GPU). 1 node(s) missing; check the group's worker pods"
    )
    assert (
        wait_for_nodes(2, 4, timeout=0, list_nodes=lambda: nodes, log=lambda _: None).ready_nodes
        == 2
    )


def test_gang_bundles() -> None:
    from dgd_operator.builders.backends.launch.placement import gang_bundles

    assert gang_bundles(3, 2) == [{"GPU": 2.0}] * 3
    assert gang_bundles(2, 0) == [{"CPU": 0.01}] * 2
    with pytest.raises(ValueError, match="nodes must be >= 1"):
        gang_bundles(0, 1)
