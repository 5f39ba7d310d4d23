"""The executing kubelet's pure parts: a container's environment as Kubernetes builds it
(downward API, $(VAR) expansion, ConfigMap/Secret keys), the loopback address of a pod IP, and
probe outcomes against a listening socket."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from dgd_operator.dev.kubelet import loopback_address
from dgd_operator.dev.kubelet_api import tail_bytes
from dgd_operator.dev.pod_exec import container_env, run_probe, termination_message

POD: dict[str, Any] = {
    "metadata": {
        "name": "w-0",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"app": "w"},
        "annotations": {"note": "x"},
    },
    "spec": {"nodeName": "gpu-node-0", "serviceAccountName": "sa"},
}


def _lookup(kind: str, name: str) -> dict[str, str]:
    data = {
        ("configMapRef", "cm"): {"A": "1", "B": "2"},
        ("secretRef", "sec"): {"TOKEN": "t"},
    }
    return data.get((kind, name), {})


@pytest.mark.unit
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ([{"name": "X", "value": "v"}], {"X": "v"}),
        (
            [{"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
             {"name": "U", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
             {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
             {"name": "H", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
             {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
             {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}],
            {"P": "w-0", "N": "ns", "U": "u-1", "IP": "10.244.0.5", "H": "172.30.0.2",
             "NODE": "gpu-node-0", "L": "w"},
        ),
        (
            [{"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "URL", "value": "http://$(P):$(PORT)"}],
            {"P": "w-0", "URL": "http://w-0:$(PORT)"},
        ),
        (
            [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "B"}}},
             {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "TOKEN"}}},
             {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
            {"K": "2", "S": "t"},
        ),
        (
            [{"name": "G", "valueFrom": {"resourceFieldRef": {"resource": "limits.nvidia.com/gpu"}}}],
            {"G": "2"},
        ),
    ],
)  # fmt: skip
def test_container_env(env: list[dict[str, Any]], expected: dict[str, str]) -> None:
    """Each env source resolves as the kubelet resolves it; HOSTNAME is the pod name."""
    container = {"name": "main", "env": env, "resources": {"limits": {"nvidia.com/gpu": "2"}}}
    got = container_env(POD, container, pod_ip="10.244.0.5", host_ip="172.30.0.2", lookup=_lookup)
    assert got == {"HOSTNAME": "w-0", **expected}


@pytest.mark.unit
def test_env_from_with_prefix_then_env_overrides() -> None:
    """envFrom comes first (with its prefix); env entries override it."""
    container = {
        "name": "main",
        "envFrom": [
            {"configMapRef": {"name": "cm"}, "prefix": "C_"},
            {"secretRef": {"name": "sec"}},
        ],
        "env": [{"name": "C_A", "value": "over"}],
    }
    got = container_env(POD, container, pod_ip="1", host_ip="2", lookup=_lookup)
    assert got == {"HOSTNAME": "w-0", "C_A": "over", "C_B": "2", "TOKEN": "t"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("pod_ip", "expected"),
    [("10.244.0.2", "127.244.0.2"), ("10.244.7.254", "127.244.7.254"), ("127.0.0.9", "127.0.0.9")],
)
def test_loopback_address(pod_ip: str, expected: str) -> None:
    """A pod IP maps to its own 127/8 address (already-loopback addresses stay)."""
    assert loopback_address(pod_ip) == expected


@pytest.mark.unit
def test_probes_against_a_listening_socket(tmp_path: Path) -> None:
    """tcpSocket succeeds on a listening port (named or numbered) and fails on a closed one;
    exec follows the exit code."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        container = {"name": "main", "ports": [{"name": "system", "containerPort": port}]}
        for target in (port, "system"):
            probe = {"tcpSocket": {"port": target}, "timeoutSeconds": 1}
            assert run_probe(probe, container, "127.0.0.1", {}, tmp_path)
    closed = {"tcpSocket": {"port": port}, "timeoutSeconds": 1}
    assert not run_probe(closed, container, "127.0.0.1", {}, tmp_path)
    unknown_name = {"httpGet": {"port": "nope", "path": "/"}}
    assert not run_probe(unknown_name, container, "127.0.0.1", {}, tmp_path)
    assert run_probe({"exec": {"command": ["true"]}}, container, "127.0.0.1", {}, tmp_path)
    assert not run_probe({"exec": {"command": ["false"]}}, container, "127.0.0.1", {}, tmp_path)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("lines", "expected"),
    [(None, b"a\nb\nc\n"), (2, b"b\nc\n"), (5, b"a\nb\nc\n"), (0, b"")],
)
def test_tail_bytes(lines: int | None, expected: bytes) -> None:
    """`kubectl logs --tail N` keeps the last N lines (0: none, no tail: everything)."""
    assert tail_bytes(b"a\nb\nc\n", lines) == expected


@pytest.mark.unit
def test_termination_message_falls_back_to_this_runs_log_on_error(tmp_path: Path) -> None:
    """FallbackToLogsOnError: a failed exit reports the end of the log written since the start
    (80 lines, 2048 bytes at most); a clean exit or the default policy report nothing."""
    log = tmp_path / "main.log"
    log.write_bytes(b"earlier run\n")
    since = log.stat().st_size
    with log.open("ab") as f:
        f.write(b"".join(b"line %d\n" % i for i in range(100)) + b"error: no-such-engine\n")
    fallback = {"name": "main", "terminationMessagePolicy": "FallbackToLogsOnError"}
    message = termination_message(fallback, 1, log, since)
    assert message.endswith("line 99\nerror: no-such-engine\n")
    assert message.startswith("line 21\n")  # the last 80 lines
    assert "earlier run" not in termination_message(fallback, 1, log, since)
    assert termination_message(fallback, 0, log, since) == ""
    assert termination_message({"name": "main"}, 1, log, since) == ""
    log.write_bytes(b"x" * 5000 + b"\n")
    assert len(termination_message(fallback, 2, log, 0)) == 2048
