from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsae.interpret.dictionary import LatentStates, Rules
from recsae.interpret.validate import balanced_accuracy_ci, split_users, validate_rules


def test_fit_and_validation_users_never_overlap_and_the_split_is_seeded() -> None:
    users = np.repeat(np.arange(1, 501), 7)
    fit = split_users(users, 0.7, seed=3)
    assert not set(users[fit]) & set(users[~fit])
    assert len(set(users[fit])) == 350
    np.testing.assert_array_equal(fit, split_users(users, 0.7, seed=3))
    assert not np.array_equal(fit, split_users(users, 0.7, seed=4))


def test_confidence_interval_contains_the_estimate_and_narrows_with_more_rows() -> None:
    lo_small, hi_small = balanced_accuracy_ci(np.array([9.0]), np.array([10.0]), np.array([18.0]), np.array([20.0]))
    lo_big, hi_big = balanced_accuracy_ci(np.array([900.0]), np.array([1000.0]), np.array([1800.0]), np.array([2000.0]))
    assert lo_small[0] < 0.9 < hi_small[0] and lo_big[0] < 0.9 < hi_big[0]
    assert hi_big[0] - lo_big[0] < (hi_small[0] - lo_small[0]) / 5
    lo, hi = balanced_accuracy_ci(np.array([5.0]), np.array([5.0]), np.array([5.0]), np.array([5.0]))
    assert hi[0] <= 1.0 and lo[0] < 0.85  # a perfect score on 5 + 5 rows is not certain


def test_validation_counts_in_closed_form() -> None:
    # 10 rows; rule = feature 0 on rows 0-3; latent strong on rows 0-2, weak on row 4, inactive elsewhere.
    feats = sp.csr_matrix(np.r_[np.ones(4), np.zeros(6)][:, None].astype(np.float32))
    band = sp.csr_matrix(np.r_[1, 1, 1, 0, 0, 0, 0, 0, 0, 0][:, None].astype(np.float32))
    active = sp.csr_matrix(np.r_[1, 1, 1, 0, 1, 0, 0, 0, 0, 0][:, None].astype(np.float32))
    rules = Rules(np.array([0]), np.array([-1]), np.array([0]), np.zeros(1), np.zeros(1), np.zeros(1), 0)
    v = validate_rules(feats, LatentStates(band, active, active, np.ones(1)), rules)
    assert v.n_band[0] == 3 and v.n_inactive[0] == 6
    assert v.tpr[0] == 1.0 and np.isclose(v.tnr[0], 5 / 6)  # row 3: rule holds, latent inactive
    assert np.isclose(v.confidence[0], (1 + 5 / 6) / 2)
    assert np.isclose(v.precision[0], 3 / 4) and np.isclose(v.recall[0], 3 / 4)
    assert v.ci_low[0] < v.confidence[0] < v.ci_high[0]
