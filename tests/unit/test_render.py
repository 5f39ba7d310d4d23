"""`dgd render`: document handling, ordering, errors and warnings."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
import yaml

from dgd_operator.cli import main

pytestmark = pytest.mark.unit

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  a.yaml: |
    x: 1
    y: 2
"""

DGD = """\
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata:
  name: g
spec:
  services:
    Frontend:
      componentType: frontend
    worker:
      componentType: worker
      extraPodSpec:
        mainContainer:
          image: img
"""

MULTINODE_DGD = (
    DGD
    + """\
    decode:
      componentType: worker
      multinode:
        nodeCount: 2
"""
)


def render(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *texts: str, args: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    files = []
    for index, text in enumerate(texts):
        path = tmp_path / f"f{index}.yaml"
        path.write_text(text)
        files.append(str(path))
    code = main(["render", *args, *files])
    out, err = capsys.readouterr()
    return code, out, err


def kinds(out: str) -> list[tuple[str, str]]:
    return [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out)]


def test_other_documents_pass_through_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = render(
        tmp_path, capsys, CONFIGMAP + "---\n" + DGD + "---\n" + CONFIGMAP.replace("cfg", "cfg2")
    )
    assert code == 0 and err == ""
    names = kinds(out)
    assert names[0] == ("ConfigMap", "cfg") and names[-1] == ("ConfigMap", "cfg2")
    # The worker runs as a generation of a managed rollout: `<dgd>-<svc>-<worker hash>`.
    assert any(kind == "Deployment" and name.startswith("g-worker-") for kind, name in names)
    first = next(yaml.safe_load_all(out))
    assert first == yaml.safe_load(CONFIGMAP)
    assert "a.yaml: |\n" in out  # multi-line strings stay readable


def test_key_order_and_separators(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = render(
        tmp_path,
        capsys,
        "data: {k: v}\nmetadata: {name: c}\nkind: ConfigMap\napiVersion: v1\n---\n" + DGD,
    )
    assert code == 0
    assert out.startswith("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n")
    for chunk in out.split("---\n")[1:]:
        assert chunk.startswith("apiVersion: ")
        assert chunk.splitlines()[1].startswith("kind: ")


def test_namespace_option_and_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = render(tmp_path, capsys, DGD)
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(out)} == {"default"}
    _, out, _ = render(tmp_path, capsys, DGD, args=("-n", "prod"))
    docs = list(yaml.safe_load_all(out))
    assert {d["metadata"]["namespace"] for d in docs} == {"prod"}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["metadata"]["labels"]["nvidia.com/dynamo-namespace"] == "prod-g"


def test_output_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = render(tmp_path, capsys, DGD)
    assert render(tmp_path, capsys, DGD) == first


def test_invalid_dgd_one_line_error_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = DGD.replace("componentType: worker", "componentType: worker\n      replicas: -1")
    code, out, err = render(tmp_path, capsys, bad)
    assert code == 1 and out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith(str(tmp_path / "f0.yaml") + ": g: ") for line in lines)
    assert any("spec.services.worker.replicas" in line for line in lines)


def test_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(tmp_path, capsys, "a: [\n")
    assert code == 1 and out == ""
    assert "not valid YAML" in err and "line" in err and "Traceback" not in err


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "/nonexistent/x.yaml"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "/nonexistent/x.yaml: no such file"


def test_build_error_is_reported_with_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = DGD.replace(
        "componentType: worker",
        "componentType: worker\n      annotations:\n        nvidia.com/deployment-strategy: Sideways",
    )
    code, out, err = render(tmp_path, capsys, bad)
    assert code == 1 and out == ""
    assert "spec.services.worker.annotations.nvidia.com/deployment-strategy" in err


def test_multinode_services_rendered_as_statefulsets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = render(tmp_path, capsys, MULTINODE_DGD)
    assert code == 0 and err == ""
    assert ("StatefulSet", "g-decode-0-ldr") in kinds(out) and (
        "StatefulSet",
        "g-decode-0-wkr",
    ) in kinds(out)


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(DGD))
    assert main(["render", "-"]) == 0
    assert ("Deployment", "g-frontend") in kinds(capsys.readouterr().out)


def test_operator_options_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = render(
        tmp_path,
        capsys,
        DGD,
        args=("--discovery-backend", "etcd", "--nats-address", "nats://n:4222"),
    )
    assert code == 0
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs].count("Service") == 1
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][-1]["env"]
    }
    assert env["NATS_SERVER"] == "nats://n:4222" and "DYN_DISCOVERY_BACKEND" not in env


def test_render_module_imports_only_stdlib_at_module_level() -> None:
    source = Path(
        __import__("dgd_operator.commands.render", fromlist=["x"]).__file__ or ""
    ).read_text()
    header = source.split("\ndef ", 1)[0]
    imports = [line for line in header.splitlines() if line.startswith(("import ", "from "))]
    allowed = {"argparse", "sys", "__future__", "dataclasses", "typing"}
    assert {line.split()[1].split(".")[0] for line in imports} <= allowed, textwrap.indent(
        "\n".join(imports), "  "
    )


@pytest.mark.parametrize("word", ["y", "Y", "n", "N", "yes", "no", "on", "off", "true"])
def test_yaml11_boolean_words_stay_strings_for_kubectl(word: str) -> None:
    """kubectl reads YAML 1.1, where a bare `n` is false: such strings must be quoted."""
    from dgd_operator.commands.render import dump_documents

    text = dump_documents([{"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": word}}])
    assert f"k: {word}\n" not in text
    assert yaml.safe_load(text)["data"]["k"] == word
