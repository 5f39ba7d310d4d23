"""docs/gitops.md: its Argo CD recipe matches what the operator really does.

- the `ignoreDifferences` of the documented Application name exactly the fields the operator
  writes when a scaling adapter changes a service's replicas (the merge patch the controller
  sends to the stored v1beta1 object), and the same fields of its v1alpha1 view;
- the health checks (Lua, run here with Lua 5.4 through lupa) answer Progressing, Healthy and
  Degraded for the statuses the operator writes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.reconcile_fakes import KEY, FakeKube, controller_for, dgd

from dgd_operator.api.constants import DGDSA_KIND, GROUP_VERSION_V1BETA1
from dgd_operator.api.conversion import dgd_to_v1alpha1, dgd_to_v1beta1

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "gitops.md"


def _yaml_blocks() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    return [yaml.safe_load(block) for block in blocks]


def _application() -> dict[str, Any]:
    (app,) = [b for b in _yaml_blocks() if b.get("kind") == "Application"]
    return app


def _health(kind: str) -> str:
    (cm,) = [b for b in _yaml_blocks() if b.get("kind") == "ConfigMap"]
    return str(cm["data"][f"resource.customizations.health.nvidia.com_{kind}"])


class RecordingKube(FakeKube):
    """FakeKube that keeps the merge patches sent to the DGD."""

    def __init__(self) -> None:
        super().__init__()
        self.dgd_patches: list[Mapping[str, Any]] = []

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        if kind == "DynamoGraphDeployment" and subresource is None:
            self.dgd_patches.append(copy.deepcopy(dict(patch)))
        return await super().merge_patch(
            api_version, kind, namespace, name, patch, subresource=subresource
        )


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _changed_pointers(before: Any, after: Any, prefix: str = "") -> set[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out: set[str] = set()
        for key in set(before) | set(after):
            out |= _changed_pointers(before.get(key), after.get(key), f"{prefix}/{key}")
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = set()
        for index, (b, a) in enumerate(zip(before, after, strict=True)):
            out |= _changed_pointers(b, a, f"{prefix}/{index}")
        return out
    return set() if before == after else {prefix}


def _jq_pointers(expr: str, obj: dict[str, Any]) -> set[str]:
    """Pointers selected by the one jq form the doc uses for v1beta1 components."""
    match = re.fullmatch(
        r'\.spec\.components\[\] \| select\(\.name == "([^"]+)"\) \| \.replicas', expr
    )
    assert match, f"undocumented jq form: {expr}"
    return {
        f"/spec/components/{i}/replicas"
        for i, component in enumerate(obj["spec"]["components"])
        if component["name"] == match.group(1)
    }


async def _adapter_write(services: dict[str, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored (v1beta1) graph before and after the operator copied the adapters' counts
    into it."""
    body = dgd(scalingAdapter={"enabled": True}, replicas=1)
    body["spec"]["services"]["prefill"] = copy.deepcopy(body["spec"]["services"]["worker"])
    body["spec"]["services"]["worker"]["subComponentType"] = "decode"
    body["spec"]["services"]["decode"] = body["spec"]["services"].pop("worker")
    body["spec"]["services"]["prefill"]["subComponentType"] = "prefill"
    client = RecordingKube()
    controller, view, _ = controller_for(copy.deepcopy(body), client=client)
    for svc, replicas in services.items():
        name = f"g-{svc}"
        view.objects[(GROUP_VERSION_V1BETA1, DGDSA_KIND, name)] = {
            "apiVersion": GROUP_VERSION_V1BETA1,
            "kind": DGDSA_KIND,
            "metadata": {"name": name, "namespace": "ns", "uid": f"a-{svc}",
                         "ownerReferences": [{"uid": "u1"}]},
            "spec": {"replicas": replicas},
        }  # fmt: skip
    await controller.reconcile(KEY)
    assert client.dgd_patches, "the operator wrote no replicas into the graph"
    before = dgd_to_v1beta1(body)
    after = copy.deepcopy(before)
    for patch in client.dgd_patches:
        _merge(after, patch)
    return before, after


