"""The operator settings `dgd render --values` reads from a Helm values file of our chart.

The chart turns its values into the operator's `DGD_*` environment (templates/deployment.yaml);
this module does the same for the settings that shape built objects, so `dgd render` prints
what the operator installed with those values would create: the bundled NATS (and etcd)
addresses derived from the release name and namespace, the discovery backend, the MPI SSH
Secret name, and any `DGD_*` variable given through `extraEnv`.

Imported lazily by `dgd render` (pydantic and the values model are not needed for `--help`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dgd_operator.builders.options import BuildOptions
from dgd_operator.codegen.chartvalues import ChartValues
from dgd_operator.settings import ENV_PREFIX, load_settings

CHART_NAME = "dgd-operator"
NATS_PORT = 4222
ETCD_PORT = 2379


class ValuesError(ValueError):
    """The values file cannot be read or does not fit the chart's schema."""


def fullname(values: ChartValues, release: str) -> str:
    """The chart's `dgd-operator.fullname` helper: the prefix of every object's name."""
    if values.fullname_override:
        return values.fullname_override[:63].rstrip("-")
    name = values.name_override or CHART_NAME
    full = release if name in release else f"{release}-{name}"
    return full[:63].rstrip("-")


def operator_env(values: ChartValues, *, release: str, namespace: str) -> dict[str, str]:
    """The `DGD_*` variables the chart's Deployment gives the operator that shape objects."""
    prefix = fullname(values, release)
    if values.nats.enabled:
        nats_name = f"{prefix}-nats"[:63].rstrip("-")
        nats = f"nats://{nats_name}.{namespace}.svc.cluster.local:{NATS_PORT}"
    else:
        nats = values.nats_address
    if values.etcd.enabled:
        etcd = f"{prefix}-etcd"[:63].rstrip("-") + f".{namespace}.svc.cluster.local:{ETCD_PORT}"
    else:
        etcd = values.etcd_address
    env = {
        f"{ENV_PREFIX}NATS_ADDRESS": nats,
        f"{ENV_PREFIX}ETCD_ADDRESS": etcd,
        f"{ENV_PREFIX}DISCOVERY_BACKEND": values.discovery_backend,
        f"{ENV_PREFIX}MPI_SSH_SECRET_NAME": values.mpi_ssh_secret_name,
    }
    # extraEnv comes after the chart's own variables, so (as in a pod) a duplicate name wins.
    for item in values.extra_env:
        name, value = item.get("name"), item.get("value")
        if isinstance(name, str) and name.startswith(ENV_PREFIX) and isinstance(value, str):
            env[name] = value
    return env


def load_values(path: str) -> ChartValues:
    """Read a values file (a partial override, as given to `helm -f`) over the chart defaults."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ValuesError(f"{path}: no such file") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ValuesError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ValuesError(f"{path}: expected a mapping of chart values")
    data: dict[str, Any] = {k: v for k, v in raw.items() if k != "global"}
    try:
        return ChartValues.model_validate(data)
    except ValueError as exc:
        raise ValuesError(f"{path}: not valid for the {CHART_NAME} chart: {exc}") from exc


def build_options_from_values(path: str, *, release: str, namespace: str) -> BuildOptions:
    """BuildOptions of an operator installed with the values file `path` as `release` in
    `namespace`."""
    values = load_values(path)
    settings = load_settings(operator_env(values, release=release, namespace=namespace))
    return settings.to_build_options()
