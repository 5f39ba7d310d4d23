"""Which disaggregation roles a vLLM engine can take follows its KV connector (no vLLM needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dgd_runtime.engines.vllm import EXAMPLE_TRANSFER_TAG, VllmEngine, VllmEngineConfig
from dgd_runtime.protocol import ModelCard
from dgd_runtime.worker.service import card_with_role

pytestmark = pytest.mark.unit


def _engine(connector: str | None, role: str | None = None) -> VllmEngine:
    ktc = None
    if connector is not None:
        ktc = SimpleNamespace(
            kv_connector=connector,
            is_kv_producer=role in ("kv_producer", "kv_both"),
            is_kv_consumer=role in ("kv_consumer", "kv_both"),
        )
    return VllmEngine(VllmEngineConfig(SimpleNamespace(kv_transfer_config=ktc)))


@pytest.mark.parametrize(
    ("connector", "role", "tag", "accepts"),
    [
        (None, None, "", False),
        ("ExampleConnector", "kv_producer", EXAMPLE_TRANSFER_TAG, False),
        ("ExampleConnector", "kv_consumer", "", True),
        ("ExampleConnector", "kv_both", EXAMPLE_TRANSFER_TAG, True),
        # Connectors this runtime has not run (they need GPUs or RDMA) offer no hand-off.
        ("NixlConnector", "kv_both", "", False),
    ],
)
def test_transfer_tag_and_acceptance_follow_the_connector(
    connector: str | None, role: str | None, tag: str, accepts: bool
) -> None:
    engine = _engine(connector, role)
    assert engine.transfer_tag == tag
    assert engine.accepts_transfer(EXAMPLE_TRANSFER_TAG) is accepts
    assert engine.accepts_transfer("mock") is False


def test_a_prefill_worker_needs_a_producer_connector() -> None:
    card = ModelCard(name="m", model_path="/m", context_length=512, kv_block_size=32)
    with pytest.raises(ValueError, match="--kv-transfer-config"):
        card_with_role(card, _engine(None), "prefill")
    producer = card_with_role(card, _engine("ExampleConnector", "kv_producer"), "prefill")
    assert producer.extra["transfer_tag"] == EXAMPLE_TRANSFER_TAG
    assert producer.extra["worker_type"] == "prefill"
