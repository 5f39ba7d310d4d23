"""The Helm chart's RBAC is enough for a real reconcile, and the chart installs on the oldest
Kubernetes release it claims (its kubeVersion floor) as well as on the session's newest.

`helm install` the chart (namespace mode, watching the test namespace) into the local control
plane, then run `dgd operator` as a local process authenticated as the chart's ServiceAccount (a
token from the TokenRequest API: the image cannot run here, but its identity can), configured
with the env the chart gives the operator container. Apply the default recipe and wait for
`state: successful`: every object the operator creates, the status write and the Events all go
through the chart's Role. `helm uninstall` at the end.

CRDs: the session fixture already installed dgd's CRDs (the chart's `crds/` is a drift-tested
copy of the same files), so the chart is installed with `--skip-crds`; Helm never upgrades or
deletes CRDs anyway. The admission webhook is disabled: the API server could not reach it (the
operator pod is simulated), and with `failurePolicy: Fail` it would refuse every DGD.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import wait_for

from dgd_operator.dev import binaries, processes
from dgd_operator.dev.controlplane import ControlPlane, free_port
from dgd_operator.dev.rest import KubeRest

pytestmark = pytest.mark.integration

APPLY_PATCH = "application/apply-patch+yaml"
DGD_PATH = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/dynamographdeployments/{name}"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def helm_binary() -> Path:
    """helm v3 (downloaded once into ~/.cache/dgd/tools); skipped locally when unavailable."""
    from dgd_operator.tools.helm import ToolError, ensure_helm

    try:
        return ensure_helm()
    except ToolError as exc:
        if _in_ci():
            pytest.fail(f"helm is not available: {exc}", pytrace=False)
        pytest.skip(f"helm is not available: {exc}")


def _helm(helm: Path, kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [str(helm), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, (
        f"helm {' '.join(args[:3])} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture()
def chart_release(
    control_plane: ControlPlane, namespace: str, helm_binary: Path, repo_root: Path, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """The chart installed in namespace mode into the test namespace; its operator Deployment."""
    release = f"dgd-{uuid.uuid4().hex[:6]}"
    home = tmp_path / "helm-home"
    _helm(
        helm_binary,
        control_plane.kubeconfig,
        home,
        "install",
        release,
        str(repo_root / "charts" / "dgd-operator"),
        "--namespace",
        namespace,
        "--skip-crds",
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        "webhook.enabled=false",
        "--set",
        "nats.enabled=false",
    )
    try:
        deployments = control_plane.rest.get(
            f"/apis/apps/v1/namespaces/{namespace}/deployments",
            labelSelector=f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator",
        )["items"]
        assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
        yield deployments[0]
    finally:
        _helm(
            helm_binary,
            control_plane.kubeconfig,
            home,
            "uninstall",
            release,
            "--namespace",
            namespace,
        )


def service_account_kubeconfig(
    plane: ControlPlane, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as ``namespace/account`` with a TokenRequest token."""
    token = plane.rest.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )["status"]["token"]
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dgd-dev", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "sa",
                "context": {"cluster": "dgd-dev", "user": account, "namespace": namespace},
            }
        ],
        "current-context": "sa",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def test_chart_rbac_reconciles(
    control_plane: ControlPlane,
    namespace: str,
    chart_release: dict[str, Any],
    repo_root: Path,
    tmp_path: Path,
) -> None:
    pod_spec = chart_release["spec"]["template"]["spec"]
    account = pod_spec["serviceAccountName"]
    container = next(c for c in pod_spec["containers"] if c["name"] == "operator")
    assert container["command"] == ["dgd", "operator"]
    kubeconfig = service_account_kubeconfig(
        control_plane, namespace, account, tmp_path / "sa-kubeconfig"
    )

    # The identity really is the ServiceAccount, and it is namespace-scoped (namespace mode).
    sa_rest = KubeRest.from_kubeconfig(kubeconfig)
    try:
        review = sa_rest.post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "spec": {
                    "resourceAttributes": {
                        "verb": "create",
                        "resource": "deployments",
                        "group": "apps",
                        "namespace": "default",
                    }
                }
            },
        )
        assert review["status"]["allowed"] is False, (
            "namespace mode must not grant other namespaces"
        )
    finally:
        sa_rest.close()

    # The container's env from the chart, with loopback ports instead of the pod's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGD_")}
    env.update({e["name"]: e["value"] for e in container.get("env") or [] if "value" in e})
    assert env["DGD_WATCH_NAMESPACES"] == namespace
    env.update(
        KUBECONFIG=str(kubeconfig),
        DGD_METRICS_PORT=str(free_port()),
        DGD_HEALTH_PORT=str(free_port()),
        DGD_BIND_ADDRESS="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("KUBERNETES_SERVICE_HOST", None)
    operator = processes.spawn(
        "dgd-operator",
        [sys.executable, "-m", "dgd_operator", "operator"],
        log=tmp_path / "operator.log",
        pid_dir=tmp_path,
        env=env,
    )
    try:
        recipe = yaml.safe_load((repo_root / "recipes" / "vllm-disagg.yaml").read_text())
        name = recipe["metadata"]["name"]
        recipe["metadata"]["namespace"] = namespace
        path = DGD_PATH.format(ns=namespace, name=name)
        control_plane.rest.patch(
            path, recipe, content_type=APPLY_PATCH, fieldManager="test", force=True
        )

        def outcome() -> dict[str, Any] | None:
            """The DGD once successful; or why it never will be (refusal, crash) - at once."""
            log = processes.tail(operator.log, 400)
            if not operator.alive():
                return {"problem": "the operator exited:\n" + log}
            forbidden = [line for line in log.splitlines() if "forbidden" in line.lower()]
            if forbidden:
                return {
                    "problem": "the chart's RBAC refused the operator:\n" + "\n".join(forbidden[:5])
                }
            obj = control_plane.rest.get(path)
            status = obj.get("status") or {}
            if (
                status.get("state") == "successful"
                and status.get("observedGeneration") == obj["metadata"]["generation"]
            ):
                return {"dgd": obj}
            return None

        try:
            result = wait_for(
                outcome, timeout=120, description=f"DGD {name} successful under the chart's RBAC"
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\noperator log:\n{processes.tail(operator.log, 40)}"
            ) from None
        assert "problem" not in result, result["problem"]
        obj = result["dgd"]
        assert obj["status"]["services"]["VllmDecodeWorker"]["readyReplicas"] == 1
        ready = next(cond for cond in obj["status"]["conditions"] if cond["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "all_resources_are_ready")
        # Readiness is told by the Ready condition; Events still post under the chart's RBAC.
        events = control_plane.rest.get(f"/api/v1/namespaces/{namespace}/events")["items"]
        assert any(
            e.get("reason") == "Created" and e["involvedObject"].get("name") == name for e in events
        )
    finally:
        assert processes.stop(operator, tmp_path), "the operator did not stop"


@pytest.fixture(scope="module")
def oldest_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second, small control plane at the chart's kubeVersion floor (no CRDs: the chart's)."""
    found = binaries.find_cached(binaries.OLDEST_KUBE_VERSION)
    if found is None:
        message = (
            f"Kubernetes {binaries.OLDEST_KUBE_VERSION} binaries are not built: "
            f"python -m dgd_operator.dev.binaries ensure --version {binaries.OLDEST_KUBE_VERSION}"
        )
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    state = tmp_path_factory.mktemp("oldest-plane")
    plane = ControlPlane(
        state, binaries=found, nodes=1, gpus_per_node=1, crds=False, gang_scheduling=False
    )
    plane.start()
    try:
        yield plane
    finally:
        leftovers = plane.stop()
        plane.remove_data()
        assert not leftovers, f"control-plane processes left running: {leftovers}"


def test_chart_installs_on_the_oldest_supported_release(
    oldest_plane: ControlPlane, helm_binary: Path, repo_root: Path, tmp_path: Path
) -> None:
    """`helm install` with the chart's defaults (its CRDs included) on the kubeVersion floor:
    helm's own version check passes, the API server accepts every object, and the CRDs' schema
    and CEL rules (transition rules with oldSelf too) compile and run on that release."""
    rest = oldest_plane.rest
    version = rest.get("/version")["gitVersion"]
    assert version == binaries.OLDEST_KUBE_VERSION
    chart = yaml.safe_load((repo_root / "charts" / "dgd-operator" / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={version.removeprefix('v').rsplit('.', 1)[0]}.0-0"
    namespace, release, home = "dgd-system", "dgd", tmp_path / "helm-home"
    args = ("--namespace", namespace)
    # The webhook stays off: no operator pod answers here, and it is fail-closed.
    _helm(
        helm_binary, oldest_plane.kubeconfig, home, "install", release,
        str(repo_root / "charts" / "dgd-operator"), *args, "--create-namespace",
        "--set", "webhook.enabled=false",
    )  # fmt: skip
    try:
        manifest = _helm(
            helm_binary, oldest_plane.kubeconfig, home, "get", "manifest", release, *args
        ).stdout
        kinds = {doc["kind"] for doc in yaml.safe_load_all(manifest) if doc}
        assert {"Deployment", "PodDisruptionBudget", "Role", "ClusterRole"} <= kinds
        for crd in ("dynamographdeployments", "dynamographdeploymentscalingadapters"):
            established = rest.get(
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}.nvidia.com"
            )["status"]["conditions"]
            assert any(c["type"] == "Established" and c["status"] == "True" for c in established)
        # The chart's CRDs convert through the operator's webhook Service, which has no pod
        # here: point them at the local webhook server instead, as the operator itself points
        # them at its Service (same CRDs, only the conversion clientConfig differs).
        oldest_plane.install_crds(repo_root / "charts" / "dgd-operator" / "crds")
        # A graph is accepted, and an update runs the transition rules (oldSelf).
        rest.post("/api/v1/namespaces", {"metadata": {"name": "graphs"}})
        recipe = yaml.safe_load((repo_root / "recipes" / "vllm-disagg.yaml").read_text())
        name = recipe["metadata"]["name"]
        path = DGD_PATH.format(ns="graphs", name=name)
        wait_for(
            lambda: rest.patch(
                path, recipe, content_type=APPLY_PATCH, fieldManager="test", force=True
            ),
            timeout=30,
            description="the CRD to serve graphs",
        )
        recipe["metadata"].setdefault("annotations", {})["example.com/touched"] = "yes"
        recipe["spec"]["services"]["VllmDecodeWorker"]["replicas"] = 2
        rest.patch(path, recipe, content_type=APPLY_PATCH, fieldManager="test", force=True)
        assert rest.get(path)["spec"]["services"]["VllmDecodeWorker"]["replicas"] == 2
    finally:
        _helm(helm_binary, oldest_plane.kubeconfig, home, "uninstall", release, *args)