async def test_v1alpha1_pointers_are_exactly_where_the_operator_writes() -> None:
    old, new = await _adapter_write({"decode": 3, "prefill": 2})
    before, after = dgd_to_v1alpha1(old), dgd_to_v1alpha1(new)
    written = _changed_pointers(before["spec"], after["spec"], "/spec")
    assert written == {"/spec/services/decode/replicas", "/spec/services/prefill/replicas"}
    (entry,) = [e for e in _application()["spec"]["ignoreDifferences"] if "jsonPointers" in e]
    assert (entry["group"], entry["kind"]) == ("nvidia.com", "DynamoGraphDeployment")
    assert set(entry["jsonPointers"]) == written


async def test_v1beta1_expressions_select_exactly_where_the_write_lands() -> None:
    old, new = await _adapter_write({"decode": 3, "prefill": 2})
    written = _changed_pointers(old["spec"], new["spec"], "/spec")
    assert written and all(re.fullmatch(r"/spec/components/\d+/replicas", p) for p in written)
    (entry,) = [e for e in _application()["spec"]["ignoreDifferences"] if "jqPathExpressions" in e]
    selected = set().union(*(_jq_pointers(x, new) for x in entry["jqPathExpressions"]))
    assert selected == written


def test_sync_options_respect_the_ignored_fields() -> None:
    options = _application()["spec"]["syncPolicy"]["syncOptions"]
    assert "RespectIgnoreDifferences=true" in options


# ------------------------------------------------------------------------------ health (Lua)


@pytest.fixture(scope="module")
def lua() -> Any:
    lupa = pytest.importorskip("lupa")
    return lupa.LuaRuntime(unpack_returned_tuples=True)


def _run(lua: Any, script: str, obj: dict[str, Any]) -> tuple[str, str]:
    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    check = lua.eval(f"function(obj)\n{script}\nend")
    result = check(to_lua(obj))
    return str(result["status"]), str(result["message"])


def _graph(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "g", "generation": generation}}
    if status is not None:
        obj["status"] = status
    return obj


def _ready(value: str, message: str) -> list[dict[str, Any]]:
    return [{"type": "Ready", "status": value, "reason": "r", "message": message}]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_graph(1, None), "Progressing"),
        (_graph(2, {"observedGeneration": 1, "state": "successful",
                    "conditions": _ready("True", "all ready")}), "Progressing"),
        (_graph(2, {"observedGeneration": 2, "state": "successful",
                    "conditions": _ready("True", "all ready")}), "Healthy"),
        (_graph(2, {"observedGeneration": 2, "state": "pending",
                    "conditions": _ready("False", "decode: 0/1 ready")}), "Progressing"),
        (_graph(2, {"observedGeneration": 2, "state": "failed",
                    "conditions": _ready("False", "spec.services.x: bad")}), "Degraded"),
    ],
)  # fmt: skip
def test_graph_health(lua: Any, obj: dict[str, Any], expected: str) -> None:
    status, message = _run(lua, _health("DynamoGraphDeployment"), obj)
    assert status == expected
    if "conditions" in obj.get("status", {}) and status != "Progressing":
        assert message == obj["status"]["conditions"][0]["message"]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"spec": {"replicas": 3}}, ("Progressing", "waiting for the dgd operator")),
        (
            {"spec": {"replicas": 3}, "status": {"replicas": 1}},
            ("Progressing", "scaling from 1 to 3"),
        ),
        ({"spec": {"replicas": 3}, "status": {"replicas": 3}}, ("Healthy", "3 replicas")),
        ({"spec": {}, "status": {"replicas": 1}}, ("Healthy", "1 replicas")),
    ],
)
def test_adapter_health(lua: Any, obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert _run(lua, _health("DynamoGraphDeploymentScalingAdapter"), obj) == expected
