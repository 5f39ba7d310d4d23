"""The operator image's Dockerfile, checked by reading it (no Docker engine on these machines).

A tiny parser turns the Dockerfile into (instruction, arguments) per stage; the tests pin the
properties the chart relies on: two stages from python:3.11-slim, the `operator` extra installed
from a wheel, a non-root numeric USER, the `dgd operator` entrypoint, a stdlib HEALTHCHECK on the
chart's health port, and a .dockerignore that still sends every COPY source.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Stage:
    """One FROM ... block: its base image, optional name, and instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args_of(self, instruction: str) -> list[str]:
        """Arguments of every occurrence of `instruction` (upper case) in this stage."""
        return [args for name, args in self.instructions if name == instruction]


def _logical_lines(text: str) -> list[str]:
    """Join backslash continuations and drop comments and blank lines."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "Dockerfile ends inside a line continuation"
    return lines


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Return the global ARG defaults and the stages, with ${ARG} expanded in FROM lines."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        args = args.strip()
        if instruction == "FROM":
            expanded = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], args)
            parts = expanded.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert instruction == "ARG", f"{instruction} before the first FROM"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((instruction, args))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    """The parsed stages of the repository's Dockerfile."""
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def test_two_stages_from_python_311_slim(stages: list[Stage]) -> None:
    assert [s.base for s in stages] == ["python:3.11-slim", "python:3.11-slim"]
    assert stages[0].name == "builder"


def test_builder_installs_a_wheel_with_the_operator_extra(stages: list[Stage]) -> None:
    run = " && ".join(stages[0].args_of("RUN"))
    assert "python -m venv /opt/venv" in run
    assert "pip wheel" in run
    assert re.search(r"pip install \"[^\"]*\.whl\)?\[operator\]\"", run), run


def test_final_stage_copies_only_the_venv_and_runs_as_non_root(stages: list[Stage]) -> None:
    final = stages[-1]
    copies = final.args_of("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    [user] = final.args_of("USER")
    uid, _, gid = user.partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid == "65532" and gid == "65532"
    # USER comes after every RUN, so nothing in the image runs as root after it.
    names = [name for name, _ in final.instructions]
    assert names.index("USER") > max(i for i, n in enumerate(names) if n == "RUN")


def test_final_stage_environment(stages: list[Stage]) -> None:
    env = " ".join(stages[-1].args_of("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "PATH=/opt/venv/bin:$PATH" in env


def test_entrypoint_is_dgd_operator(stages: list[Stage]) -> None:
    [entrypoint] = stages[-1].args_of("ENTRYPOINT")
    assert json.loads(entrypoint) == ["dgd", "operator"]
    # `dgd` is the console script of the distribution and `operator` one of its commands.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dgd"] == "dgd_operator.cli:main"
    from dgd_operator.cli import COMMAND_MODULES

    assert "operator" in COMMAND_MODULES


def test_healthcheck_uses_stdlib_on_the_charts_health_port(stages: list[Stage]) -> None:
    [healthcheck] = stages[-1].args_of("HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2] and "/healthz" in command[2]
    chart_values = yaml.safe_load((ROOT / "charts" / "dgd-operator" / "values.yaml").read_text())
    assert f"'{chart_values['health']['port']}'" in command[2]
    env = " ".join(stages[-1].args_of("ENV"))
    assert f"DGD_HEALTH_PORT={chart_values['health']['port']}" in env


def test_image_environment_is_the_operators_defaults(stages: list[Stage]) -> None:
    from dgd_operator.settings import load_settings, settings_fields, to_environ

    env = dict(
        item.split("=", 1)
        for args in stages[-1].args_of("ENV")
        for item in args.split()
        if item.startswith("DGD_")
    )
    assert env, "the HEALTHCHECK needs DGD_HEALTH_PORT in the image environment"
    assert set(env) <= {s.variable for s in settings_fields()}
    # Set for the HEALTHCHECK's sake only: the values change nothing the operator would do.
    assert to_environ(load_settings(env)) == {}


def test_operator_extra_has_no_official_kubernetes_client() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert not [d for d in extras["operator"] if re.match(r"kubernetes\b(?!-)", d)]
    product = ROOT / "operator" / "dgd_operator"
    for path in product.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import kubernetes\b|from kubernetes\b)", text, re.M), path


# Not run by the operator: the local cluster and generators (dev extra), and the launch scripts
# that run inside engine pods (their Ray comes with the engine image).
NOT_IN_THE_IMAGE = ("dev", "codegen", "builders/backends/launch")
FIRST_PARTY = ("__future__", "dgd_operator", "dgd_runtime")


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_operator_imports_only_what_its_image_installs() -> None:
    """Every third-party import of the operator's code is a core or `operator` requirement."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        _distribution(r)
        for r in [*project["dependencies"], *project["optional-dependencies"]["operator"]]
    }
    providers = packages_distributions()
    product = ROOT / "operator" / "dgd_operator"
    missing: dict[str, set[str]] = {}
    for path in sorted(product.rglob("*.py")):
        relative = path.relative_to(product).as_posix()
        if relative.startswith(NOT_IN_THE_IMAGE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                # dgd_runtime is ours too: only `dgd serve` loads it (the runtime extra).
                if top in sys.stdlib_module_names or top in FIRST_PARTY:
                    continue
                dists = {_distribution(d) for d in providers.get(top, [top])}
                if not dists & declared:
                    missing.setdefault(top, set()).add(relative)
    assert missing == {}, f"imported but not in the operator extra: {missing}"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        body = body.rstrip("/")
        if fnmatch.fnmatch(path, body) or fnmatch.fnmatch(path, body.replace("**/", "")):
            ignored = not negated
    return ignored


def test_every_copy_source_exists_and_is_sent_to_the_daemon(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for stage in stages:
        for args in stage.args_of("COPY"):
            if args.startswith("--from="):
                continue
            sources += args.split()[:-1]
    assert sources, "no COPY from the build context"
    for source in sources:
        name = source.rstrip("/")
        assert (ROOT / name).exists(), f"COPY source {name} missing from the repository"
        assert not _ignored(name, patterns), f"COPY source {name} is excluded by .dockerignore"
    # Caches and build leftovers never reach the daemon.
    for junk in ("operator/dgd_operator/__pycache__", "dgd_platform.egg-info", ".venv"):
        assert _ignored(junk, patterns), junk
