from __future__ import annotations

import json

import numpy as np

from recsae.interpret.stability import match_dictionaries, stability_summary


def _dict(m: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((m, d))


def test_a_row_permuted_copy_matches_fully_and_the_partner_is_the_inverse_permutation() -> None:
    a = _dict(128, 32, 0)
    perm = np.random.default_rng(1).permutation(128)
    b = 2.5 * a[perm]  # scale does not matter: rows are normalised
    m = match_dictionaries(a, b)
    assert m.share == 1.0 and m.n_matched == m.n == 128
    np.testing.assert_array_equal(m.partner, np.argsort(perm))
    np.testing.assert_allclose(m.cosines, 1.0)


def test_independent_random_dictionaries_match_almost_nothing() -> None:
    m = match_dictionaries(_dict(512, 64, 0), _dict(512, 64, 1), threshold=0.7)
    assert m.share <= 0.01
    assert np.all(m.partner >= 0) and len(np.unique(m.partner)) == 512  # still one-to-one


def test_a_copy_with_small_noise_matches_fully() -> None:
    a = _dict(256, 64, 0)
    b = a + 0.05 * _dict(256, 64, 2)
    m = match_dictionaries(a, b)
    assert m.share == 1.0
    np.testing.assert_array_equal(m.partner, np.arange(256))


def test_threshold_boundary_is_inclusive() -> None:
    a = np.array([[1.0, 0.0]])
    b = np.array([[3.0, 4.0]])  # cosine exactly 0.6
    assert match_dictionaries(a, b, threshold=0.6).n_matched == 1
    assert match_dictionaries(a, b, threshold=float(np.nextafter(0.6, 1.0))).n_matched == 0
    assert match_dictionaries(a, -b, threshold=-0.7).n_matched == 1  # cosines are signed: -0.6
    assert match_dictionaries(a, -b, threshold=0.0).n_matched == 0


def test_alive_masks_exclude_dead_latents_on_both_sides() -> None:
    a = _dict(10, 16, 0)
    b = a.copy()
    alive_a = np.ones(10, dtype=bool)
    alive_a[[2, 5]] = False
    alive_b = np.ones(10, dtype=bool)
    alive_b[7] = False  # A's latent 7 loses its twin
    m = match_dictionaries(a, b, alive_a=alive_a, alive_b=alive_b)
    assert m.n == 8 and m.n_matched == 7 and m.share == 7 / 8
    assert m.partner[2] == -1 and m.partner[5] == -1 and np.isnan(m.cosines[2])
    assert 7 not in m.partner.tolist() and m.partner[7] in (2, 5)  # a free B latent, not a twin
    assert m.cosines[7] < 0.7


def test_zero_rows_never_match() -> None:
    a = _dict(4, 8, 0)
    a[1] = 0.0
    m = match_dictionaries(a, a.copy(), threshold=-1.0)
    assert m.n == 4 and m.n_matched == 3 and m.partner[1] == -1


def test_rectangular_dictionaries() -> None:
    a = _dict(20, 16, 0)
    wide = np.vstack([_dict(30, 16, 1), a])  # B holds A's rows after 30 others
    m = match_dictionaries(a, wide)
    assert m.share == 1.0
    np.testing.assert_array_equal(m.partner, np.arange(30, 50))
    narrow = match_dictionaries(wide, a)  # only 20 of A's 50 rows can get a partner
    assert narrow.n == 50 and narrow.n_matched == 20 and (narrow.partner >= 0).sum() == 20
    np.testing.assert_array_equal(narrow.partner[30:], np.arange(20))


def test_summary_is_json_ready_without_nan() -> None:
    a = _dict(64, 16, 0)
    trained = match_dictionaries(a, a + 0.01 * _dict(64, 16, 1))
    floor = match_dictionaries(_dict(64, 16, 2), _dict(64, 16, 3))
    s = stability_summary(trained, floor)
    assert s["trained"]["share"] == 1.0 and s["share_above_floor"] > 0.5
    empty = match_dictionaries(a, a, alive_a=np.zeros(64, dtype=bool))
    s = stability_summary(empty, floor)
    assert s["trained"]["share"] is None and s["share_above_floor"] is None
    json.dumps(s, allow_nan=False)
