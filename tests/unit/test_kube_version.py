"""The chart's `kubeVersion` floor: never below what the API server needs to accept our CRDs, and
exactly the oldest release the chart is installed on in tests.

The CRDs' needs: their validation rules use `optionalOldSelf` (KEP-4008, CRD validation
ratcheting: alpha in 1.28, beta and on by default in 1.30). A 1.29.15 API server drops the field
and then refuses the DGD CRD because `oldSelf.hasValue()` no longer compiles (reproduced against
a real 1.29.15 control plane in the ecosystem review). The table below maps every CRD
validation feature we use to the first release whose API server accepts it by default; the test
fails when a CRD gains a feature the table does not know, or whose version is above the floor.

The floor itself is the oldest release with an install test (tests/integration/
test_helm_install.py::test_chart_installs_on_the_oldest_supported_release, binaries of
`dev.binaries.OLDEST_KUBE_VERSION`),
not the CRDs' minimum: a claim nobody installs on is a guess (docs/kubernetes-versions.md).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dgd_operator.dev.binaries import OLDEST_KUBE_VERSION
from dgd_operator.tools.helm import ToolError, ensure_helm

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "dgd-operator"
CRD_DIRS = (ROOT / "crds", CHART_DIR / "crds")

# Keys of an `x-kubernetes-validations` entry -> first minor release accepting them by default.
RULE_KEYS: dict[str, int] = {
    "rule": 25,  # CRDValidationRules beta (on by default)
    "message": 25,
    "messageExpression": 27,
    "reason": 28,
    "fieldPath": 28,
    "optionalOldSelf": 30,  # CRDValidationRatcheting beta (on by default)
}
# CEL functions of the Kubernetes libraries, by the release that added them.
CEL_FUNCTIONS: dict[str, int] = {
    r"\.matches\(": 25,
    r"\bisURL\(|\burl\(": 25,
    r"\.hasValue\(\)|\.orValue\(": 30,  # optional types, only with optionalOldSelf
    r"\bisQuantity\(|\bquantity\(": 29,
    r"\bisIP\(|\bip\(|\bisCIDR\(|\bcidr\(": 31,
    r"\bformat\.": 32,
    r"\bisSemver\(|\bsemver\(": 33,
}


def _floor() -> int:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    match = re.fullmatch(r">=1\.(\d+)\.0-0", chart["kubeVersion"])
    assert match, f"unexpected kubeVersion {chart['kubeVersion']!r}"
    return int(match.group(1))


def _validations(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield from node.get("x-kubernetes-validations", ())
        for value in node.values():
            yield from _validations(value)
    elif isinstance(node, list):
        for item in node:
            yield from _validations(item)


def _crds() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for directory in CRD_DIRS
        for path in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "CustomResourceDefinition"
    ]


def required_minor() -> tuple[int, str]:
    """The highest minor release any CRD feature needs, and what needs it."""
    need, why = 0, "nothing"
    for name, crd in _crds():
        for entry in _validations(crd):
            for key in entry:
                assert key in RULE_KEYS, f"{name}: unknown validation key {key!r}; add its version"
                if RULE_KEYS[key] > need:
                    need, why = RULE_KEYS[key], f"{name}: {key}"
            for pattern, minor in CEL_FUNCTIONS.items():
                if re.search(pattern, str(entry.get("rule", ""))) and minor > need:
                    need, why = minor, f"{name}: rule {entry['rule']!r}"
    return need, why


def test_crds_are_found() -> None:
    assert {name for name, _ in _crds()} >= {
        "nvidia.com_dynamographdeployments.yaml",
        "nvidia.com_dynamographdeploymentscalingadapters.yaml",
    }


def test_kube_version_floor_covers_every_crd_feature() -> None:
    need, why = required_minor()
    assert _floor() >= need, f"the chart claims 1.{_floor()} but {why} needs 1.{need}"


def test_floor_is_the_oldest_tested_release() -> None:
    """The install test runs on the floor's minor release (its binaries are pinned there)."""
    assert OLDEST_KUBE_VERSION.removeprefix("v").startswith(f"1.{_floor()}.")


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return ensure_helm()
    except ToolError as exc:
        pytest.skip(f"helm unavailable: {exc}")


def _template(helm: Path, kube: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), "template", "dgd", str(CHART_DIR), "-n", "dgd-system", "--kube-version", kube,
         "-f", str(CHART_DIR / "ci" / "observability-values.yaml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_helm_refuses_the_release_below_the_floor(helm: Path) -> None:
    below = _template(helm, f"1.{_floor() - 1}.15")
    assert below.returncode != 0
    assert "kubeVersion" in below.stderr or "incompatible" in below.stderr


def test_objects_are_strict_valid_on_the_oldest_supported_release(helm: Path) -> None:
    oldest = f"1.{_floor()}.0"
    result = _template(helm, oldest)
    assert result.returncode == 0, result.stderr
    checked = 0
    for obj in yaml.safe_load_all(result.stdout):
        if not obj or obj["apiVersion"].startswith(("monitoring.coreos.com/", "cert-manager.io/")):
            continue
        kubernetes_validate.validate(obj, oldest, strict=True)
        checked += 1
    assert checked >= 10
