from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recsae.data.dataset import Ragged
from recsae.errors import DataError
from recsae.interpret.probing import (
    ProbeConfig,
    auc_gap,
    dense_probe,
    next_item_labels,
    probe_summary,
    sparse_probe,
)
from recsae.interpret.validate import split_users

CFG = ProbeConfig(ks=(1, 2, 5), min_positive=20)


def _rows(n_users: int = 400, per_user: int = 10, seed: int = 0) -> tuple[np.random.Generator, np.ndarray]:
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    return np.random.default_rng(seed), split_users(users, 0.7, seed=seed)


def _noise(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """Sparse non-negative noise units, like SAE latents."""
    return rng.exponential(size=(n, m)) * (rng.random((n, m)) < 0.3)


def test_a_unit_equal_to_the_label_is_chosen_at_k1_with_auc_1() -> None:
    rng, fit = _rows()
    y = rng.random((len(fit), 3)) < 0.2
    acts = _noise(rng, len(fit), 30)
    acts[:, 7] = y[:, 1]
    r = sparse_probe(sp.csr_matrix(acts), sp.csr_matrix(y.astype(np.float32)), fit, cfg=CFG)
    assert r.concepts.tolist() == [0, 1, 2]
    assert r.units[1][1].tolist() == [7]
    assert r.auc[1][1] == 1.0
    assert r.auc[5][1] > 0.999 and r.units[5].shape == (3, 5) and r.units[5][1, 0] == 7


def test_units_independent_of_the_labels_give_auc_about_half() -> None:
    rng, fit = _rows(n_users=2000)
    y = rng.random((len(fit), 4)) < 0.2
    r = sparse_probe(_noise(rng, len(fit), 40), sp.csr_matrix(y.astype(np.float32)), fit, cfg=CFG)
    for k in CFG.ks:
        assert np.all(np.abs(r.auc[k] - 0.5) < 0.05), (k, r.auc[k])


def test_auc_is_invariant_to_a_positive_scaling_of_the_units() -> None:
    rng, fit = _rows()
    y = rng.random((len(fit), 2)) < 0.3
    acts = _noise(rng, len(fit), 20) + 0.5 * y[:, :1]
    labels = sp.csr_matrix(y.astype(np.float32))
    a = sparse_probe(acts, labels, fit, cfg=CFG)
    b = sparse_probe(3.7 * acts, labels, fit, cfg=CFG)
    for k in CFG.ks:
        np.testing.assert_array_equal(a.units[k], b.units[k])
        np.testing.assert_allclose(a.auc[k], b.auc[k], atol=1e-12)
    assert a.auc[1][0] > 0.7  # the planted signal is found


def test_dense_probe_reaches_the_ceiling_when_one_dimension_is_the_label() -> None:
    rng, fit = _rows()
    y = rng.random((len(fit), 2)) < 0.25
    reps = rng.standard_normal((len(fit), 16))
    reps[:, 3] = y[:, 0] + 0.01 * rng.standard_normal(len(fit))
    r = dense_probe(reps, sp.csr_matrix(y.astype(np.float32)), fit, cfg=CFG)
    assert list(r.auc) == [16] and r.units == {}
    assert r.auc[16][0] > 0.999
    assert abs(r.auc[16][1] - 0.5) < 0.1  # no signal: near chance even with 16 dims


def test_next_item_labels_on_a_hand_made_history() -> None:
    hist = Ragged.from_lists([[], [1, 2], [3]])
    member = sp.csr_matrix(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32))
    lab = next_item_labels(np.array([1, 1, 1, 2, 2]), np.array([0, 1, 2, 0, 1]), hist, member)
    np.testing.assert_array_equal(lab.matrix.toarray(), [[1, 0], [1, 1], [0, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(lab.has_next, [True, True, False, True, False])
    assert lab.matrix.dtype == np.float32 and lab.matrix.shape == (5, 2)
    with pytest.raises(DataError):
        next_item_labels(np.array([1]), np.array([3]), hist, member)


def test_rows_without_a_label_are_left_out_with_keep() -> None:
    rng, fit = _rows()
    y = rng.random((len(fit), 1)) < 0.3
    acts = _noise(rng, len(fit), 10)
    acts[:, 2] = y[:, 0]
    keep = rng.random(len(fit)) < 0.8
    y_gone = y & keep[:, None]  # unlabelled rows look like negatives unless dropped
    r = sparse_probe(acts, sp.csr_matrix(y_gone.astype(np.float32)), fit, cfg=CFG, keep=keep)
    assert r.auc[1][0] == 1.0
    assert r.n_fit_pos[0] == (y_gone[:, 0] & fit).sum()


def test_concepts_below_min_positive_are_skipped_and_the_empty_case_has_none_means() -> None:
    rng, fit = _rows()
    y = np.zeros((len(fit), 3), dtype=bool)
    y[rng.random(len(fit)) < 0.3, 0] = True
    y[np.flatnonzero(fit)[:10], 1] = True  # 10 positives, all on the fit side
    y[rng.random(len(fit)) < 0.3, 2] = True
    labels = sp.csr_matrix(y.astype(np.float32))
    acts = _noise(rng, len(fit), 10)
    r = sparse_probe(acts, labels, fit, cfg=CFG)
    assert r.concepts.tolist() == [0, 2]
    s = probe_summary(r, ["a", "b", "c"])
    assert s["n_concepts"] == 2 and [c["concept"] for c in s["concepts"]] == ["a", "c"]
    json.dumps(s, allow_nan=False)

    empty = sparse_probe(acts, labels, fit, np.array([1]), cfg=CFG)
    assert len(empty.concepts) == 0 and empty.units[5].shape == (0, 5)
    s = probe_summary(empty, ["a", "b", "c"])
    assert s["n_concepts"] == 0 and s["concepts"] == []
    assert all(b["mean_auc"] is None and b["ci_low"] is None for b in s["by_k"])
    json.dumps(s, allow_nan=False)
    gap = auc_gap(empty, r, 1)
    assert gap["n_concepts"] == 0 and gap["mean_diff"] is None
    assert dense_probe(acts, labels, fit, np.array([1]), cfg=CFG).auc[10].shape == (0,)


def test_sparse_and_dense_inputs_give_identical_results() -> None:
    rng, fit = _rows()
    y = rng.random((len(fit), 3)) < 0.2
    acts = (_noise(rng, len(fit), 25) + 0.3 * y[:, [0, 1, 2, 0, 1]].repeat(5, axis=1)).astype(np.float32)
    labels = sp.csr_matrix(y.astype(np.float32))
    a = sparse_probe(acts, labels, fit, cfg=CFG)
    b = sparse_probe(sp.csr_matrix(acts), labels, fit, cfg=CFG)
    np.testing.assert_array_equal(a.concepts, b.concepts)
    for k in CFG.ks:
        np.testing.assert_array_equal(a.units[k], b.units[k])
        np.testing.assert_array_equal(a.auc[k], b.auc[k])


def test_auc_gap_of_a_result_with_itself_is_zero_with_zero_width() -> None:
    rng, fit = _rows()
    y = rng.random((len(fit), 3)) < 0.2
    acts = _noise(rng, len(fit), 20) + 0.4 * y[:, [0]]
    r = sparse_probe(acts, sp.csr_matrix(y.astype(np.float32)), fit, cfg=CFG)
    gap = auc_gap(r, r, 2)
    assert gap["n_concepts"] == 3 and gap["mean_diff"] == 0.0
    assert gap["ci_low"] == 0.0 and gap["ci_high"] == 0.0
    ceiling = dense_probe(acts, sp.csr_matrix(y.astype(np.float32)), fit, cfg=CFG)
    vs_ceiling = auc_gap(r, ceiling, 1, k_b=20)
    assert vs_ceiling["n_concepts"] == 3 and vs_ceiling["ci_low"] <= vs_ceiling["mean_diff"] <= vs_ceiling["ci_high"]
    with pytest.raises(Exception, match="no AUC"):
        auc_gap(r, r, 3)


def test_row_sample_is_seeded_and_bounded() -> None:
    rng, fit = _rows()
    y = rng.random((len(fit), 1)) < 0.3
    acts = _noise(rng, len(fit), 10) + 0.5 * y
    cfg = ProbeConfig(ks=(1,), min_positive=20, max_rows=1500)
    a = sparse_probe(acts, sp.csr_matrix(y.astype(np.float32)), fit, cfg=cfg)
    b = sparse_probe(acts, sp.csr_matrix(y.astype(np.float32)), fit, cfg=cfg)
    assert a.n_fit_pos[0] + a.n_eval_pos[0] < y.sum() * 0.5
    np.testing.assert_array_equal(a.auc[1], b.auc[1])


def test_the_memory_budget_changes_the_blocks_of_concepts_never_the_figures() -> None:
    rng, fit = _rows()
    y = rng.random((len(fit), 12)) < 0.2
    acts = (_noise(rng, len(fit), 30) + 0.3 * np.tile(y, 3)[:, :30]).astype(np.float32)
    labels = sp.csr_matrix(y.astype(np.float32))
    whole = sparse_probe(acts, labels, fit, cfg=CFG)
    per_concept = sparse_probe(acts, labels, fit, cfg=CFG, max_entries=1.0)  # one concept per block
    assert len(whole.concepts) == 12
    for k in CFG.ks:
        np.testing.assert_array_equal(whole.units[k], per_concept.units[k])
        np.testing.assert_array_equal(whole.auc[k], per_concept.auc[k])
