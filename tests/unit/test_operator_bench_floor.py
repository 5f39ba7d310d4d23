"""The floor `operator_scale.py` takes its ratios against: the floor before the operator, or the
mean of the floors before and after it (`--floor-after`), so a steady drift of the host cancels."""

from __future__ import annotations

import pytest
from benchmarks.operator_scale import PhaseResult, reference_floor

pytestmark = pytest.mark.unit


def test_without_a_floor_after_the_floor_before_is_the_reference() -> None:
    assert reference_floor(400.0, 410.0, None) == (400.0, 410.0)


@pytest.mark.parametrize(
    ("before", "after", "reference"),
    [
        # The host slowed by 10% over the run: an operator phase in the middle is compared with
        # a floor of its own hour.
        ((400.0, 410.0), (440.0, 450.0), (420.0, 430.0)),
        # The host sped up.
        ((440.0, 452.0), (400.0, 404.0), (420.0, 428.0)),
        ((400.0, 410.0), (400.0, 410.0), (400.0, 410.0)),
    ],
)
def test_with_a_floor_after_the_reference_is_the_mean_of_both(
    before: tuple[float, float], after: tuple[float, float], reference: tuple[float, float]
) -> None:
    again = PhaseResult(children_s=after[0], ready_s=after[1], apiserver={})
    assert reference_floor(*before, again) == pytest.approx(reference)
