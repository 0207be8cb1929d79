from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsae.data.dataset import Ragged
from recsae.errors import ConfigError
from recsae.interpret.faithfulness import (
    FaithConfig,
    UnitEdits,
    benjamini_hochberg,
    causal_faithfulness,
    faithful_summary,
)

N_ITEMS, D, ROWS = 200, 16, 400


class World:
    """Items 1..40 form concept 0 (embeddings share a direction v), items 41..80 concept 1
    (direction u ⟂ v), the rest are random; rows are random representations with empty prefixes."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        basis = np.linalg.qr(rng.normal(size=(D, D)))[0]
        self.v, self.u = basis[:, 0], basis[:, 1]
        emb = rng.normal(size=(N_ITEMS + 1, D)) * 0.3
        emb[1:41] += 2.0 * self.v
        emb[41:81] += 2.0 * self.u
        self.emb = torch.from_numpy(emb.astype(np.float32))
        self.reps = rng.normal(size=(ROWS, D)).astype(np.float32)
        member = np.zeros((N_ITEMS + 1, 2), dtype=np.float32)
        member[1:41, 0] = 1
        member[41:81, 1] = 1
        self.membership = sp.csr_matrix(member)
        self.users = np.arange(ROWS, dtype=np.int64)
        self.positions = np.zeros(ROWS, dtype=np.int64)
        self.histories = Ragged.from_lists([[] for _ in range(ROWS)])
        self.rng = rng

    def score(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.emb.T

    def run(self, directions: np.ndarray, coef: np.ndarray, concept: np.ndarray, cfg: FaithConfig | None = None):
        edits = UnitEdits(sp.csr_matrix(coef), directions.astype(np.float32))
        return causal_faithfulness(
            self.score, self.reps, edits, concept, np.ones(len(directions), dtype=bool),
            np.ones(ROWS, dtype=bool), self.users, self.positions, self.histories, self.membership,
            ["genre", "genre"], ["value", "value"], cfg or FaithConfig(rows_per_unit=40, min_rows=10),
        )


def random_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, D))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_unit_along_its_concepts_item_direction_is_faithful_and_an_unrelated_direction_is_not() -> None:
    w = World()
    others = random_directions(w.rng, 6)
    unrelated = random_directions(w.rng, 1)[0]
    unrelated -= (unrelated @ w.v) * w.v  # no component along the concept's items
    directions = np.vstack([w.v, unrelated / np.linalg.norm(unrelated), others])
    coef = np.abs(w.rng.normal(size=(ROWS, len(directions)))) + 0.5  # every unit fires on every row
    concept = np.array([0, 0] + [-1] * 6)  # unit 0 and the random unit 1 both claim concept 0
    res = w.run(directions, coef, concept)
    assert res.tested[:2].all() and not res.tested[2:].any()
    assert res.faithful[0] and res.effect[0] > 0 and res.ci_low[0] > 0
    assert res.swing[0] > 0 and res.amplify_share_rise[0] > 0 and res.ablate_share_drop[0] >= 0
    assert not res.faithful[1]
    assert res.q_value[0] <= 0.05
    # the concept unit moves its own concept far more than concept 1 (orthogonal items)
    assert res.selectivity[0] > 0.5 * res.swing[0]


def test_a_unit_that_pushes_its_concept_down_is_not_faithful() -> None:
    w = World(1)
    directions = np.vstack([-w.v, random_directions(w.rng, 5)])
    coef = np.abs(w.rng.normal(size=(ROWS, len(directions)))) + 0.5
    res = w.run(directions, coef, np.array([0, -1, -1, -1, -1, -1]))
    assert res.tested[0] and res.effect[0] < 0 and not res.faithful[0]


def test_units_without_enough_firing_rows_or_a_control_are_not_tested() -> None:
    w = World(2)
    directions = np.vstack([w.v, w.u])
    coef = np.zeros((ROWS, 2))
    coef[:5, 0] = 1.0  # fires on 5 rows: below min_rows
    coef[:, 1] = 1.0  # fires alone on most rows: no control there
    coef[:5, 1] = 1.0
    res = w.run(directions, coef, np.array([0, 1]))
    assert not res.tested.any() and not res.faithful.any()
    assert np.isnan(res.effect).all() and np.isnan(res.p_value).all()


def test_results_are_deterministic_given_the_seed_and_do_not_depend_on_the_batch_size() -> None:
    w = World(3)
    directions = np.vstack([w.v, w.u, random_directions(w.rng, 4)])
    coef = np.abs(w.rng.normal(size=(ROWS, 6))) + 0.5
    concept = np.array([0, 1, 0, 1, -1, -1])
    a = w.run(directions, coef, concept, FaithConfig(rows_per_unit=30, min_rows=10, batch_rows=7))
    b = w.run(directions, coef, concept, FaithConfig(rows_per_unit=30, min_rows=10, batch_rows=1000))
    np.testing.assert_allclose(a.effect, b.effect, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(a.faithful, b.faithful)
    assert a.faithful[0] and a.faithful[1]


def test_masked_prefix_items_never_count_in_the_share_or_the_rank() -> None:
    w = World(4)
    # every row's prefix holds all of concept 0's items: nothing of it can be recommended
    w.positions = np.full(ROWS, 40, dtype=np.int64)
    w.histories = Ragged.from_lists([list(range(1, 41)) for _ in range(ROWS)])
    directions = np.vstack([w.v, random_directions(w.rng, 4)])
    coef = np.abs(w.rng.normal(size=(ROWS, 5))) + 0.5
    res = w.run(directions, coef, np.array([0, -1, -1, -1, -1]))
    assert not res.tested[0] and not res.faithful[0]  # no ranked item of the concept: no read


def test_benjamini_hochberg_controls_false_discoveries_on_a_planted_mix() -> None:
    rng = np.random.default_rng(0)
    n_true, n_null = 200, 800
    p = np.concatenate([rng.uniform(0, 1e-4, n_true), rng.uniform(0, 1, n_null)])
    rejected, q = benjamini_hochberg(p, 0.05)
    assert rejected[:n_true].all()
    false = rejected[n_true:].sum()
    assert false / max(rejected.sum(), 1) <= 0.05
    # closed form: sorted q = min over later ranks of p * n / rank, capped at 1, monotone in p
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= -1e-15)
    assert np.isclose(q[order][-1], min(p[order][-1], 1.0))


def test_benjamini_hochberg_skips_nan_and_matches_a_hand_computed_case() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.2])
    rejected, q = benjamini_hochberg(p, 0.05)
    # n = 4 valid: sorted p 0.01, 0.03, 0.04, 0.2 -> p*n/rank 0.04, 0.06, 0.0533, 0.2 -> q 0.04, 0.0533, 0.0533, 0.2
    np.testing.assert_allclose(q[[0, 3, 2, 4]], [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert np.isnan(q[1]) and not rejected[1]
    assert rejected.tolist() == [True, False, False, False, False]


def test_summary_counts_faithful_units_among_the_alive_ones() -> None:
    w = World(5)
    directions = np.vstack([w.v, random_directions(w.rng, 3)])
    coef = np.abs(w.rng.normal(size=(ROWS, 4))) + 0.5
    res = w.run(directions, coef, np.array([0, 0, -1, -1]))
    s = faithful_summary(res, np.ones(4, dtype=bool), np.array([True, True, False, False]))
    assert s["n"] == int(res.faithful.sum()) and s["n_tested"] == 2
    assert s["share"] == s["n"] / 4 and s["share_of_interpretable"] == s["n"] / 2


@pytest.mark.parametrize("bad", [{"scales": (1.0,)}, {"scales": ()}, {"fdr": 0.0}, {"min_rows": 1}, {"min_rows": 30, "rows_per_unit": 20}])
def test_invalid_configs_are_refused(bad: dict) -> None:
    with pytest.raises(ConfigError):
        FaithConfig(**bad)
