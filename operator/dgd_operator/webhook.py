"""Validating admission webhook for DynamoGraphDeployments and their scaling adapters.

The API server calls it on every CREATE and UPDATE of a DGD or DGDSA (never on the `status` or
`scale` subresources), so a bad graph is refused at `kubectl apply` time with every problem
listed as `path: message`, instead of failing later inside the operator. It applies the same
rules as `dgd validate` (`dgd_operator.api.validation`) plus Dynamo's update rules: the set of
services, `backendFramework`, single-node vs multinode and topology constraints are fixed after
creation; `spec.restart.id` may not change while a rolling update is Pending or InProgress; the
replicas of a service driven by a scaling adapter belong to the adapter (and the planner).

Served by the operator process through kopf's admission support:

* `register_admission(registry, operator_settings)` adds the two `@kopf.on.validate` handlers;
* `configure_admission(kopf_settings, operator_settings)` sets the HTTPS server: the certificate
  from `DGD_WEBHOOK_CERT_DIR` (mounted by the Helm chart, which also registers the webhook), or,
  for local runs, a self-signed one that kopf registers itself in a
  ValidatingWebhookConfiguration named `dgd-operator.nvidia.com`.

Updates are *ratcheted* like the API server's own CRD validation: a problem the stored object
already had does not block an unrelated change (labels, finalizers, a replica bump), so objects
created before the webhook existed stay manageable. An object being deleted is always admitted.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import kopf
from pydantic import ValidationError

from dgd_operator.api.constants import API_GROUP
from dgd_operator.api.models import DynamoGraphDeployment, DynamoGraphDeploymentScalingAdapter
from dgd_operator.api.validation import Problem, update_problems, validate_dgd
from dgd_operator.settings import SettingsError

DGD_PLURAL = "dynamographdeployments"
DGDSA_PLURAL = "dynamographdeploymentscalingadapters"
API_VERSION = "v1alpha1"

# Handler ids are also the URL paths of the webhooks (`/validate-dgd`): the chart's
# ValidatingWebhookConfiguration routes each resource to its handler by path.
DGD_WEBHOOK_ID = "validate-dgd"
DGDSA_WEBHOOK_ID = "validate-dgdsa"
# Name of the ValidatingWebhookConfiguration kopf manages in local runs; its webhooks are
# named `<handler id>.dgd-operator.nvidia.com`, like the chart's.
MANAGED_CONFIGURATION = "dgd-operator.nvidia.com"

# Files of a kubernetes.io/tls Secret (cert-manager adds ca.crt; the chart's own Secret too).
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"

# Dynamo lets the planner's ServiceAccount (any namespace) drive adapter-managed replicas.
PLANNER_SERVICE_ACCOUNT = "planner-serviceaccount"
# The API server shows each warning on one line and may drop long ones.
MAX_WARNING_LENGTH = 240
MAX_LISTED_PROBLEMS = 25
# HTTP status of a denial (what controller-runtime, and so Dynamo's webhook, answers).
DENIED = 403

FailurePolicy = Literal["Fail", "Ignore"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class WebhookSettings:
    """How the operator serves admission (env var = `DGD_WEBHOOK_` + upper name)."""

    enabled: bool = False
    """`DGD_WEBHOOK_ENABLED`: serve the webhook (the chart sets true; local runs default off)."""

    port: int = 9443
    """`DGD_WEBHOOK_PORT`: HTTPS port of the webhook server (Dynamo's default too)."""

    host: str | None = None
    """`DGD_WEBHOOK_HOST`: host name the API server uses to reach a kopf-managed webhook (and a
    SAN of the self-signed certificate); default: the listening address."""

    cert_dir: str | None = None
    """`DGD_WEBHOOK_CERT_DIR`: directory with `tls.crt`, `tls.key` (and optionally `ca.crt`);
    unset: a self-signed certificate is generated at startup (needs `cryptography`)."""

    managed: bool | None = None
    """`DGD_WEBHOOK_MANAGED`: kopf creates and patches the ValidatingWebhookConfiguration
    `dgd-operator.nvidia.com` itself (needs RBAC on validatingwebhookconfigurations). Default:
    true with a self-signed certificate (nobody else knows its CA), false with `cert_dir`."""

    failure_policy: FailurePolicy = "Fail"
    """`DGD_WEBHOOK_FAILURE_POLICY`: `Fail` (default, like Dynamo) or `Ignore`, for a
    kopf-managed configuration (the chart sets its own from `webhook.failurePolicy`)."""

    operator_username: str | None = None
    """`DGD_WEBHOOK_OPERATOR_USERNAME`: the operator's own user name, e.g.
    `system:serviceaccount:dgd-system:dgd-operator`. Only it (and a planner ServiceAccount) may
    change the replicas of an adapter-managed service; unset disables that rule."""

    bind_address: str = "0.0.0.0"
    """The listening address: the operator's `DGD_BIND_ADDRESS`."""

    @property
    def is_managed(self) -> bool:
        """Whether kopf manages the ValidatingWebhookConfiguration (see `managed`)."""
        return self.managed if self.managed is not None else self.cert_dir is None


_WEBHOOK_FIELDS = (
    "enabled", "port", "host", "cert_dir", "managed", "failure_policy", "operator_username",
)  # fmt: skip
WEBHOOK_ENV = frozenset(f"DGD_WEBHOOK_{name.upper()}" for name in _WEBHOOK_FIELDS)
"""Every environment variable `webhook_settings` reads."""


def webhook_settings(
    operator_settings: object | None = None, environ: Mapping[str, str] | None = None
) -> WebhookSettings:
    """The webhook settings: `webhook_<name>` attributes of the operator's settings object when
    it has them, else the `DGD_WEBHOOK_*` variables of `environ` (default `os.environ`).

    Raises `SettingsError` naming the variable for a value the server cannot use.
    """
    env = os.environ if environ is None else environ
    missing = object()

    def raw(name: str) -> object:
        value = getattr(operator_settings, f"webhook_{name}", missing)
        if value is not missing:
            return value
        text = env.get(f"DGD_WEBHOOK_{name.upper()}")
        return None if text is None or not text.strip() else text.strip()

    def flag(name: str, default: bool | None) -> bool | None:
        value = raw(name)
        if value is None or isinstance(value, bool):
            return default if value is None else value
        lowered = str(value).lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(f"DGD_WEBHOOK_{name.upper()}: expected true or false, not {value!r}")

    def text(name: str) -> str | None:
        value = raw(name)
        return None if value is None else str(value)

    port_value = raw("port")
    try:
        port = 9443 if port_value is None else int(str(port_value))
    except ValueError:
        raise SettingsError(f"DGD_WEBHOOK_PORT: expected an integer, not {port_value!r}") from None
    if not 1 <= port <= 65535:
        raise SettingsError(f"DGD_WEBHOOK_PORT: {port} is not a TCP port")
    policy = text("failure_policy") or "Fail"
    if policy not in ("Fail", "Ignore"):
        raise SettingsError(f"DGD_WEBHOOK_FAILURE_POLICY: must be Fail or Ignore, not {policy!r}")
    bind = getattr(operator_settings, "bind_address", None) or env.get("DGD_BIND_ADDRESS")
    return WebhookSettings(
        enabled=bool(flag("enabled", False)),
        port=port,
        host=text("host"),
        cert_dir=text("cert_dir"),
        managed=flag("managed", None),
        failure_policy="Ignore" if policy == "Ignore" else "Fail",
        operator_username=text("operator_username"),
        bind_address=(bind or "0.0.0.0").strip(),
    )


# ---------------------------------------------------------------------------------------------
# Admission decisions (pure: plain documents in, problems out)


@dataclass(frozen=True)
class AdmissionPolicy:
    """Request-independent inputs of the decisions (from the webhook settings)."""

    operator_username: str | None = None
    """See `WebhookSettings.operator_username`; None disables the adapter-replicas rule."""


@dataclass
class Verdict:
    """The decision on one admission request: denied when there are errors."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        """True when the request may proceed."""
        return not self.errors


def review_dgd(
    operation: str,
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    *,
    username: str | None = None,
    policy: AdmissionPolicy | None = None,
) -> Verdict:
    """Decide a CREATE or UPDATE of a DynamoGraphDeployment (`old` is the stored object)."""
    policy = policy or AdmissionPolicy()
    if operation == "UPDATE" and _being_deleted(new):
        return Verdict()  # never block finalizer removal or other last writes
    if operation != "UPDATE" or old is None:
        result = validate_dgd(new, creating=True)
        return Verdict(list(result.errors), list(result.warnings))

    result = validate_dgd(new, creating=False)
    previous = validate_dgd(old, creating=False)
    errors = _ratchet(result.errors, previous.errors)
    warnings = _ratchet(result.warnings, previous.warnings)
    if result.dgd is not None and previous.dgd is not None:
        errors.extend(update_problems(previous.dgd, result.dgd))
        errors.extend(_adapter_replica_problems(previous.dgd, result.dgd, username, policy))
    return Verdict(_unique(errors), warnings)


def review_dgdsa(
    operation: str, new: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> Verdict:
    """Decide a CREATE or UPDATE of a DynamoGraphDeploymentScalingAdapter."""
    if operation == "UPDATE" and _being_deleted(new):
        return Verdict()
    errors = _adapter_problems(new)
    if operation == "UPDATE" and old is not None:
        errors = _ratchet(errors, _adapter_problems(old))
    return Verdict(errors)


def _being_deleted(doc: Mapping[str, Any]) -> bool:
    metadata = doc.get("metadata")
    return isinstance(metadata, Mapping) and bool(metadata.get("deletionTimestamp"))


def _ratchet(current: Iterable[Problem], stored: Iterable[Problem]) -> list[Problem]:
    """`current` minus the problems the stored object already had (same path and message)."""
    known = {(p.path, p.message) for p in stored}
    return [p for p in current if (p.path, p.message) not in known]


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            out.append(problem)
    return out


def _adapter_replica_problems(
    old: DynamoGraphDeployment,
    new: DynamoGraphDeployment,
    username: str | None,
    policy: AdmissionPolicy,
) -> Iterable[Problem]:
    """Replicas of a service with `scalingAdapter.enabled` belong to its adapter (Dynamo's rule)."""
    if policy.operator_username is None or username is None:
        return
    if username == policy.operator_username or _is_planner(username):
        return
    for name in sorted(set(old.spec.services) & set(new.spec.services)):
        before, after = old.spec.services[name], new.spec.services[name]
        managed = (
            before.scaling_adapter is not None
            and before.scaling_adapter.enabled
            and after.scaling_adapter is not None
            and after.scaling_adapter.enabled
        )
        was = 1 if before.replicas is None else before.replicas
        now = 1 if after.replicas is None else after.replicas
        if managed and was != now:
            adapter = f"{new.metadata.name}-{name.lower()}"
            yield Problem(
                f"spec.services.{name}.replicas",
                f"is managed by the DynamoGraphDeploymentScalingAdapter {adapter!r}; scale "
                f"that instead (kubectl scale dgdsa {adapter} --replicas={now})",
            )


def _is_planner(username: str) -> bool:
    parts = username.split(":")
    return (
        len(parts) == 4
        and parts[:2] == ["system", "serviceaccount"]
        and parts[3] == PLANNER_SERVICE_ACCOUNT
    )


def _adapter_problems(doc: Mapping[str, Any]) -> list[Problem]:
    try:
        DynamoGraphDeploymentScalingAdapter.model_validate(dict(doc))
    except ValidationError as exc:
        return [
            Problem(_path(error["loc"]), _adapter_message(error))
            for error in exc.errors(include_url=False)
        ]
    return []


def _adapter_message(error: Mapping[str, Any]) -> str:
    if error["type"] == "missing":
        return "required"
    if error["type"] == "string_too_short":
        return "must not be empty"
    if error["type"] == "greater_than_equal":
        return f"must be >= {error['ctx']['ge']}, got {error['input']!r}"
    return str(error["msg"])


def _path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


# ---------------------------------------------------------------------------------------------
# Messages


def rejection_message(kind: str, name: str | None, errors: Collection[Problem]) -> str:
    """One message for the kubectl user: a summary line, then one `path: message` per line."""
    count = len(errors)
    subject = f"{kind} {name!r}" if name else kind
    lines = [f"{subject} is invalid ({count} problem{'s' if count != 1 else ''}):"]
    listed = list(errors)[:MAX_LISTED_PROBLEMS]
    lines.extend(f"  {problem}" for problem in listed)
    if count > len(listed):
        lines.append(f"  ... and {count - len(listed)} more (run `dgd validate` on the file)")
    return "\n".join(lines)


def warning_text(problem: Problem) -> str:
    """An admission warning: one line, short enough that the API server keeps it."""
    text = " ".join(str(problem).split())
    if len(text) > MAX_WARNING_LENGTH:
        text = text[: MAX_WARNING_LENGTH - 3].rstrip() + "..."
    return text


# ---------------------------------------------------------------------------------------------
# kopf handlers (called by kopf with keyword arguments; tests call them directly)


def _name_of(body: Mapping[str, Any]) -> str | None:
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    # Validating admission runs after the API server generated a `generateName` name.
    name = metadata.get("name")
    return str(name) if name else None


def _decide(verdict: Verdict, kind: str, body: Mapping[str, Any], warnings: list[str]) -> None:
    warnings.extend(warning_text(p) for p in verdict.warnings)
    if verdict.errors:
        raise kopf.AdmissionError(
            rejection_message(kind, _name_of(body), verdict.errors), code=DENIED
        )


def admit_dgd(
    *,
    operation: str | None,
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    userinfo: Mapping[str, Any] | None = None,
    warnings: list[str],
    policy: AdmissionPolicy | None = None,
    **_: Any,
) -> None:
    """kopf validating handler for DGDs: raise `kopf.AdmissionError` to deny, append warnings."""
    username = (userinfo or {}).get("username")
    verdict = review_dgd(
        operation or "CREATE",
        body,
        old,
        username=str(username) if username else None,
        policy=policy,
    )
    _decide(verdict, "DynamoGraphDeployment", body, warnings)


def admit_dgdsa(
    *,
    operation: str | None,
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    warnings: list[str],
    **_: Any,
) -> None:
    """kopf validating handler for DGDSAs: raise `kopf.AdmissionError` to deny."""
    verdict = review_dgdsa(operation or "CREATE", body, old)
    _decide(verdict, "DynamoGraphDeploymentScalingAdapter", body, warnings)


def register_admission(
    registry: kopf.OperatorRegistry | None = None,
    operator_settings: object | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Add the DGD and DGDSA validating handlers to `registry` (default: kopf's global one).

    Register them only together with `configure_admission`: kopf refuses to start with
    admission handlers but no server. `labels` narrows the handlers (and a kopf-managed
    configuration's objectSelector) to objects carrying them; tests use it to stay isolated.
    """
    ws = webhook_settings(operator_settings)
    policy = AdmissionPolicy(operator_username=ws.operator_username)
    common: dict[str, Any] = {
        "operations": ["CREATE", "UPDATE"],
        "ignore_failures": ws.failure_policy == "Ignore",
        "side_effects": False,
        "registry": registry,
    }
    if labels:
        common["labels"] = dict(labels)

    def dgd_handler(**kwargs: Any) -> None:
        admit_dgd(policy=policy, **kwargs)

    def dgdsa_handler(**kwargs: Any) -> None:
        admit_dgdsa(**kwargs)

    kopf.on.validate(API_GROUP, API_VERSION, DGD_PLURAL, id=DGD_WEBHOOK_ID, **common)(dgd_handler)
    kopf.on.validate(API_GROUP, API_VERSION, DGDSA_PLURAL, id=DGDSA_WEBHOOK_ID, **common)(
        dgdsa_handler
    )


# ---------------------------------------------------------------------------------------------
# Server


class SelfSignedWebhookServer(kopf.WebhookServer):
    """kopf's HTTPS webhook server, generating its self-signed certificate with `cryptography`
    (kopf's own generator needs `certbuilder`, which we do not ship)."""

    @staticmethod
    def build_certificate(
        hostnames: Collection[str], password: str | None = None
    ) -> tuple[bytes, bytes]:
        """A self-signed certificate (its own CA) for `hostnames`; returns (cert, key) PEM."""
        return self_signed_certificate(hostnames, password)


def self_signed_certificate(
    hostnames: Collection[str], password: str | None = None, days: int = 365
) -> tuple[bytes, bytes]:
    """PEM certificate and key, self-signed, valid for every host name and IP in `hostnames`.

    The certificate is also its own CA (the webhook configuration's caBundle), as the API
    server accepts a trusted root presented as the serving certificate.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise SettingsError(
            "DGD_WEBHOOK_CERT_DIR is unset and `cryptography` is not installed: mount a "
            "certificate (tls.crt, tls.key) and set DGD_WEBHOOK_CERT_DIR, or "
            "`pip install cryptography` for a self-signed one"
        ) from None
    names: list[x509.GeneralName] = []
    common_name: str | None = None
    first_ip: str | None = None
    for host in dict.fromkeys(hostnames):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names.append(x509.DNSName(host))
            common_name = common_name or host
            continue
        if ip.is_unspecified:
            continue
        names.append(x509.IPAddress(ip))
        first_ip = first_ip or str(ip)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name or first_ip or "dgd-operator")]
    )
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def webhook_server(ws: WebhookSettings) -> kopf.WebhookServer:
    """The HTTPS server for `ws`: mounted certificate files, or a self-signed certificate."""
    common: dict[str, Any] = {"addr": ws.bind_address, "port": ws.port, "host": ws.host}
    if ws.cert_dir is None:
        return SelfSignedWebhookServer(**common)
    directory = Path(ws.cert_dir)
    for required in (CERT_FILE, KEY_FILE):
        if not (directory / required).is_file():
            raise SettingsError(f"DGD_WEBHOOK_CERT_DIR: {directory / required} does not exist")
    ca = directory / CA_FILE
    # kopf re-reads the files every minute and restarts the server when they change, so a
    # certificate rotated by cert-manager (or a re-rendered Secret) is picked up.
    return kopf.WebhookServer(
        certfile=str(directory / CERT_FILE),
        pkeyfile=str(directory / KEY_FILE),
        cafile=str(ca) if ca.is_file() else None,
        **common,
    )


def configure_admission(
    settings: kopf.OperatorSettings, operator_settings: object | None = None
) -> bool:
    """Set kopf's admission server (and managed configuration) when the webhook is enabled.

    Returns whether it is enabled; call `register_admission` exactly when it is.
    """
    ws = webhook_settings(operator_settings)
    if not ws.enabled:
        return False
    settings.admission.server = webhook_server(ws)
    settings.admission.managed = MANAGED_CONFIGURATION if ws.is_managed else None
    return True


def enable_admission(
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings,
    operator_settings: object | None = None,
) -> bool:
    """`configure_admission` plus `register_admission` when the webhook is enabled (one call
    for the runner); returns whether it is."""
    if not configure_admission(settings, operator_settings):
        return False
    register_admission(registry, operator_settings)
    return True
