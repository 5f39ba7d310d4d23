"""Operator settings from `DGD_*` environment variables."""

from __future__ import annotations

import pytest

from dgd_operator.settings import OperatorSettings, SettingsError, load_settings

pytestmark = pytest.mark.unit


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == OperatorSettings()
    assert (settings.metrics_port, settings.health_port) == (8080, 8081)
    assert settings.discovery_backend == "kubernetes" and settings.image_pull_secret_discovery
    assert settings.mpi_ssh_secret_name == "mpi-run-ssh-secret"


def test_every_variable() -> None:
    settings = load_settings(
        {
            "DGD_WATCH_NAMESPACES": " team-b,team-a ,,team-a",
            "DGD_NATS_ADDRESS": "nats://nats:4222",
            "DGD_ETCD_ADDRESS": "etcd:2379",
            "DGD_DISCOVERY_BACKEND": "ETCD",
            "DGD_IMAGE_PULL_SECRET_DISCOVERY": "false",
            "DGD_METRICS_PORT": "9090",
            "DGD_HEALTH_PORT": "0",
            "DGD_MPI_SSH_SECRET_NAME": "ssh",
            "DGD_LOG_LEVEL": "debug",
            "DGD_LOG_FORMAT": "json",
            "DGD_TYPO": "x",
            "OTHER": "ignored",
        }
    )
    assert settings.watch_namespaces == ("team-a", "team-b")
    assert settings.discovery_backend == "etcd" and not settings.image_pull_secret_discovery
    assert (settings.metrics_port, settings.health_port) == (9090, 0)
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert settings.extra == {"TYPO": "x"}
    options = settings.to_build_options({"nvcr.io": ("ngc",)})
    assert options.nats_address == "nats://nats:4222" and options.etcd_address == "etcd:2379"
    assert options.discovery_backend == "etcd" and options.mpi_ssh_secret_name == "ssh"
    assert options.registry_secrets("nvcr.io") == ("ngc",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DGD_DISCOVERY_BACKEND", "consul"),
        ("DGD_METRICS_PORT", "http"),
        ("DGD_HEALTH_PORT", "70000"),
        ("DGD_IMAGE_PULL_SECRET_DISCOVERY", "maybe"),
        ("DGD_LOG_FORMAT", "xml"),
        ("DGD_LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_group_restart_policy_is_read_from_env() -> None:
    from dgd_operator.settings import load_settings

    env = {
        "DGD_GROUP_RESTART_BUDGET": "2",
        "DGD_GROUP_RESTART_WINDOW": "600",
        "DGD_GROUP_RESTART_BACKOFF": "1",
        "DGD_GROUP_RESTART_BACKOFF_CAP": "30",
    }
    settings = load_settings(env)
    assert (settings.group_restart_budget, settings.group_restart_window) == (2, 600.0)
    assert (settings.group_restart_backoff, settings.group_restart_backoff_cap) == (1.0, 30.0)
    assert not settings.extra
