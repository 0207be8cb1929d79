from __future__ import annotations

import numpy as np
import pytest

from recsae.steer.metrics import (
    concept_share,
    coverage,
    gini,
    long_tail_mask,
    long_tail_share,
    recommendation_counts,
)


def test_gini_is_zero_for_uniform_counts() -> None:
    assert gini(np.full(7, 3)) == pytest.approx(0.0)


def test_gini_is_maximal_when_one_item_takes_everything() -> None:
    n = 5
    assert gini(np.array([0, 0, 9, 0, 0])) == pytest.approx((n - 1) / n)


def test_gini_matches_the_mean_absolute_difference_formula() -> None:
    x = np.array([3, 0, 1, 0])
    by_pairs = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(by_pairs) == pytest.approx(0.625)
    assert gini(np.zeros(4)) == 0.0


def test_coverage_counts_distinct_recommended_items_over_the_catalogue() -> None:
    top = np.array([[1, 2], [2, 3]])
    assert coverage(top, n_items=6) == pytest.approx(3 / 6)
    assert recommendation_counts(top, 6).tolist() == [1, 2, 1, 0, 0, 0]


def test_long_tail_is_everything_outside_the_most_popular_share() -> None:
    pop = np.array([0, 10, 5, 1, 0, 3])  # row 0 = padding
    tail = long_tail_mask(pop, head_fraction=0.4)  # 2 head items: 1 and 2
    assert tail.tolist() == [False, False, False, True, True, True]
    top = np.array([[1, 3], [5, 2]])
    assert long_tail_share(top, tail) == pytest.approx(0.5)


def test_concept_share_is_per_user_share_of_top_items_in_the_concept() -> None:
    mask = np.array([False, True, True, False, False])
    top = np.array([[1, 2, 3], [3, 4, 1], [4, 3, 4]])
    np.testing.assert_allclose(concept_share(top, mask), [2 / 3, 1 / 3, 0.0])
