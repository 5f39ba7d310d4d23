"""The admission webhook (`dgd_operator.admission`): decisions, kopf handlers and server.

The handlers are called directly with the keyword arguments kopf passes (`operation`, `body`,
`old`, `userinfo`, `warnings`); denials are `kopf.AdmissionError`s whose message the API server
shows to the kubectl user. The same handlers behind a real API server are exercised in
tests/integration/test_admission_webhook.py. The webhook's settings are tested with the others
in test_settings.py.
"""

from __future__ import annotations

import copy
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from tests import peer_corpus
from tests.fixtures.catalog import graph_paths
from tests.fixtures.dgd import DGD

from dgd_operator import certs
from dgd_operator.admission import enable_admission, handlers, messages, server
from dgd_operator.admission.review import AdmissionPolicy
from dgd_operator.api.validation import Problem
from dgd_operator.settings import OperatorSettings, SettingsError, WebhookSettings

pytestmark = pytest.mark.unit

Doc = dict[str, Any]
OPERATOR_USER = "system:serviceaccount:dgd-system:dgd-operator"


def base_dgd() -> Doc:
    """A small valid disaggregated graph."""
    graph = DGD("demo", namespace="team-a").backend("vllm").frontend().worker("decode").gpus(1)
    return graph.engine("vllm").build()


def changed(doc: Doc, mutate: Callable[[Doc], object]) -> Doc:
    """A deep copy of `doc` with `mutate` applied."""
    out = copy.deepcopy(doc)
    mutate(out)
    return out


def admit(
    operation: str,
    body: Doc,
    old: Doc | None = None,
    *,
    username: str = "alice",
    policy: AdmissionPolicy | None = None,
) -> list[str]:
    """Call the DGD handler as kopf does; return the warnings it added."""
    warnings: list[str] = []
    handlers.admit_dgd(
        operation=operation,
        body=body,
        old=old,
        userinfo={"username": username, "groups": ["system:authenticated"]},
        warnings=warnings,
        policy=policy,
        dryrun=False,
        subresource=None,
    )
    return warnings


def denied(operation: str, body: Doc, old: Doc | None = None, **kwargs: Any) -> str:
    """Call the DGD handler expecting a denial; return its message."""
    with pytest.raises(kopf.AdmissionError) as info:
        admit(operation, body, old, **kwargs)
    assert info.value.code == 403
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# CREATE


def test_valid_create_is_admitted_with_deprecation_warnings() -> None:
    doc = changed(
        base_dgd(), lambda d: d["spec"]["services"]["Frontend"].update(dynamoNamespace="x")
    )
    warnings = admit("CREATE", doc)
    assert len(warnings) == 1
    assert warnings[0].startswith("spec.services.Frontend.dynamoNamespace: deprecated and ignored")


def test_clean_create_has_no_warnings() -> None:
    assert admit("CREATE", base_dgd()) == []


def test_invalid_create_lists_every_problem_with_its_path() -> None:
    doc = changed(
        base_dgd(),
        lambda d: (
            d["metadata"].update(
                annotations={"nvidia.com/vllm-distributed-executor-backend": "foo"}
            ),
            d["spec"]["services"]["decode"]["resources"]["limits"].update(gpu="0.5"),
        ),
    )
    message = denied("CREATE", doc)
    lines = message.splitlines()
    assert lines[0] == "DynamoGraphDeployment 'demo' is invalid (2 problems):"
    assert (
        "  spec.services.decode.resources.limits.gpu: GPUs must be a whole number, got '0.5'"
        in lines
    )
    assert any(
        line.startswith("  metadata.annotations[nvidia.com/vllm-distributed-executor-backend]: ")
        and "'mp' or 'ray'" in line
        for line in lines
    ), lines


def test_restart_is_refused_at_create_but_allowed_on_update() -> None:
    with_restart = changed(base_dgd(), lambda d: d["spec"].update(restart={"id": "r1"}))
    assert "spec.restart" in denied("CREATE", with_restart)
    admit("UPDATE", with_restart, base_dgd())


