"""Small pure helpers to edit container / PodSpec dicts (always on copies made by the caller)."""

from __future__ import annotations

import os
from typing import Any

from dgd_operator.builders.backends.scripts import launch_helper_source, render
from dgd_operator.builders.backends.types import (
    LAUNCH_SCRIPTS_CONFIGMAP_SUFFIX,
    LAUNCH_SCRIPTS_MOUNT_PATH,
    LAUNCH_SCRIPTS_VOLUME,
    RAY_WAIT_KEY,
    WAIT_FOR_LEADER_KEY,
    WAIT_FOR_TCP_KEY,
    K8sDict,
)

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh"})


def launch_scripts_configmap_name(dgd_name: str) -> str:
    """`<dgd>-wait-leader-script` (Dynamo's name for the per-DGD launch-scripts ConfigMap)."""
    return f"{dgd_name}-{LAUNCH_SCRIPTS_CONFIGMAP_SUFFIX}"


def launch_scripts_configmap(dgd_name: str) -> K8sDict:
    """The per-DGD ConfigMap with the launch helpers (namespace/labels/owner added by the caller).

    Keys: `wait-for-leader.py` (Dynamo's key; our TCP waiter), `wait-for-tcp.py` (same program,
    used by leaders waiting for workers), `ray-wait.py` and `placement.py` (Ray leader step).
    """
    wait_tcp = launch_helper_source("wait_tcp")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": launch_scripts_configmap_name(dgd_name)},
        "data": {
            WAIT_FOR_LEADER_KEY: wait_tcp,
            WAIT_FOR_TCP_KEY: wait_tcp,
            RAY_WAIT_KEY: launch_helper_source("ray_wait"),
            "placement.py": launch_helper_source("placement"),
        },
    }


def add_launch_scripts_volume(pod_spec: K8sDict, dgd_name: str) -> None:
    """Add the launch-scripts ConfigMap volume to the pod (once)."""
    volumes: list[K8sDict] = list(pod_spec.get("volumes") or [])
    if not any(v.get("name") == LAUNCH_SCRIPTS_VOLUME for v in volumes):
        volumes.append(
            {"name": LAUNCH_SCRIPTS_VOLUME, "configMap": {"name": launch_scripts_configmap_name(dgd_name)}}
        )
    pod_spec["volumes"] = volumes


def mount_launch_scripts(container: K8sDict) -> None:
    """Mount the launch-scripts volume read-only at /scripts in `container` (once)."""
    mounts: list[K8sDict] = list(container.get("volumeMounts") or [])
    if not any(m.get("name") == LAUNCH_SCRIPTS_VOLUME for m in mounts):
        mounts.append({"name": LAUNCH_SCRIPTS_VOLUME, "mountPath": LAUNCH_SCRIPTS_MOUNT_PATH, "readOnly": True})
    container["volumeMounts"] = mounts


def append_env(container: K8sDict, entry: K8sDict) -> None:
    """Append an EnvVar to the container."""
    container["env"] = [*(container.get("env") or []), entry]


def remove_probes(container: K8sDict, *names: str) -> None:
    """Drop the named probes (`livenessProbe`, ...) from the container."""
    for name in names:
        container.pop(name, None)


def add_wait_for_leader_init(
    pod_spec: K8sDict,
    *,
    name: str,
    image: Any,
    leader_host: str,
    port: int,
    dgd_name: str,
    timeout: int | None,
    what: str,
) -> None:
    """Append an init container that blocks until `leader_host:port` accepts TCP.

    `timeout=None` renders Dynamo's exact command (wait forever); otherwise the helper gives up
    after `timeout` seconds with a message naming what it waited for.
    """
    add_launch_scripts_volume(pod_spec, dgd_name)
    command = render(
        "wait_for_leader.sh.j2",
        leader_host=leader_host,
        port=port,
        timeout=timeout,
        what=what,
        mount_path=LAUNCH_SCRIPTS_MOUNT_PATH,
        script_key=WAIT_FOR_LEADER_KEY,
    )
    init: K8sDict = {"name": name}
    if image is not None:
        init["image"] = image
    init["command"] = ["sh", "-c", command]
    init["volumeMounts"] = [
        {"name": LAUNCH_SCRIPTS_VOLUME, "mountPath": LAUNCH_SCRIPTS_MOUNT_PATH, "readOnly": True}
    ]
    pod_spec["initContainers"] = [*(pod_spec.get("initContainers") or []), init]


def shell_script_index(command: list[str], args: list[str]) -> tuple[list[str], int] | None:
    """For a shell-form container, return (shell prefix up to `-c`, index of the script in args).

    Recognises `[sh, -c]` + `[script]` and `[bash, -ec]` + `[script]`; None otherwise (also
    when the script itself sits in `command`).
    """
    if not command or os.path.basename(command[0]) not in SHELLS:
        return None
    for position, token in enumerate(command[1:], start=1):
        if token.startswith("-") and not token.startswith("--") and "c" in token[1:]:
            if position == len(command) - 1 and args:
                return command[: position + 1], 0
            return None
    return None
