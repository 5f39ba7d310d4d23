"""`python -m dgd_operator.dev.binaries ensure --with-oldest`: what `make kube-bins` asks for.

A fresh machine must end up with both releases the test suite runs on: the default one and the
Helm chart's oldest supported one (whose install test fails under CI=true when it is missing).
The build itself takes minutes and is exercised by every cold CI run; here the command's wiring
is checked with `ensure` recorded instead of run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dgd_operator.dev import binaries

pytestmark = pytest.mark.unit


def _recording(calls: list[tuple[str, bool]]) -> object:
    def ensure(
        version: str = binaries.KUBE_VERSION, progress: object = None, *, envtest: bool = True
    ) -> binaries.KubeBinaries:
        calls.append((version, envtest))
        bin_dir = Path("/nonexistent") / version
        return binaries.KubeBinaries(
            bin_dir / "kube-apiserver",
            bin_dir / "etcd",
            bin_dir / "kube-controller-manager",
            bin_dir / "kube-scheduler",
            version,
            "cache",
        )

    return ensure


def test_with_oldest_builds_the_charts_oldest_release_from_source_and_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(binaries, "ensure", _recording(calls))
    assert binaries.main(["ensure", "--with-oldest"]) == 0
    # The oldest release never comes from KUBEBUILDER_ASSETS (they hold whatever envtest has).
    assert calls == [(binaries.OLDEST_KUBE_VERSION, False), (binaries.KUBE_VERSION, True)]
    out = capsys.readouterr().out
    assert binaries.OLDEST_KUBE_VERSION in out and binaries.KUBE_VERSION in out


def test_plain_ensure_builds_only_the_default_release(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(binaries, "ensure", _recording(calls))
    assert binaries.main(["ensure"]) == 0
    assert calls == [(binaries.KUBE_VERSION, True)]


def test_the_makefile_asks_for_both_releases() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "dgd_operator.dev.binaries ensure --with-oldest" in makefile
