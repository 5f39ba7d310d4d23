"""CLI conveniences: `dgd render -o json` and `--values`, shell completion, `kubectl dgd`."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dgd_operator.cli import build_parser, kubectl_main, main
from dgd_operator.commands.completion import bash_script, command_tree
from dgd_operator.commands.values_options import (
    ValuesError,
    fullname,
    load_values,
    operator_env,
)
from dgd_operator.tools.helm import ToolError, ensure_helm

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "dgd-operator"
RECIPE = ROOT / "recipes" / "vllm-agg.yaml"


def _env_of(documents: list[dict[str, Any]], name: str) -> set[str]:
    return {
        e["value"]
        for d in documents
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", ())
        if e["name"] == name and "value" in e
    }


# ------------------------------------------------------------------------------ render -o json


def test_render_json_is_one_list_with_the_yaml_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(RECIPE), "-n", "prod"]) == 0
    from_yaml = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert main(["render", str(RECIPE), "-n", "prod", "-o", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["apiVersion"] == "v1" and listed["kind"] == "List"
    assert listed["items"] == from_yaml
    assert list(listed["items"][0])[:3] == ["apiVersion", "kind", "metadata"]


# ------------------------------------------------------------------------------ render --values


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return ensure_helm()
    except ToolError as exc:
        pytest.skip(f"helm unavailable: {exc}")


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"etcd": {"enabled": True}, "discoveryBackend": "etcd"},
        {"nats": {"enabled": False}, "natsAddress": "nats://ext:4222", "mpiSshSecretName": "k"},
        {
            "fullnameOverride": "ops",
            "extraEnv": [{"name": "DGD_NATS_ADDRESS", "value": "nats://x"}],
        },
    ],
)
@pytest.mark.parametrize("release", ["dgd", "dgd-operator"])
def test_values_give_the_env_the_chart_gives_the_operator(
    helm: Path, tmp_path: Path, values: dict[str, Any], release: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = subprocess.run(
        [str(helm), "template", release, str(CHART_DIR), "-n", "ops-ns", "-f", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (deployment,) = [
        d
        for d in yaml.safe_load_all(out)
        if d
        and d["kind"] == "Deployment"
        and d["metadata"]["name"] == fullname(load_values(str(path)), release)
    ]
    chart_env: dict[str, str] = {}
    for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        chart_env[item["name"]] = item.get("value", "")  # a later duplicate wins, as in a pod
    ours = operator_env(load_values(str(path)), release=release, namespace="ops-ns")
    assert {k: chart_env[k] for k in ours} == ours


def test_render_with_values_injects_the_bundled_addresses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"etcd": {"enabled": True}}))
    args = ["render", str(RECIPE), "--values", str(values), "--release", "dgd"]
    assert main([*args, "--release-namespace", "infra"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert _env_of(docs, "NATS_SERVER") == {
        "nats://dgd-dgd-operator-nats.infra.svc.cluster.local:4222"
    }
    assert _env_of(docs, "ETCD_ENDPOINTS") == {"dgd-dgd-operator-etcd.infra.svc.cluster.local:2379"}
    # An explicit flag still wins over the values file.
    assert main([*args, "--nats-address", "nats://mine:4222"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert _env_of(docs, "NATS_SERVER") == {"nats://mine:4222"}


def test_bad_values_file_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("natz:\n  enabled: true\n")
    assert main(["render", str(RECIPE), "--values", str(values)]) == 2
    err = capsys.readouterr().err
    assert "natz" in err and "dgd-operator chart" in err
    with pytest.raises(ValuesError, match="no such file"):
        load_values(str(tmp_path / "missing.yaml"))


# ------------------------------------------------------------------------------ completion


def test_command_tree_knows_nested_commands_options_and_choices() -> None:
    tree = command_tree(build_parser())
    assert {"validate", "render", "dev", "completion"} <= set(tree["dgd"].subcommands)
    assert "up" in tree["dgd dev"].subcommands
    assert tree["dgd completion"].subcommands == ["bash", "zsh"]
    assert tree["dgd render"].choices["-o"] == ["yaml", "json"]
    assert "--values" in tree["dgd render"].options


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["dgd", ""], {"validate", "render", "convert", "dev", "serve", "completion"}),
        (["dgd", "re"], {"render"}),
        (["dgd", "dev", ""], {"up", "down", "status", "kubeconfig"}),
        (["dgd", "render", "-o", ""], {"yaml", "json"}),
        (["dgd", "render", "--val"], {"--values"}),
        (["kubectl", "dgd", "comp"], {"completion"}),
        (["dgd", "completion", "z"], {"zsh"}),
    ],
)
def test_bash_completion(tmp_path: Path, words: list[str], expected: set[str]) -> None:
    script = tmp_path / "dgd.bash"
    script.write_text(bash_script(build_parser()))
    quoted = " ".join(f"'{w}'" for w in words)
    probe = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _dgd; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert expected <= set(out.stdout.split()), out.stderr


def test_completion_command_prints_both_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    bash = capsys.readouterr().out
    assert "complete -o default -F _dgd dgd" in bash and "kubectl-dgd" in bash
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert "bashcompinit" in zsh and zsh.endswith(bash.split("\n", 1)[1])
    out = subprocess.run(["bash", "-n"], input=bash, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# ------------------------------------------------------------------------------ kubectl plugin


def test_kubectl_plugin_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-dgd"] == "dgd_operator.cli:kubectl_main"
    with pytest.raises(SystemExit) as exc:
        kubectl_main(["--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: kubectl dgd ")
    assert kubectl_main(["completion", "bash"]) == 0