@pytest.mark.parametrize(
    "path", [*graph_paths(), *peer_corpus.cases(peer_corpus.v1alpha1_example_paths())], ids=lambda p: p.stem
)
def test_every_graph_and_dynamo_example_is_admitted_on_create_and_update(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "DynamoGraphDeployment":
            doc.setdefault("metadata", {}).setdefault("namespace", "team-a")
            admit("CREATE", doc)
            bumped = changed(doc, lambda d: d["metadata"].setdefault("labels", {}).update(x="y"))
            admit("UPDATE", bumped, doc)


def test_long_problem_lists_are_cut() -> None:
    problems = [Problem(f"spec.x{i}", "bad") for i in range(40)]
    message = messages.rejection_message("DynamoGraphDeployment", "g", problems)
    lines = message.splitlines()
    assert len(lines) == 1 + messages.MAX_LISTED_PROBLEMS + 1
    assert lines[-1] == "  ... and 15 more (run `dgd validate` on the file)"


def test_warnings_are_single_short_lines() -> None:
    text = messages.warning_text(Problem("spec.a", "line one\nline two " + "x" * 400))
    assert "\n" not in text
    assert len(text) == messages.MAX_WARNING_LENGTH and text.endswith("...")
    assert text.startswith("spec.a: line one line two x")


# ---------------------------------------------------------------------------------------------
# UPDATE


def test_update_adding_a_service_is_refused_as_dynamo_does() -> None:
    old = base_dgd()
    new = changed(
        old,
        lambda d: d["spec"]["services"].update(
            prefill=copy.deepcopy(d["spec"]["services"]["decode"])
        ),
    )
    message = denied("UPDATE", new, old)
    assert (
        "spec.services: service topology is immutable and cannot be modified after creation: "
        "services added: [prefill]"
    ) in message


def test_update_changing_backend_framework_is_refused() -> None:
    old = base_dgd()

    def to_sglang(doc: dict[str, Any]) -> None:
        # A consistent graph (the worker command names the new framework too), so the only
        # problem left is the immutability rule.
        doc["spec"]["backendFramework"] = "sglang"
        main = doc["spec"]["services"]["decode"]["extraPodSpec"]["mainContainer"]
        main["command"] = [c.replace("dynamo.vllm", "dynamo.sglang") for c in main["command"]]

    new = changed(old, to_sglang)
    assert "spec.backendFramework: is immutable (was 'vllm', now 'sglang')" in denied(
        "UPDATE", new, old
    )


def test_update_flipping_to_multinode_is_refused() -> None:
    old = base_dgd()
    new = changed(old, lambda d: d["spec"]["services"]["decode"].update(multinode={"nodeCount": 2}))
    message = denied("UPDATE", new, old)
    assert "spec.services.decode.multinode: cannot change from single-node to multinode" in message


def test_update_of_replicas_and_image_is_admitted() -> None:
    old = base_dgd()
    new = changed(old, lambda d: d["spec"]["services"]["decode"].update(replicas=3))
    assert admit("UPDATE", new, old) == []


def test_restart_id_is_frozen_during_a_rolling_update() -> None:
    old = changed(
        base_dgd(),
        lambda d: (
            d["spec"].update(restart={"id": "r1"}),
            d.update(status={"rollingUpdate": {"phase": "InProgress"}}),
        ),
    )
    new = changed(old, lambda d: d["spec"].update(restart={"id": "r2"}))
    assert "spec.restart.id: cannot change while a rolling update is InProgress" in denied(
        "UPDATE", new, old
    )
    done = changed(old, lambda d: d["status"]["rollingUpdate"].update(phase="Completed"))
    admit("UPDATE", changed(new, lambda d: d.update(status=done["status"])), done)


def test_problems_the_stored_object_already_had_do_not_block_other_changes() -> None:
    # Stored before the webhook existed, with an annotation the webhook refuses.
    old = changed(
        base_dgd(),
        lambda d: d["metadata"].update(
            annotations={"nvidia.com/vllm-distributed-executor-backend": "foo"}
        ),
    )
    relabelled = changed(old, lambda d: d["metadata"].update(labels={"team": "a"}))
    admit("UPDATE", relabelled, old)
    # A new problem is still refused, and only the new one is listed.
    worse = changed(relabelled, lambda d: d["spec"]["services"]["decode"].update(replicas=-1))
    message = denied("UPDATE", worse, old)
    assert "(1 problem)" in message and "spec.services.decode.replicas" in message


def test_an_object_being_deleted_is_always_admitted() -> None:
    old = base_dgd()
    new = changed(
        old,
        lambda d: (
            d["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z", finalizers=[]),
            d["spec"].update(backendFramework="sglang"),
        ),
    )
    admit("UPDATE", new, old)


def _adapter_managed() -> Doc:
    return changed(
        base_dgd(),
        lambda d: d["spec"]["services"]["decode"].update(scalingAdapter={"enabled": True}),
    )


@pytest.mark.parametrize(
    ("username", "allowed"),
    [
        pytest.param("alice", False, id="user"),
        pytest.param(OPERATOR_USER, True, id="operator"),
        pytest.param("system:serviceaccount:team-a:planner-serviceaccount", True, id="planner"),
        pytest.param("system:serviceaccount:team-a:other", False, id="other-sa"),
    ],
)
def test_adapter_managed_replicas_belong_to_the_adapter(username: str, allowed: bool) -> None:
    policy = AdmissionPolicy(operator_username=OPERATOR_USER)
    old = _adapter_managed()
    new = changed(old, lambda d: d["spec"]["services"]["decode"].update(replicas=4))
    if allowed:
        admit("UPDATE", new, old, username=username, policy=policy)
    else:
        message = denied("UPDATE", new, old, username=username, policy=policy)
        assert (
            "spec.services.decode.replicas: is managed by the DynamoGraphDeploymentScalingAdapter "
            "'demo-decode'; scale that instead (kubectl scale dgdsa demo-decode --replicas=4)"
        ) in message


def test_adapter_rule_is_off_without_the_operator_identity() -> None:
    old = _adapter_managed()
    new = changed(old, lambda d: d["spec"]["services"]["decode"].update(replicas=4))
    admit("UPDATE", new, old, username="alice", policy=AdmissionPolicy())


def test_enabling_the_adapter_and_changing_replicas_together_is_allowed() -> None:
    policy = AdmissionPolicy(operator_username=OPERATOR_USER)
    old = base_dgd()
    new = changed(_adapter_managed(), lambda d: d["spec"]["services"]["decode"].update(replicas=2))
    admit("UPDATE", new, old, username="alice", policy=policy)


# ---------------------------------------------------------------------------------------------
# DGDSA


def base_dgdsa() -> Doc:
    """A valid scaling adapter."""
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": "demo-decode", "namespace": "team-a"},
        "spec": {"replicas": 2, "dgdRef": {"name": "demo", "serviceName": "decode"}},
    }


