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
            CeilingShares(ours=0.7915, dynamo=0.7203, target=0.9364),
        ),
        # The target beyond the engine itself.
        (
            500.0,
            480.0,
            590.0,
            CeilingShares(ours=0.8475, dynamo=0.8136, target=1.0576),
        ),
        # Where the frontend sets the pace, far below the ceiling.
        (
            744.0,
            409.0,
            4000.0,
            CeilingShares(ours=0.186, dynamo=0.10225, target=0.132925),
        ),
    ],
)
def test_shares_of_the_ceiling(
    ours: float, dynamo: float, ceiling: float, expected: CeilingShares
) -> None:
    got = ceiling_shares(ours, dynamo, ceiling)
    assert got.ours == pytest.approx(expected.ours, abs=1e-4)
    assert got.dynamo == pytest.approx(expected.dynamo, abs=1e-4)
    assert got.target == pytest.approx(expected.target, abs=1e-4)


def test_the_target_ratio_is_a_parameter() -> None:
    assert ceiling_shares(100.0, 100.0, 200.0, ratio=2.0).target == pytest.approx(1.0)


def test_a_ceiling_that_was_not_measured_is_refused() -> None:
    with pytest.raises(ValueError, match="ceiling must be positive"):
        ceiling_shares(100.0, 100.0, 0.0)
