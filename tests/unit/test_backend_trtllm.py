"""TensorRT-LLM multinode launch rules: Dynamo's vectors (mpirun -n/-H and the launched tail),
secret mount, env, probes, and our worker-sshd wait before mpirun."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from dgd_operator.api.engine_args import BackendError
from dgd_operator.builders.backends import (
    DgdGroupAddressing,
    GroveAddressing,
    LaunchOptions,
    LwsAddressing,
    MultinodeAddressing,
    with_backend_launch,
)
from dgd_operator.builders.backends.types import BackendResult, Role

pytestmark = pytest.mark.unit

COMPAT = LaunchOptions(dynamo_compat=True)
GROVE = GroveAddressing("test-service")


def run(
    container: dict[str, Any],
    role: Role,
    *,
    nodes: int,
    gpus: int,
    addressing: MultinodeAddressing = GROVE,
    options: LaunchOptions = COMPAT,
    secret: str | None = "mpi-run-ssh-secret",
) -> BackendResult:
    return with_backend_launch(
        container,
        {},
        backend="trtllm",
        role=role,
        node_count=nodes,
        gpus_per_pod=gpus,
        annotations={},
        dgd_name="test-dgd",
        addressing=addressing,
        mpi_secret_name=secret,
        options=options,
    )


def test_grove_leader_vector() -> None:
    result = run({"args": ["python3", "--model", "test"]}, "leader", nodes=3, gpus=2)
    assert result.container["command"] == ["/bin/sh", "-c"]
    (script,) = result.container["args"]
    hosts = ",".join(
        [
            "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-test-service-ldr-0.$(GROVE_HEADLESS_SERVICE)",
            "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-test-service-wkr-0.$(GROVE_HEADLESS_SERVICE)",
            "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-test-service-wkr-1.$(GROVE_HEADLESS_SERVICE)",
        ]
    )
    assert f"--oversubscribe -n 6 -H {hosts} --mca pml ob1" in script
    assert script.endswith(" bash -c 'trtllm-llmapi-launch python3 --model test'")
    assert script.startswith(
        "mkdir -p $HOME/.ssh && ls -la /ssh-pk/ && cp /ssh-pk/private.key $HOME/.ssh/id_rsa"
    )
    assert 'mpirun $([ "$(id -u)" = "0" ] && echo --allow-run-as-root) --oversubscribe' in script
    assert '--mca plm_rsh_args "-p 2222 -o StrictHostKeyChecking=no -i $HOME/.ssh/id_rsa"' in script
    assert "getent hosts" not in script and "wait-for-tcp" not in script
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0


def test_lws_leader_vector_with_dns_wait() -> None:
    result = run(
        {"command": ["python3", "-m", "dynamo.trtllm"]},
        "leader",
        nodes=2,
        gpus=1,
        addressing=LwsAddressing(),
    )
    (script,) = result.container["args"]
    assert (
        "-n 2 -H $(LWS_LEADER_ADDRESS),$(echo \"$LWS_LEADER_ADDRESS\" | sed 's/\\./-1\\./')"
        in script
    )
    dns = script.index("getent hosts")
    assert dns < script.index("mpirun ")
    assert "TIMEOUT=300" in script
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0


def test_json_argument_quoting() -> None:
    result = run(
        {
            "command": ["python3", "-m", "dynamo.trtllm"],
            "args": [
                "--override-engine-args",
                '{"load_format": "DUMMY", "tensor_parallel_size": 8}',
            ],
        },
        "leader",
        nodes=2,
        gpus=4,
    )
    assert result.container["args"][0].endswith(
        "bash -c 'trtllm-llmapi-launch python3 -m dynamo.trtllm --override-engine-args "
        '"{\\"load_format\\": \\"DUMMY\\", \\"tensor_parallel_size\\": 8}"\''
    )


def test_single_quote_in_argument_survives_bash_c(tmp_path: Path) -> None:
    result = run(
        {"command": ["python3"], "args": ["-c", "print('hi')", '{"a": "$HOME"}']},
        "leader",
        nodes=2,
        gpus=1,
    )
    script = result.container["args"][0]
    tail = script[script.index("bash -c ") :]
    # A fake launcher on PATH prints the argv the engine would receive.
    launcher = tmp_path / "trtllm-llmapi-launch"
    launcher.write_text("#!/bin/sh\nprintf '%s|' \"$@\"\n")
    launcher.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": "/nowhere"}
    out = subprocess.run(
        ["sh", "-c", tail], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out == 'python3|-c|print(\'hi\')|{"a": "$HOME"}|'


def test_env_exports_sorted_union_and_secret_mount_both_roles() -> None:
    container = {
        "command": ["python3", "-m", "dynamo.trtllm"],
        "env": [{"name": "ZED", "value": "1"}, {"name": "HF_TOKEN", "value": "x"}],
    }
    leader = run(container, "leader", nodes=2, gpus=4)
    exports = [part.split()[0] for part in leader.container["args"][0].split(" -x ")[1:]]
    assert exports == sorted(exports)
    assert {"OMPI_MCA_orte_keep_fqdn_hostnames", "ZED", "PATH", "HF_TOKEN"} <= set(exports)
    assert len(exports) == len(set(exports)) == 19 + 2
    for role in ("leader", "worker"):
        result = run(container, role, nodes=2, gpus=4)
        assert result.pod_spec["volumes"] == [
            {
                "name": "mpi-run-ssh-secret",
                "secret": {"secretName": "mpi-run-ssh-secret", "defaultMode": 0o644},
            }
        ]
        assert {
            "name": "mpi-run-ssh-secret",
            "mountPath": "/ssh-pk",
            "readOnly": True,
        } in result.container["volumeMounts"]
        assert result.container["env"][-1] == {
            "name": "OMPI_MCA_orte_keep_fqdn_hostnames",
            "value": "1",
        }


def test_worker_runs_sshd_with_tcp_readiness() -> None:
    probes = {
        "livenessProbe": {"httpGet": {"port": 9090}},
        "readinessProbe": {"httpGet": {"port": 9090}},
        "startupProbe": {"httpGet": {"port": 9090}},
    }
    result = run(
        {"command": ["python3", "-m", "dynamo.trtllm"], **probes}, "worker", nodes=2, gpus=4
    )
    assert "livenessProbe" not in result.container and "startupProbe" not in result.container
    assert result.container["readinessProbe"] == {
        "tcpSocket": {"port": 2222},
        "initialDelaySeconds": 20,
        "periodSeconds": 20,
        "timeoutSeconds": 5,
        "failureThreshold": 10,
    }
    (script,) = result.container["args"]
    assert "ssh-keygen -t ed25519 -f $HOME/.ssh/host_keys/ssh_host_ed25519_key -N ''" in script
    assert script.endswith(" && /usr/sbin/sshd -D -f $HOME/.ssh/sshd_config")
    assert "Port 2222\\nHostKey '$HOME'/.ssh/host_keys/ssh_host_rsa_key" in script
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0
    leader = run(
        {"command": ["python3", "-m", "dynamo.trtllm"], **probes}, "leader", nodes=2, gpus=4
    )
    assert all(leader.container[name] == probe for name, probe in probes.items())


def test_ours_leader_waits_for_every_worker_sshd_before_mpirun() -> None:
    addressing = DgdGroupAddressing("trtllm-disagg-tp8", "decode", 0)
    result = run(
        {"command": ["python3", "-m", "dynamo.trtllm"]},
        "leader",
        nodes=3,
        gpus=4,
        addressing=addressing,
        options=LaunchOptions(),
    )
    (script,) = result.container["args"]
    workers = [f"trtllm-disagg-tp8-decode-0-wkr-{i}.trtllm-disagg-tp8-decode-nodes" for i in (1, 2)]
    wait = (
        "python3 /scripts/wait-for-tcp.py --timeout 1800 --what 'the sshd of every TensorRT-LLM worker' "
        f"{workers[0]}:2222 {workers[1]}:2222"
    )
    assert f" && {wait} && mpirun " in script
    assert f"-n 12 -H $(DGD_LEADER_ADDRESS),{workers[0]},{workers[1]} " in script
    assert {
        "name": "wait-leader-script",
        "mountPath": "/scripts",
        "readOnly": True,
    } in result.container["volumeMounts"]
    assert [o["metadata"]["name"] for o in result.extra_objects] == ["test-dgd-wait-leader-script"]
    worker = run(
        {"command": ["python3", "-m", "dynamo.trtllm"]},
        "worker",
        nodes=3,
        gpus=4,
        addressing=addressing,
        options=LaunchOptions(),
    )
    assert worker.container["args"][0].endswith(
        " && exec /usr/sbin/sshd -D -f $HOME/.ssh/sshd_config"
    )


def test_shell_form_command_line_is_the_script() -> None:
    script = "python3 -m dynamo.trtllm --model-path /m --extra-engine-args /config/decode.yaml"
    result = run({"command": ["/bin/sh", "-c"], "args": [script]}, "leader", nodes=8, gpus=4)
    (line,) = result.container["args"]
    hosts = ",".join([GROVE.leader_host(), *(GROVE.worker_host(i) for i in range(1, 8))])
    assert f" -n 32 -H {hosts} " in line
    assert line.endswith(f"bash -c 'trtllm-llmapi-launch {script}'")


def test_single_node_unchanged_and_secret_required() -> None:
    container = {"command": ["python3", "-m", "dynamo.trtllm"]}
    assert run(container, "main", nodes=1, gpus=4).container == container
    with pytest.raises(BackendError, match="MPI SSH secret"):
        run(container, "leader", nodes=2, gpus=4, secret=None)
