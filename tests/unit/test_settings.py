"""Operator settings from `DGD_*` environment variables.

The cases are generated from the settings' fields, so a new setting is covered (parsed, kept
apart from the others, refused with its variable named, round-tripped) without editing this file.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

import pytest

from dgd_operator.settings import (
    LeaderElectionSettings,
    OperatorSettings,
    Setting,
    SettingsError,
    WebhookSettings,
    load_settings,
    settings_fields,
    to_environ,
)

pytestmark = pytest.mark.unit

SETTINGS = settings_fields()
IDS = [s.variable for s in SETTINGS]


def _value(settings: OperatorSettings, setting: Setting) -> Any:
    value: Any = settings
    for part in setting.path:
        value = getattr(value, part)
    return value


def _base(kind: Any) -> Any:
    """The type without `| None`."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if type(None) in typing.get_args(kind) else kind


# Settings bounded by another setting: a sample that keeps them apart from their default and valid.
NESTED_SAMPLES: dict[str, tuple[str, Any]] = {
    # Must stay between the retry period (2) and the lease duration (15).
    "DGD_LEADER_ELECTION_RENEW_DEADLINE": (" 12.5 ", 12.5),
}


def _sample(setting: Setting) -> tuple[str, Any]:
    """A valid raw value other than the default, and what it parses to."""
    if setting.variable in NESTED_SAMPLES:
        return NESTED_SAMPLES[setting.variable]
    kind = _base(setting.type)
    if typing.get_origin(kind) is Literal:
        choice = next(c for c in typing.get_args(kind) if c != setting.default)
        return str(choice).lower(), choice  # case-insensitive, stored in canonical spelling
    if kind is bool:
        return ("false", False) if setting.default is True else ("yes", True)
    if kind in (int, float):
        number = int(setting.default or 0) + 7
        if setting.maximum is not None:
            number = min(number, int(setting.maximum))
        return f" {number} ", kind(number)
    if setting.variable == "DGD_TOPOLOGY_DOMAIN_KEYS":
        return " zone=example.com/zone,rack=example.com/rack ,", (
            "rack=example.com/rack",
            "zone=example.com/zone",
        )
    if typing.get_origin(kind) is tuple:
        return " team-b,team-a ,,team-a", ("team-a", "team-b")
    assert kind is str, f"{setting.variable}: add a sample for {kind!r}"
    return " custom-value ", "custom-value"


def _invalid(setting: Setting) -> list[str]:
    """Raw values the setting must refuse (none for free text)."""
    kind = _base(setting.type)
    bad: list[str] = []
    if typing.get_origin(kind) is Literal or kind is bool:
        bad.append("maybe")
    if kind in (int, float):
        bad.append("lots")
        if setting.minimum is not None:
            bad.append(str(int(setting.minimum) - 1))
        if setting.maximum is not None:
            bad.append(str(int(setting.maximum) + 1))
    if setting.variable == "DGD_TOPOLOGY_DOMAIN_KEYS":
        bad.extend(["rack", "rack=", "=example.com/rack"])
    return bad


def test_every_field_is_a_variable() -> None:
    groups = {"webhook": WebhookSettings, "leader_election": LeaderElectionSettings}
    top = {f.name for f in dataclasses.fields(OperatorSettings)} - {"extra", *groups}
    expected = {f"DGD_{n.upper()}" for n in top}
    for group, cls in groups.items():
        expected |= {f"DGD_{group.upper()}_{f.name.upper()}" for f in dataclasses.fields(cls)}
    assert set(IDS) == expected
    assert len(set(IDS)) == len(IDS)


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == OperatorSettings()
    for setting in SETTINGS:
        assert _value(settings, setting) == setting.default, setting.variable
    assert not settings.webhook.enabled and settings.webhook.is_managed


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_each_variable_sets_exactly_its_field(setting: Setting) -> None:
    raw, expected = _sample(setting)
    settings = load_settings({setting.variable: raw, "OTHER": "ignored"})
    assert _value(settings, setting) == expected
    for other in SETTINGS:
        if other is not setting:
            assert _value(settings, other) == other.default, other.variable
    assert not settings.extra


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_blank_keeps_the_default(setting: Setting) -> None:
    assert _value(load_settings({setting.variable: "  "}), setting) == setting.default


@pytest.mark.parametrize(
    ("setting", "raw"),
    [pytest.param(s, raw, id=f"{s.variable}={raw}") for s in SETTINGS for raw in _invalid(s)],
)
def test_bad_values_name_the_variable(setting: Setting, raw: str) -> None:
    with pytest.raises(SettingsError, match=setting.variable):
        load_settings({setting.variable: raw})


def test_every_variable_round_trips() -> None:
    env = {s.variable: _sample(s)[0] for s in SETTINGS}
    settings = load_settings(env)
    assert set(to_environ(settings)) == set(IDS)
    assert load_settings(to_environ(settings)) == settings
    assert to_environ(OperatorSettings()) == {}


def test_unknown_variables_are_kept_for_a_warning() -> None:
    assert load_settings({"DGD_TYPO": "x", "DGD_WEBHOOK_PROT": "1"}).extra == {
        "TYPO": "x",
        "WEBHOOK_PROT": "1",
    }


def test_objects_built_in_code_are_validated_too() -> None:
    with pytest.raises(SettingsError, match="DGD_WEBHOOK_FAILURE_POLICY"):
        WebhookSettings(failure_policy="Sometimes")  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="DGD_WORKERS"):
        OperatorSettings(workers=0)


def test_build_options() -> None:
    settings = load_settings(
        {
            "DGD_NATS_ADDRESS": "nats://nats:4222",
            "DGD_ETCD_ADDRESS": "etcd:2379",
            "DGD_DISCOVERY_BACKEND": "ETCD",
            "DGD_MPI_SSH_SECRET_NAME": "ssh",
        }
    )
    options = settings.to_build_options({"nvcr.io": ("ngc",)})
    assert options.nats_address == "nats://nats:4222" and options.etcd_address == "etcd:2379"
    assert options.discovery_backend == "etcd" and options.mpi_ssh_secret_name == "ssh"
    assert options.registry_secrets("nvcr.io") == ("ngc",)


def test_webhook_is_managed_unless_a_certificate_is_mounted() -> None:
    assert WebhookSettings().is_managed
    assert not WebhookSettings(cert_dir="/certs").is_managed
    assert WebhookSettings(cert_dir="/certs", managed=True).is_managed


def test_topology_domain_keys_add_to_and_replace_the_defaults() -> None:
    settings = load_settings(
        {"DGD_TOPOLOGY_DOMAIN_KEYS": "rack=example.com/rack,pod=example.com/pod"}
    )
    keys = settings.to_build_options().topology_domain_keys
    assert keys["rack"] == "example.com/rack"
    assert keys["pod"] == "example.com/pod"
    assert keys["zone"] == "topology.kubernetes.io/zone"
    assert keys["host"] == "kubernetes.io/hostname"
