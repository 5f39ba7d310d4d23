"""`dgd convert`: multi-document files, other kinds untouched and in order, errors by document."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from dgd_operator import cli
from dgd_operator.api.constants import ANNOTATION_DGD_SPEC
from dgd_operator.commands.convert import convert_files

pytestmark = pytest.mark.unit

CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cfg"},
    "data": {"on": "yes", "y": "n"},
}
DGD = {
    "apiVersion": "nvidia.com/v1alpha1",
    "kind": "DynamoGraphDeployment",
    "metadata": {"name": "g"},
    "spec": {
        "services": {
            "Frontend": {
                "componentType": "frontend",
                "dynamoNamespace": "legacy",
                "extraPodSpec": {"mainContainer": {"image": "img:1.5.0"}},
            }
        }
    },
}
ADAPTER = {
    "apiVersion": "nvidia.com/v1alpha1",
    "kind": "DynamoGraphDeploymentScalingAdapter",
    "metadata": {"name": "g-frontend"},
    "spec": {"replicas": 1, "dgdRef": {"name": "g", "serviceName": "Frontend"}},
}


def _write(tmp_path: Path, name: str, *documents: Any, text: str | None = None) -> Path:
    path = tmp_path / name
    path.write_text(text if text is not None else yaml.safe_dump_all(documents, sort_keys=False))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_converts_dgds_and_adapters_and_keeps_other_documents_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _write(tmp_path, "a.yaml", CONFIG_MAP, DGD)
    second = _write(tmp_path, "b.yaml", ADAPTER)
    code, out, err = _run(["convert", "--to", "v1beta1", str(first), str(second)], capsys)
    assert (code, err) == (0, "")
    documents = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in documents] == [
        "ConfigMap",
        "DynamoGraphDeployment",
        "DynamoGraphDeploymentScalingAdapter",
    ]
    assert documents[0] == CONFIG_MAP
    assert documents[1]["apiVersion"] == "nvidia.com/v1beta1"
    assert [c["name"] for c in documents[1]["spec"]["components"]] == ["Frontend"]
    assert "legacy" in documents[1]["metadata"]["annotations"][ANNOTATION_DGD_SPEC]
    assert documents[2]["spec"]["dgdRef"] == {"name": "g", "componentName": "Frontend"}

    back = _write(tmp_path, "back.yaml", text=out)
    code, out, err = _run(["convert", "--to", "v1alpha1", str(back)], capsys)
    assert (code, err) == (0, "")
    assert list(yaml.safe_load_all(out)) == [CONFIG_MAP, DGD, ADAPTER]


def test_output_quotes_yaml11_booleans_and_keeps_key_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        ["convert", "--to", "v1beta1", str(_write(tmp_path, "c.yaml", CONFIG_MAP))], capsys
    )
    assert code == 0
    assert out.startswith("---\napiVersion: v1\nkind: ConfigMap\n")
    assert '"y": "n"' in out  # kubectl's YAML 1.1 would read plain y/n as booleans
    assert list(yaml.safe_load_all(out)) == [CONFIG_MAP]


def test_reads_standard_input() -> None:
    outcome = convert_files(["-"], "v1beta1", io.StringIO(yaml.safe_dump(DGD)))
    assert outcome.errors == []
    assert [d["apiVersion"] for d in outcome.documents] == ["nvidia.com/v1beta1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "{path}: document 2: spec.bogus: unknown field"),
        ("a: [unclosed", "{path}: not valid YAML"),
    ],
    ids=["unconvertible-document", "invalid-yaml"],
)
def test_errors_name_the_file_and_document_and_print_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, expected: str
) -> None:
    broken = {**DGD, "spec": {**DGD["spec"], "bogus": 1}}
    path = _write(tmp_path, "bad.yaml", CONFIG_MAP, broken, text=text)
    code, out, err = _run(["convert", "--to", "v1beta1", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(expected.format(path=path))


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, err = _run(["convert", "--to", "v1alpha1", str(missing)], capsys)
    assert (code, out) == (1, "")
    assert err == f"{missing}: cannot read: No such file or directory\n"


def test_help_says_comments_are_lost_and_the_command_is_listed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["convert", "--help"])
    assert "comments" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "convert" in capsys.readouterr().out


def test_target_version_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["convert", "x.yaml"])
    assert "--to" in capsys.readouterr().err