def admit_adapter(operation: str, body: Doc, old: Doc | None = None) -> None:
    """Call the DGDSA handler as kopf does."""
    handlers.admit_dgdsa(operation=operation, body=body, old=old, warnings=[], userinfo={})


def test_valid_adapter_is_admitted() -> None:
    admit_adapter("CREATE", base_dgdsa())
    scaled = changed(base_dgdsa(), lambda d: d["spec"].update(replicas=0))
    admit_adapter("UPDATE", scaled, base_dgdsa())


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda d: d["spec"].update(replicas=-1),
            "spec.replicas: must be >= 0, got -1",
            id="negative-replicas",
        ),
        pytest.param(
            lambda d: d["spec"]["dgdRef"].pop("name"), "spec.dgdRef.name: required", id="no-name"
        ),
        pytest.param(
            lambda d: d["spec"]["dgdRef"].update(name=""),
            "spec.dgdRef.name: must not be empty",
            id="empty-name",
        ),
        pytest.param(lambda d: d["spec"].pop("dgdRef"), "spec.dgdRef: required", id="no-ref"),
    ],
)
def test_invalid_adapter_is_refused_naming_the_field(
    mutate: Callable[[Doc], object], expected: str
) -> None:
    with pytest.raises(kopf.AdmissionError) as info:
        admit_adapter("CREATE", changed(base_dgdsa(), mutate))
    message = str(info.value)
    assert message.startswith("DynamoGraphDeploymentScalingAdapter 'demo-decode' is invalid")
    assert f"  {expected}" in message.splitlines()


# ---------------------------------------------------------------------------------------------
# Settings, registration, server


def _enabled(**webhook: Any) -> OperatorSettings:
    return OperatorSettings(
        bind_address="127.0.0.1", webhook=WebhookSettings(enabled=True, **webhook)
    )


def test_disabled_webhook_configures_nothing() -> None:
    settings = kopf.OperatorSettings()
    registry = kopf.OperatorRegistry()
    assert enable_admission(registry, settings, OperatorSettings()) is False
    assert settings.admission.server is None and settings.admission.managed is None
    assert registry._webhooks.get_all_handlers() == []


def test_self_signed_local_webhook_is_kopf_managed() -> None:
    settings = kopf.OperatorSettings()
    registry = kopf.OperatorRegistry()
    assert enable_admission(registry, settings, _enabled(failure_policy="Ignore"))
    webhook_server = settings.admission.server
    assert isinstance(webhook_server, server.SelfSignedWebhookServer)
    assert (webhook_server.addr, webhook_server.port, webhook_server.certfile) == (
        "127.0.0.1",
        9443,
        None,
    )
    assert settings.admission.managed == "dgd-operator.nvidia.com"
    registered = {h.id: h for h in registry._webhooks.get_all_handlers()}
    assert set(registered) == {"validate-dgd", "validate-dgdsa"}
    for handler in registered.values():
        assert set(handler.operations or ()) == {"CREATE", "UPDATE"}
        assert handler.ignore_failures is True
        assert not handler.side_effects


