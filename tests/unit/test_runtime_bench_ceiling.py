"""How `runtime_vs_dynamo.py` reads a setting against the mock engine's own ceiling: the share
each system served, and the share the req/s target (1.3x Dynamo's) would need."""

from __future__ import annotations

import pytest
from benchmarks.runtime_vs_dynamo import CeilingShares, ceiling_shares

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("ours", "dynamo", "ceiling", "expected"),
    [
        # Speedup 10, c=64 on a fast host: the target is 94% of what the engine alone does.
        (
            467.0,
            425.0,
            590.0,
            CeilingShares(ours=467 / 590, dynamo=425 / 590, target=1.3 * 425 / 590),
        ),
        # The target beyond the engine itself.
        (
            500.0,
            480.0,
            590.0,
            CeilingShares(ours=500 / 590, dynamo=480 / 590, target=1.3 * 480 / 590),
        ),
        # Where the frontend sets the pace, far below the ceiling.
        (
            744.0,
            409.0,
            4000.0,
            CeilingShares(ours=0.186, dynamo=409 / 4000, target=1.3 * 409 / 4000),
        ),
    ],
)
def test_shares_of_the_ceiling(
    ours: float, dynamo: float, ceiling: float, expected: CeilingShares
) -> None:
    got = ceiling_shares(ours, dynamo, ceiling)
    assert got.ours == pytest.approx(expected.ours)
    assert got.dynamo == pytest.approx(expected.dynamo)
    assert got.target == pytest.approx(expected.target)


def test_the_target_ratio_is_a_parameter() -> None:
    assert ceiling_shares(100.0, 100.0, 200.0, ratio=2.0).target == pytest.approx(1.0)


def test_a_ceiling_that_was_not_measured_is_refused() -> None:
    with pytest.raises(ValueError, match="ceiling must be positive"):
        ceiling_shares(100.0, 100.0, 0.0)
