from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recsae.data.dataset import Ragged
from recsae.interpret.from_run import top_recommendations


class _Dot(nn.Module):
    def __init__(self, emb: torch.Tensor) -> None:
        super().__init__()
        self.emb = nn.Parameter(emb)

    def item_embeddings(self) -> torch.Tensor:
        return self.emb

    def score(self, reps: torch.Tensor) -> torch.Tensor:
        return reps @ self.emb.T


def test_top_recommendations_mask_the_prefix_and_the_padding_item() -> None:
    emb = torch.tensor([[100.0], [5.0], [4.0], [3.0], [2.0], [1.0]])  # item 0 would win unmasked
    hist = Ragged.from_lists([[], [1, 2, 3]])
    recs = top_recommendations(_Dot(emb), np.ones((3, 1), dtype=np.float32), np.array([1, 1, 1]),
                               np.array([0, 1, 3]), hist, k=2, batch_size=2)
    assert recs.tolist() == [[1, 2], [2, 3], [4, 5]]


def _synthetic_store(tmp_path):
    """A small synthetic split, a store of random representations of every prefix (three shards),
    a dot-product model and an untrained SAE."""
    from recsae.data.split import leave_one_out
    from recsae.data.synthetic import SyntheticConfig, generate_synthetic
    from recsae.probe import StoreWriter
    from recsae.sae.config import SaeConfig
    from recsae.sae.model import TopKSAE

    ds = generate_synthetic(SyntheticConfig(n_users=40, n_items=60, n_concepts=4, max_user_concepts=2,
                                            min_seq_len=5, max_seq_len=12)).dataset
    split = leave_one_out(ds)
    hist = split.history("test")
    users = np.repeat(np.arange(len(hist)), hist.lengths())
    positions = np.arange(len(users)) - hist.indptr[users] + 1
    rng = np.random.default_rng(0)
    reps = rng.normal(size=(len(users), 8)).astype(np.float32)
    with StoreWriter(tmp_path / "store", 8, {"mode": "model"}, shard_rows=160) as w:
        zeros = np.zeros(len(users))
        w.append(reps, users, positions, zeros, zeros, zeros)
        store = w.finish()
    model = _Dot(torch.from_numpy(rng.normal(size=(ds.n_items + 1, 8)).astype(np.float32)))
    return split, store, reps, model, TopKSAE(SaeConfig(d_in=8, expansion=4, k=4), seed=1)


def test_run_inputs_feed_interpret_end_to_end(tmp_path) -> None:
    from recsae.interpret import interpret
    from recsae.interpret.from_run import run_inputs

    split, store, reps, model, sae = _synthetic_store(tmp_path)
    users, positions = store.index["user"].to_numpy(), store.index["position"].to_numpy()
    hist = split.history("test")
    inputs = run_inputs(model, sae, store, split, seed=0)
    assert inputs["sae_acts"].shape == (len(users), 32) and inputs["sae_acts"].getnnz(axis=1).max() <= 4
    assert np.array_equal(inputs["reps"], reps)
    recs = inputs["ctx"].recs
    for r in range(0, len(users), 17):  # no recommended item is in the row's prefix
        assert not set(recs[r]) & set(hist[int(users[r])][: int(positions[r])].tolist())
    res = interpret(**inputs)
    assert len(res.table) == 32 and set(res.baselines) == {"neurons", "random_sae"}


def test_a_store_above_max_rows_gives_whole_users_of_a_seeded_sample_never_loading_it_whole(tmp_path, monkeypatch) -> None:
    from recsae.interpret.from_run import interpreted_rows, run_inputs
    from recsae.probe import ActivationStore

    split, store, reps, model, sae = _synthetic_store(tmp_path)
    assert interpreted_rows(store, store.n_rows, seed=0) is None and interpreted_rows(store, None) is None
    monkeypatch.setattr(ActivationStore, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded whole")))
    rows = interpreted_rows(store, 150, seed=0)
    assert rows is not None and 130 < len(rows) <= 150 and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, interpreted_rows(store, 150, seed=0))
    assert not np.array_equal(rows, interpreted_rows(store, 150, seed=1))
    users = store.index["user"].to_numpy()
    chosen = np.unique(users[rows])
    assert np.array_equal(np.flatnonzero(np.isin(users, chosen)), rows)  # every row of each drawn user
    inputs = run_inputs(model, sae, store, split, seed=0, max_rows=150)
    assert np.array_equal(inputs["reps"], reps[rows]) and inputs["sae_acts"].shape == (len(rows), 32)
    assert np.array_equal(inputs["ctx"].users, users[rows])
    assert np.array_equal(inputs["ctx"].positions, store.index["position"].to_numpy()[rows])


def test_sparse_probing_gives_the_same_figures_with_the_families_side_by_side_or_one_at_a_time(tmp_path) -> None:
    from recsae.interpret import interpret
    from recsae.interpret.from_run import run_inputs

    split, store, _, model, sae = _synthetic_store(tmp_path)
    inputs = run_inputs(model, sae, store, split, seed=0)
    probing = {}
    for threads in (1, 3):  # one probe at a time, or three side by side
        torch.set_num_threads(threads)
        probing[threads] = interpret(**inputs).summary["sparse_probing"]
    assert {"sae", "neurons", "random_sae", "dense"} <= set(probing[1])
    assert any(family["by_k"] for family in probing[1].values() if isinstance(family, dict) and "by_k" in family)
    assert probing[1] == probing[3]