def test_mounted_certificate_is_served_and_not_managed(tmp_path: Path) -> None:
    issued = certs.serving_certificate(["dgd-operator-webhook.dgd-system.svc"], days=1)
    issued.write(tmp_path / "tls.crt", tmp_path / "tls.key")
    (tmp_path / "ca.crt").write_bytes(issued.cert_pem())
    settings = kopf.OperatorSettings()
    assert server.configure_admission(settings, _enabled(cert_dir=str(tmp_path)))
    webhook_server = settings.admission.server
    assert type(webhook_server) is kopf.WebhookServer
    assert webhook_server.certfile == str(tmp_path / "tls.crt")
    assert webhook_server.pkeyfile == str(tmp_path / "tls.key")
    assert webhook_server.cafile == str(tmp_path / "ca.crt")
    assert settings.admission.managed is None
    managed = _enabled(cert_dir=str(tmp_path), managed=True)
    assert server.configure_admission(settings, managed)
    assert settings.admission.managed == "dgd-operator.nvidia.com"


def test_missing_certificate_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"DGD_WEBHOOK_CERT_DIR: .*tls\.crt does not exist"):
        server.webhook_server(_enabled(cert_dir=str(tmp_path)))


def test_registration_labels_narrow_the_handlers() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register_admission(
        registry, OperatorSettings(), labels={"dgd.dev/webhook-test": "ns1"}
    )
    for handler in registry._webhooks.get_all_handlers():
        assert handler.labels == {"dgd.dev/webhook-test": "ns1"}


def test_self_signed_certificate_is_its_own_ca_for_every_name(tmp_path: Path) -> None:
    from cryptography import x509

    cert_pem, key_pem = server.SelfSignedWebhookServer.build_certificate(
        ["localhost", "127.0.0.1", "0.0.0.0"]
    )
    cert = x509.load_pem_x509_certificate(cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The pair loads into a server context, and the certificate verifies itself as a CA.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (tmp_path / "c").write_bytes(cert_pem)
    (tmp_path / "k").write_bytes(key_pem)
    context.load_cert_chain(tmp_path / "c", tmp_path / "k")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    assert client.get_ca_certs()[0]["subject"] == ((("commonName", "localhost"),),)


# ---------------------------------------------------------------------------------------------
# Topology admission: the webhook refuses layouts the GPUs cannot hold, in every flag spelling.


def _worker(
    framework: str, args: list[str], *, gpus: str = "8", nodes: int | None = None
) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["spec"]["backendFramework"] = framework
        decode = doc["spec"]["services"]["decode"]
        decode["resources"] = {"limits": {"gpu": gpus}}
        decode["extraPodSpec"]["mainContainer"]["command"] = [
            "python3",
            "-m",
            f"dynamo.{framework}",
        ]
        decode["extraPodSpec"]["mainContainer"]["args"] = args
        if nodes:
            decode["multinode"] = {"nodeCount": nodes}

    return mutate


TOPOLOGY_REFUSED = [
    ("vllm-tp-spaced", _worker("vllm", ["--tensor-parallel-size", "16"]), "16"),
    ("vllm-tp-equals", _worker("vllm", ["--tensor-parallel-size=16"]), "16"),
    ("vllm-tp-short", _worker("vllm", ["-tp", "16"]), "16"),
    ("vllm-tp-times-pp", _worker("vllm", ["--tensor-parallel-size", "4", "-pp", "4"]), "16"),
    ("sglang-tp-size-over-nodes", _worker("sglang", ["--tp-size", "32"], gpus="4", nodes=2), "32"),
    ("trtllm-tp", _worker("trtllm", ["--tensor-parallel-size", "16"]), "16"),
]
TOPOLOGY_ADMITTED = [
    ("vllm-tp-fits", _worker("vllm", ["--tensor-parallel-size", "8"])),
    ("vllm-dp-over-nodes", _worker("vllm", ["--data-parallel-size", "16"], nodes=2)),
    ("sglang-tp-size-over-nodes", _worker("sglang", ["--tp-size", "8"], gpus="4", nodes=2)),
]


@pytest.mark.parametrize(
    ("mutate", "number"),
    [case[1:] for case in TOPOLOGY_REFUSED],
    ids=[case[0] for case in TOPOLOGY_REFUSED],
)
def test_impossible_topology_is_refused_at_admission(
    mutate: Callable[[Doc], None], number: str
) -> None:
    message = denied("CREATE", changed(base_dgd(), mutate))
    assert "spec.services.decode" in message
    assert number in message


@pytest.mark.parametrize(
    "mutate", [case[1] for case in TOPOLOGY_ADMITTED], ids=[case[0] for case in TOPOLOGY_ADMITTED]
)
def test_possible_topology_is_admitted(mutate: Callable[[Doc], None]) -> None:
    admit("CREATE", changed(base_dgd(), mutate))
