"""The synthetic dataset: deterministic, consistent, and carrying the structure it promises
(overlapping named concepts, sparse drifting preferences, popularity skew, sequential signal)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from recsae.data.synthetic import (
    GROUND_TRUTH_FILE,
    SyntheticConfig,
    SyntheticData,
    generate_synthetic,
    write_ground_truth,
)
from recsae.errors import ConfigError

SMALL = SyntheticConfig(
    seed=3, n_users=300, n_items=300, n_concepts=10, min_seq_len=20, max_seq_len=40
)


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate_synthetic(SMALL)


def _concept_matrix(data: SyntheticData) -> np.ndarray:
    """(n_items + 1) x n_concepts bool: item carries concept."""
    m = np.zeros((data.dataset.n_items + 1, len(data.concept_names)), dtype=bool)
    ic = data.item_concepts
    m[ic.row_ids(), ic.values] = True
    return m


def test_same_seed_gives_identical_arrays(data: SyntheticData) -> None:
    again = generate_synthetic(SMALL)
    for name in ("user", "item", "time", "user_ids", "item_ids"):
        assert getattr(again.dataset, name).tobytes() == getattr(data.dataset, name).tobytes()
    assert again.item_concepts.values.tobytes() == data.item_concepts.values.tobytes()
    assert again.user_weights.tobytes() == data.user_weights.tobytes()
    assert again.dataset.item_meta.title == data.dataset.item_meta.title


def test_different_seed_gives_different_data(data: SyntheticData) -> None:
    other = generate_synthetic(replace(SMALL, seed=4))
    assert not np.array_equal(other.dataset.item, data.dataset.item)
    assert not np.array_equal(other.user_weights, data.user_weights)


def test_sizes_ids_and_info_follow_the_config(data: SyntheticData) -> None:
    ds = data.dataset
    assert (ds.n_users, ds.n_items) == (SMALL.n_users, SMALL.n_items)
    assert (
        ds.user_ids[0] == "" and ds.user_ids[1] == "u1" and ds.item_ids[-1] == f"i{SMALL.n_items}"
    )
    assert ds.info["format"] == "synthetic" and ds.info["seed"] == SMALL.seed
    assert ds.info["config"] == asdict(SMALL)
    lengths = ds.sequences().lengths()[1:]
    assert lengths.min() >= SMALL.min_seq_len and lengths.max() <= SMALL.max_seq_len
    assert data.user_weights.shape == (SMALL.n_users + 1, SMALL.n_concepts)


def test_sequences_are_chronological_and_never_repeat_an_item(data: SyntheticData) -> None:
    ds = data.dataset
    assert np.all(np.diff(ds.user) >= 0)
    same_user = ds.user[1:] == ds.user[:-1]
    assert np.all(np.diff(ds.time)[same_user] > 0)
    pairs = ds.user * (ds.n_items + 1) + ds.item
    assert len(np.unique(pairs)) == len(pairs)
    assert ds.item.min() >= 1 and ds.item.max() <= ds.n_items


def test_every_item_has_a_named_concept_and_concepts_overlap(data: SyntheticData) -> None:
    ic = data.item_concepts
    n_per_item = ic.lengths()
    assert n_per_item[0] == 0 and n_per_item[1:].min() >= 1
    assert 0.03 < np.mean(n_per_item[1:] >= 2) < 0.5  # most items single-concept, some overlap
    assert n_per_item.max() <= 3
    assert len(set(data.concept_names)) == len(data.concept_names) == SMALL.n_concepts
    exported = data.dataset.item_meta.multi["concept"]
    assert exported[0] == ()
    for i in range(1, data.dataset.n_items + 1):
        assert exported[i] == tuple(data.concept_names[c] for c in ic[i])
    assert _concept_matrix(data).sum(axis=0).min() >= SMALL.n_items // SMALL.n_concepts


def test_titles_name_the_first_concept_and_are_exported_as_text(data: SyntheticData) -> None:
    meta = data.dataset.item_meta
    assert meta.title[0] == "" and meta.text["title"] == meta.title
    for i in range(1, data.dataset.n_items + 1):
        first = data.concept_names[data.item_concepts[i][0]]
        assert meta.title[i].startswith(first.capitalize() + " #")
        assert meta.title[i].count(" / ") == len(data.item_concepts[i]) - 1
    assert len(set(meta.title)) == len(meta.title)


def test_user_preferences_are_sparse_dirichlet_weights(data: SyntheticData) -> None:
    w = data.user_weights
    assert not w[0].any()
    support = (w[1:] > 0).sum(axis=1)
    assert support.min() >= SMALL.min_user_concepts and support.max() <= SMALL.max_user_concepts
    assert np.allclose(w[1:].sum(axis=1), 1.0)
    assert np.allclose(data.final_user_weights[1:].sum(axis=1), 1.0)


def test_users_drift_to_concepts_outside_their_initial_preferences(data: SyntheticData) -> None:
    before, after = data.user_weights[1:] > 0, data.final_user_weights[1:] > 0
    drifted = (before != after).any(axis=1)
    assert 0.1 < drifted.mean() < 0.9
    assert np.array_equal(before.sum(axis=1), after.sum(axis=1))  # a swap keeps the support size
    # Observable in the data: the second half of a drifted user's sequence has more items
    # outside the initial preferences than that of a user who never drifted.
    concepts, seqs = _concept_matrix(data), data.dataset.sequences()
    outside = np.array([
        np.mean(~(concepts[seqs[u][len(seqs[u]) // 2 :]] & before[u - 1]).any(axis=1))
        for u in range(1, data.dataset.n_users + 1)
    ])  # fmt: skip
    assert outside[drifted].mean() > outside[~drifted].mean() + 0.2


def test_no_drift_when_the_drift_rate_is_zero() -> None:
    still = generate_synthetic(replace(SMALL, n_users=50, drift_rate=0.0))
    assert np.array_equal(still.user_weights, still.final_user_weights)


def test_popularity_is_skewed_within_the_catalogue(data: SyntheticData) -> None:
    counts = np.sort(np.bincount(data.dataset.item, minlength=SMALL.n_items + 1)[1:])[::-1]
    top_share = counts[: SMALL.n_items // 10].sum() / counts.sum()
    assert top_share > 0.2  # twice the 10 % a uniform catalogue would give


def test_next_item_shares_a_concept_with_the_recent_items_far_above_chance(
    data: SyntheticData,
) -> None:
    concepts, seqs = _concept_matrix(data), data.dataset.sequences()
    pop = np.bincount(data.dataset.item, minlength=SMALL.n_items + 1) / data.dataset.n_interactions
    hits, chance, last_hits, shuffled_hits, n = 0.0, 0.0, 0.0, 0.0, 0
    rng = np.random.default_rng(0)
    for u in range(1, data.dataset.n_users + 1):
        s = seqs[u]
        shuffled = rng.permutation(s)
        for t in range(3, len(s)):
            recent = concepts[s[t - 3 : t]].any(axis=0)
            hits += (concepts[s[t]] & recent).any()
            # Chance: an item drawn by global popularity, ignoring the sequence.
            chance += pop @ (concepts & recent).any(axis=1)
            last_hits += (concepts[s[t]] & concepts[s[t - 1]]).any()
            shuffled_hits += (concepts[shuffled[t]] & concepts[shuffled[t - 1]]).any()
            n += 1
    assert hits / n > 2 * chance / n
    # The order matters, not only the user's preferences: shuffling a sequence destroys it.
    assert last_hits / n > shuffled_hits / n + 0.2


def test_default_dataset_uses_every_item_and_concept() -> None:
    data = generate_synthetic()
    ds = data.dataset
    assert 1000 <= ds.n_users <= 2000 and 500 <= ds.n_items <= 1000
    assert np.bincount(ds.item, minlength=ds.n_items + 1)[1:].min() > 0
    assert (data.user_weights[1:] > 0).any(axis=0).all()


def test_ground_truth_file_maps_items_and_users_to_concepts(data: SyntheticData, tmp_path) -> None:
    write_ground_truth(data, tmp_path)
    gt = json.loads((tmp_path / GROUND_TRUTH_FILE).read_text())
    assert gt["seed"] == SMALL.seed and gt["config"] == asdict(SMALL)
    assert gt["concepts"] == data.concept_names
    assert gt["items"]["i1"] == list(data.dataset.item_meta.multi["concept"][1])
    assert len(gt["items"]) == SMALL.n_items and len(gt["users"]) == SMALL.n_users
    u1 = data.user_weights[1]
    assert gt["users"]["u1"] == {data.concept_names[c]: u1[c] for c in np.flatnonzero(u1)}
    assert "versions" in gt and list(tmp_path.iterdir()) == [tmp_path / GROUND_TRUTH_FILE]


@pytest.mark.parametrize(
    "change",
    [{"n_concepts": 30}, {"n_users": 0}, {"stickiness": 1.5}, {"max_user_concepts": 1},
     {"n_items": 10}],
)  # fmt: skip
def test_invalid_config_raises_config_error(change: dict) -> None:
    with pytest.raises(ConfigError, match="invalid synthetic config"):
        generate_synthetic(replace(SMALL, **change))
