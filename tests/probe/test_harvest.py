"""harvest(): which rows are written, their provenance and values, and that the model stays frozen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from recsae.data.dataset import input_sequences
from recsae.errors import DataError
from recsae.models.base import DotProductModel, HiddenStates
from recsae.probe import ActivationStore, harvest

# (user, position, split, target, start) for the tiny split with max_len 4 (see conftest)
EXPECTED = [
    (1, 1, "train", 2, 0), (1, 2, "valid", 3, 0), (1, 3, "test", 4, 0),
    (2, 3, "train", 6, 2), (2, 4, "train", 7, 2), (2, 5, "valid", 8, 2), (2, 6, "test", 9, 2),
    (3, 1, "valid", 9, 0), (3, 2, "test", 10, 0),
    (4, 1, "train", 10, 0), (4, 2, "valid", 11, 0), (4, 3, "test", 0, 0),
]  # fmt: skip


def _index_tuples(store: ActivationStore) -> list[tuple]:
    idx = store.index
    return [
        (int(u), int(p), str(s), int(t), int(b))
        for u, p, s, t, b in zip(idx.user, idx.position, idx.split, idx.target, idx.start, strict=True)
    ]


def test_harvest_writes_every_valid_position_with_its_provenance(tiny_model, tiny_split, tmp_path):
    store = harvest(tiny_model, tiny_split, tmp_path / "acts", batch_size=2)
    assert _index_tuples(store) == EXPECTED
    assert store.load().shape == (len(EXPECTED), 8)
    assert store.meta["mode"] == "model" and store.meta["last_only"] is False
    assert store.meta["model"]["max_len"] == 4 and store.meta["model"]["sequential"] is True
    assert store.meta["dataset"]["fingerprint"] == "tiny-fp"
    assert list(store.rows("valid")) == [1, 5, 7, 10]


def test_each_row_is_the_models_state_for_its_window_prefix(tiny_model, tiny_split, tmp_path):
    store = harvest(tiny_model, tiny_split, tmp_path / "acts", batch_size=3)
    hist = tiny_split.history("test")
    x = store.load()
    tiny_model.eval()
    with torch.no_grad():
        for row, (u, t, _, _, start) in enumerate(EXPECTED):
            prefix = hist[u][start:t]
            want = tiny_model.represent(torch.tensor([u]), torch.from_numpy(prefix.copy())[None])
            np.testing.assert_allclose(x[row], want[0].numpy(), rtol=1e-5, atol=1e-6)


def test_test_rows_equal_the_representation_the_evaluator_ranks_from(tiny_model, tiny_split, tmp_path):
    store = harvest(tiny_model, tiny_split, tmp_path / "acts")
    rows = store.rows("test")
    users = store.index.user.to_numpy()[rows]
    tiny_model.eval()
    with torch.no_grad():
        h = tiny_model.represent(torch.from_numpy(users), input_sequences(tiny_split.history("test"), users, 200))
    np.testing.assert_array_equal(store.load(rows), h.numpy())


def test_padding_is_never_harvested_even_if_the_model_marks_it_valid(tiny_model, tiny_split, tmp_path):
    sloppy = DotProductModel(
        tiny_model,
        represent=lambda m, u, s: m.represent(u, s),
        item_embeddings=lambda m: m.item_embeddings(),
        sequential=True,
        hidden_states=lambda m, u, s: HiddenStates(m.hidden_states(u, s).states, torch.ones_like(s[:, -4:], dtype=torch.bool)),
    )
    store = harvest(sloppy, tiny_split, tmp_path / "acts", max_len=4)
    assert _index_tuples(store) == EXPECTED
    assert (store.index.position >= 1).all()


def test_last_only_keeps_one_row_per_user_at_the_full_history(tiny_model, tiny_split, tmp_path):
    full = harvest(tiny_model, tiny_split, tmp_path / "full")
    last = harvest(tiny_model, tiny_split, tmp_path / "last", last_only=True)
    assert _index_tuples(last) == [r for r in EXPECTED if r[2] == "test"]
    assert last.meta["last_only"] is True
    np.testing.assert_allclose(last.load(), full.load(full.rows("test")), rtol=1e-6, atol=1e-7)


def test_harvest_leaves_the_model_unchanged(tiny_model, tiny_split, tmp_path):
    tiny_model.train()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    seqs = input_sequences(tiny_split.history("test"), np.arange(1, 5), 4)
    tiny_model.eval()
    with torch.no_grad():
        out_before = tiny_model.represent(torch.arange(1, 5), seqs)
    tiny_model.train()
    harvest(tiny_model, tiny_split, tmp_path / "acts")
    assert tiny_model.training, "the training flag must be restored"
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in tiny_model.parameters())
    tiny_model.eval()
    with torch.no_grad():
        assert torch.equal(tiny_model.represent(torch.arange(1, 5), seqs), out_before)


def test_general_model_gives_one_test_row_per_user_with_history(tiny_split, tmp_path):
    users = nn.Embedding(6, 3)
    items = nn.Embedding(13, 3)
    model = DotProductModel(nn.ModuleDict({"u": users, "i": items}), lambda m, u, s: m["u"](u), lambda m: m["i"].weight)
    store = harvest(model, tiny_split, tmp_path / "acts")
    assert _index_tuples(store) == [(1, 3, "test", 4, 0), (2, 6, "test", 9, 0), (3, 2, "test", 10, 0), (4, 3, "test", 0, 0)]
    np.testing.assert_array_equal(store.load(), users.weight[1:5].detach().numpy())


def test_harvest_is_deterministic(tiny_model, tiny_split, tmp_path):
    a = harvest(tiny_model, tiny_split, tmp_path / "a", batch_size=1)
    b = harvest(tiny_model, tiny_split, tmp_path / "b", batch_size=5)
    np.testing.assert_allclose(a.load(), b.load(), rtol=1e-6, atol=1e-7)
    assert _index_tuples(a) == _index_tuples(b)


def test_sharded_harvest_holds_the_same_rows(tiny_model, tiny_split, tmp_path):
    one = harvest(tiny_model, tiny_split, tmp_path / "one", batch_size=2)
    many = harvest(tiny_model, tiny_split, tmp_path / "many", batch_size=2, shard_rows=5)
    assert [s.shape[0] for s in many.shards] == [5, 5, 2]
    np.testing.assert_array_equal(many.load(), one.load())


def test_interrupted_harvest_leaves_no_store(tiny_model, tiny_split, tmp_path):
    calls = []

    def failing(m, u, s):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return m.hidden_states(u, s)

    model = DotProductModel(tiny_model, lambda m, u, s: m.represent(u, s), lambda m: m.item_embeddings(),
                            sequential=True, hidden_states=failing)
    with pytest.raises(KeyboardInterrupt):
        harvest(model, tiny_split, tmp_path / "acts", batch_size=1, max_len=4, shard_rows=1)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError):
        ActivationStore.open(tmp_path / "acts")


# LightGCN on the tiny split: a row at every prefix of the whole history (train + valid), start 0
GRAPH_EXPECTED = [
    (1, 1, "train", 2, 0), (1, 2, "valid", 3, 0), (1, 3, "test", 4, 0),
    (2, 1, "train", 4, 0), (2, 2, "train", 5, 0), (2, 3, "train", 6, 0), (2, 4, "train", 7, 0),
    (2, 5, "valid", 8, 0), (2, 6, "test", 9, 0),
    (3, 1, "valid", 9, 0), (3, 2, "test", 10, 0),
    (4, 1, "train", 10, 0), (4, 2, "valid", 11, 0), (4, 3, "test", 0, 0),
]  # fmt: skip


def _lightgcn(split):
    from recsae.models.lightgcn import LightGCN, LightGCNConfig

    torch.manual_seed(0)
    return LightGCN.build(LightGCNConfig(dim=4, n_layers=2), split.n_users, split.n_items, split.train)


def test_general_model_with_a_history_route_gives_a_row_at_every_prefix_of_the_whole_history(tiny_split, tmp_path):
    store = harvest(_lightgcn(tiny_split), tiny_split, tmp_path / "acts", batch_size=2)
    assert _index_tuples(store) == GRAPH_EXPECTED
    assert store.meta["last_only"] is False and store.meta["model"]["sequential"] is False


def test_general_prefix_rows_are_the_users_vector_from_that_prefix_and_test_rows_represent(tiny_split, tmp_path):
    model = _lightgcn(tiny_split)
    store = harvest(model, tiny_split, tmp_path / "acts", batch_size=3)
    hist = tiny_split.history("test")
    x = store.load()
    with torch.no_grad():
        for row, (u, t, split, _, _) in enumerate(GRAPH_EXPECTED):
            user = torch.tensor([u])
            if split == "test":  # what ranking uses
                want = model.represent(user, torch.zeros(1, 1, dtype=torch.int64))[0]
            else:  # the vector had the user consumed only its first t items
                prefix = torch.from_numpy(hist[u][:t].copy())[None]
                want = model.history_states(user, prefix).states[0, -1]
            np.testing.assert_allclose(x[row], want.numpy(), rtol=1e-5, atol=1e-6)


def test_general_prefix_harvest_is_deterministic_and_last_only_keeps_represent(tiny_split, tmp_path):
    model = _lightgcn(tiny_split)
    a = harvest(model, tiny_split, tmp_path / "a", batch_size=1)
    b = harvest(model, tiny_split, tmp_path / "b", batch_size=4)
    assert _index_tuples(a) == _index_tuples(b)
    np.testing.assert_allclose(a.load(), b.load(), rtol=1e-6, atol=1e-7)
    last = harvest(model, tiny_split, tmp_path / "last", last_only=True)
    assert _index_tuples(last) == [r for r in GRAPH_EXPECTED if r[2] == "test"]
    np.testing.assert_array_equal(last.load(), a.load(a.rows("test")))


def test_harvest_shape_counts_the_rows_and_users_harvest_writes(tiny_model, tiny_split, tmp_path):
    from recsae.probe.harvest import harvest_shape, model_max_len

    lightgcn = _lightgcn(tiny_split)
    cases = [(tiny_model, False), (tiny_model, True), (lightgcn, False), (lightgcn, True)]
    for i, (model, last_only) in enumerate(cases):
        store = harvest(model, tiny_split, tmp_path / str(i), last_only=last_only)
        users = len(np.unique(store.index.user))
        every_prefix = store.meta["last_only"] is False
        assert harvest_shape(tiny_split, every_prefix, model.sequential, model_max_len(model)) == (len(store), users)
