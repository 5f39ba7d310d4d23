"""docs/install-{eks,gke,aks}.md: complete, and consistent with the chart and the recipes.

The cloud CLIs cannot run here; what can be checked is checked: every step is there, every
Kubernetes manifest in the guides is strict-valid for the oldest supported release, the model
cache and token Secret they create are the ones the recipes mount and read, every chart value
they set exists, and every recipe they name exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dgd_operator.codegen.chartvalues import default_values

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GUIDES = sorted((ROOT / "docs").glob("install-*.md"))
SECTIONS = (
    "Cluster", "GPU", "NVIDIA GPU operator", "secrets and the model cache", "The dgd operator",
    "Deploy a recipe", "Verify", "Upgrade", "Uninstall",
)  # fmt: skip
OLDEST = "1.34.0"  # the chart's kubeVersion floor


def _manifests(text: str) -> list[dict[str, Any]]:
    return [
        doc
        for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
        for doc in yaml.safe_load_all(block)
        if isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc
    ]


def test_there_is_a_guide_per_cloud() -> None:
    assert [p.name for p in GUIDES] == ["install-aks.md", "install-eks.md", "install-gke.md"]


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_step_is_there_in_order(guide: Path) -> None:
    headings = re.findall(r"^## \d+\. (.+)$", guide.read_text(), flags=re.M)
    assert len(headings) == len(SECTIONS)
    for heading, wanted in zip(headings, SECTIONS, strict=True):
        assert wanted in heading


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_manifests_are_strict_valid_on_the_oldest_release(guide: Path) -> None:
    manifests = _manifests(guide.read_text())
    kinds = {m["kind"] for m in manifests if m["apiVersion"] != "eksctl.io/v1alpha5"}
    assert {"PersistentVolumeClaim", "Job"} <= kinds
    for manifest in manifests:
        if manifest["apiVersion"] == "eksctl.io/v1alpha5":
            continue
        kubernetes_validate.validate(manifest, OLDEST, strict=True)


def _recipe_mounts(path: Path) -> tuple[set[str], set[str], set[str]]:
    doc = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] != "ConfigMap")
    claims = {p["name"] for p in doc["spec"].get("pvcs", [])}
    home = {e["value"] for e in doc["spec"].get("envs", []) if e["name"] == "HF_HOME"}
    secrets = {s["envFromSecret"] for s in doc["spec"]["services"].values() if "envFromSecret" in s}
    return claims, home, secrets


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_the_cache_and_token_are_what_the_recipes_use(guide: Path) -> None:
    text = guide.read_text()
    manifests = _manifests(text)
    (pvc,) = [m for m in manifests if m["kind"] == "PersistentVolumeClaim"]
    (job,) = [m for m in manifests if m["kind"] == "Job"]
    classes = {m["metadata"]["name"] for m in manifests if m["kind"] == "StorageClass"}
    if classes:
        assert pvc["spec"]["storageClassName"] in classes
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (mount,) = container["volumeMounts"]
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert env["HF_HOME"] == mount["mountPath"]
    secret = container["envFrom"][0]["secretRef"]["name"]
    assert f"kubectl create secret generic {secret} -n llm --from-literal=HF_TOKEN=" in text
    named = set(re.findall(r"recipes/([\w.-]+\.yaml)", text))
    assert named
    for name in named:
        claims, home, secrets = _recipe_mounts(ROOT / "recipes" / name)
        assert claims == {pvc["metadata"]["name"]}, name
        assert home == {env["HF_HOME"]}, name
        assert secrets <= {secret}, name


def _has_path(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("guide", [*GUIDES, ROOT / "docs" / "gitops.md"], ids=lambda p: p.name)
def test_chart_values_they_set_exist(guide: Path) -> None:
    text = guide.read_text()
    keys = re.findall(r"--set ([\w.]+)=", text) + re.findall(r"`([a-z]\w*(?:\.\w+)+): true`", text)
    # driver.*, devicePlugin.*: the GPU operator's chart; scalingAdapter.*: a DGD field.
    foreign = ("driver.", "devicePlugin.", "toolkit.", "scalingAdapter.")
    chart_keys = [k for k in keys if not k.startswith(foreign)]
    values = default_values()
    for key in chart_keys:
        assert _has_path(values, key), key
