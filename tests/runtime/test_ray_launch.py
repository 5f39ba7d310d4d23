"""Launch helpers on a real Ray cluster (several raylets on this machine, logical GPUs) and the
wait-for-leader init container command against a real TCP listener.

One module-scoped cluster: a head and two workers with 2 logical GPUs each, small object
stores, no dashboard, bound to 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dgd_operator.builders.backends import (
    DgdGroupAddressing,
    LaunchOptions,
    launch_scripts_configmap,
    with_backend_launch,
)
from dgd_operator.builders.backends.launch.placement import (
    GangNotPlaceableError,
    bundle_nodes,
    release,
    reserve_node_gang,
)
from dgd_operator.builders.backends.launch.ray_wait import ClusterNotReadyError, wait_for_nodes

pytestmark = pytest.mark.runtime

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray rewrites a 127.0.0.1 bootstrap address to the host's network IP unless "cluster mode" is
# off; everything here binds 127.0.0.1, so turn it off (env for the CLI subprocesses too).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
GPUS = 2
NODE_ARGS: dict[str, Any] = {
    "num_cpus": 1,
    "num_gpus": GPUS,
    "object_store_memory": 80 * 1024 * 1024,
    "node_ip_address": "127.0.0.1",
}


def ray_api() -> Any:
    """The ray module, typed loosely (parts of its API are untyped), imported on first use."""
    import ray

    return ray


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """Head + 2 worker raylets; the driver connected; everything shut down at the end."""
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # In case ray was imported before this module set the env var.
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray = ray_api()
    cluster: Any = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={**NODE_ARGS, "include_dashboard": False, "dashboard_host": "127.0.0.1"},
    )
    try:
        for _ in range(2):
            cluster.add_node(**NODE_ARGS)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode


@pytest.fixture
def scripts_dir(tmp_path: Path) -> Path:
    """The launch-scripts ConfigMap materialised as files, as the pod sees it at /scripts."""
    for key, text in launch_scripts_configmap("g")["data"].items():
        (tmp_path / key).write_text(text)
    return tmp_path


def test_wait_returns_when_all_nodes_joined_with_their_gpus(ray_cluster: Any) -> None:
    count = wait_for_nodes(3, GPUS, timeout=60, log=lambda _: None)
    assert (count.ready_nodes, count.total_gpus) == (3, 6)


def test_wait_times_out_naming_what_joined(ray_cluster: Any) -> None:
    with pytest.raises(ClusterNotReadyError) as missing_node:
        wait_for_nodes(4, GPUS, timeout=2, log=lambda _: None)
    message = str(missing_node.value)
    assert (
        "timed out after 2s waiting for the Ray cluster: 3/4 nodes with >= 2 GPU(s) joined"
        in message
    )
    assert "6/8 GPUs" in message and "1 node(s) missing" in message
    with pytest.raises(
        ClusterNotReadyError, match=r"0/3 nodes with >= 4 GPU\(s\) joined \(3 alive, 6/12 GPUs\)"
    ):
        wait_for_nodes(3, 4, timeout=1, log=lambda _: None)


def test_wait_returns_once_a_late_node_joins(ray_cluster: Any) -> None:
    outcome: dict[str, Any] = {}

    def waiter() -> None:
        try:
            outcome["count"] = wait_for_nodes(
                4, GPUS, timeout=120, interval=0.5, log=lambda _: None
            )
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive(), outcome  # still waiting for the 4th node
    late = ray_cluster.add_node(**NODE_ARGS)
    try:
        thread.join(timeout=120)
        assert not thread.is_alive() and "error" not in outcome, outcome
        assert outcome["count"].ready_nodes == 4
    finally:
        ray_cluster.remove_node(late)
        wait_for_alive(3)


def wait_for_alive(nodes: int, timeout: float = 60) -> None:
    ray = ray_api()
    deadline = time.monotonic() + timeout
    while sum(1 for n in ray.nodes() if n.get("Alive") is True) != nodes:
        assert time.monotonic() < deadline, "removed node still alive"
        time.sleep(0.5)


def test_strict_spread_gang_is_placed_one_bundle_per_node(ray_cluster: Any) -> None:
    ray = ray_api()
    group = reserve_node_gang(3, GPUS, timeout=60)
    try:
        nodes = bundle_nodes(group)
        assert len(nodes) == 3 and len(set(nodes)) == 3
        assert ray.util.placement_group_table(group)["strategy"] == "STRICT_SPREAD"
        # The gang holds every GPU. Ray's resource view is eventually consistent (the raylets
        # report to the GCS), so it may still show some free just after placement.
        deadline = time.monotonic() + 30
        while ray.available_resources().get("GPU", 0) != 0:
            assert time.monotonic() < deadline, "the gang does not hold every GPU"
            time.sleep(0.2)
    finally:
        release(group)
    deadline = time.monotonic() + 30
    while ray.available_resources().get("GPU", 0) != 6:
        assert time.monotonic() < deadline, "GPUs not returned after release"
        time.sleep(0.2)


def test_gang_larger_than_cluster_is_not_placed(ray_cluster: Any) -> None:
    with pytest.raises(
        GangNotPlaceableError,
        match=r"4 bundle\(s\) \{'GPU': 2.0\} with STRICT_SPREAD .* within 2s: the cluster has 3 alive node",
    ):
        reserve_node_gang(4, GPUS, timeout=2)


def run_script(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_leader_step_from_configmap_file(ray_cluster: Any, scripts_dir: Path) -> None:
    ok = run_script(
        [
            str(scripts_dir / "ray-wait.py"),
            "--address",
            ray_cluster.address,
            "--nodes",
            "3",
            "--gpus-per-node",
            str(GPUS),
            "--timeout",
            "60",
        ]
    )
    assert ok.returncode == 0, ok.stderr
    assert (
        "Ray cluster ready" in ok.stdout
        and "gang of 3 node(s) x 2 GPU placed (STRICT_SPREAD)" in ok.stdout
    )
    missing = run_script(
        [
            "-m",
            "dgd_operator.builders.backends.launch.ray_wait",
            "--address",
            ray_cluster.address,
            "--nodes",
            "4",
            "--gpus-per-node",
            str(GPUS),
            "--timeout",
            "2",
        ]
    )
    assert missing.returncode == 1
    assert "timed out after 2s waiting for the Ray cluster: 3/4 nodes" in missing.stderr


# --- wait-for-leader init container (no Ray needed) -------------------------------------------------


def init_command(scripts_dir: Path, port: int, timeout: int) -> str:
    """The worker's init container script, pointed at 127.0.0.1 and the materialised /scripts."""
    container = {"image": "img", "command": ["python3", "-m", "dynamo.sglang"]}
    result = with_backend_launch(
        container,
        {},
        backend="sglang",
        role="worker",
        node_count=2,
        gpus_per_pod=1,
        annotations={},
        dgd_name="g",
        addressing=DgdGroupAddressing("g", "s", 0),
        options=LaunchOptions(startup_timeout_seconds=timeout),
    )
    (init,) = result.pod_spec["initContainers"]
    script: str = init["command"][2]
    return (
        script.replace("g-s-0-ldr-0.g-s-nodes", "127.0.0.1")
        .replace('"29500"', f'"{port}"')
        .replace("/scripts/", f"{scripts_dir}/")
    )


def test_worker_init_container_returns_when_leader_port_opens(scripts_dir: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        script = init_command(scripts_dir, port, timeout=30)
        proc = subprocess.Popen(
            ["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(1.5)
        assert proc.poll() is None  # nothing listens yet: still waiting
        listener.listen()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"127.0.0.1:{port} is accepting connections" in out


def test_worker_init_container_times_out_with_message(scripts_dir: Path) -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = reserved.getsockname()[1]
        result = subprocess.run(
            ["sh", "-c", init_command(scripts_dir, port, timeout=2)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert (
        f"dgd: timed out after 2s waiting for the SGLang dist-init port of the leader: 1 of 1 endpoint(s) "
        f"not reachable (127.0.0.1:{port}: connect to 127.0.0.1:{port} failed"
    ) in result.stderr
