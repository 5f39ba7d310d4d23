"""The frontend's hand-written Prometheus exposition keeps every digit of large counters."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dgd_runtime.frontend.metrics import Counter, FrontendMetrics, Histogram, format_value

pytestmark = pytest.mark.unit


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (4.0, "4"),
        (1234571.0, "1234571"),
        (12345678901.0, "12345678901"),
        (0.25, "0.25"),
        (12345678.125, "12345678.125"),
        (-3.0, "-3"),
        (2.0**60, repr(2.0**60)),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_format_value_keeps_every_digit(value: float, text: str) -> None:
    assert format_value(value) == text


def test_counter_above_ten_million_keeps_moving() -> None:
    counter = Counter("dynamo_frontend_output_tokens_total", "tokens", ("model",))
    counter.inc("m", amount=12_345_678)
    before: list[str] = []
    counter.render(before)
    counter.inc("m", amount=4)
    after: list[str] = []
    counter.render(after)
    key = ("dynamo_frontend_output_tokens_total", (("model", "m"),))
    assert _samples("".join(before))[key] == 12_345_678
    assert _samples("".join(after))[key] == 12_345_682
    assert "12345682" in "".join(after)


def test_histogram_sum_and_count_agree_with_the_inf_bucket_above_ten_million() -> None:
    hist = Histogram("dynamo_frontend_input_sequence_tokens", "isl", (1, 10), ("model",))
    hist.observe_many(110.0, 100_000, "m")  # sum 1.1e7
    hist.observe(3.0, "m")
    out: list[str] = []
    hist.render(out)
    samples = _samples("".join(out))
    labels = (("model", "m"),)
    assert samples[("dynamo_frontend_input_sequence_tokens_sum", labels)] == 11_000_003
    count = samples[("dynamo_frontend_input_sequence_tokens_count", labels)]
    inf = samples[
        ("dynamo_frontend_input_sequence_tokens_bucket", (("le", "+Inf"), ("model", "m")))
    ]
    assert count == inf == 100_001


def test_full_exposition_parses() -> None:
    metrics = FrontendMetrics()
    metrics.output_tokens.inc("m", amount=98_765_432.0)
    metrics.ttft.observe(0.123, "m")
    families = {f.name for f in text_string_to_metric_families(metrics.render().decode())}
    assert "dynamo_frontend_output_tokens" in families
    assert "dynamo_frontend_time_to_first_token_seconds" in families
