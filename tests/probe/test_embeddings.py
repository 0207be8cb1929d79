"""Embeddings mode: a store and a scoring model from exported arrays, with clear input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsae.data.dataset import Ragged
from recsae.errors import DataError
from recsae.probe import EmbeddingModel, from_embeddings, load_histories

HIST = Ragged.from_lists([[], [1, 2, 3], [4], [2, 5]])


@pytest.fixture
def arrays():
    rng = np.random.default_rng(1)
    return rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)


def test_store_from_arrays_and_the_model_that_scores_it(arrays, tmp_path):
    users, items = arrays
    store = from_embeddings(users, items, HIST, tmp_path / "s")
    np.testing.assert_array_equal(store.load(), users)
    assert store.meta["mode"] == "embeddings"
    assert list(store.index.user) == [1, 2, 3] and list(store.index.position) == [3, 1, 2]
    assert set(store.index.split) == {"test"}
    model = EmbeddingModel.from_store(store)
    assert not model.sequential
    scores = model.score(model.represent(torch.tensor([2, 3]), torch.zeros(2, 1, dtype=torch.long)))
    want = users[1:] @ np.vstack([np.zeros((1, 4), np.float32), items]).T
    np.testing.assert_allclose(scores.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    assert list(EmbeddingModel.histories(store).values) == list(HIST.values)


def test_store_from_npy_files_and_text_or_npz_histories(arrays, tmp_path):
    users, items = arrays
    np.save(tmp_path / "u.npy", users)
    np.save(tmp_path / "i.npy", np.vstack([np.zeros((1, 4), np.float32), items]))
    (tmp_path / "h.txt").write_text("1 2 3\n4\n2,5\n")
    np.savez(tmp_path / "h.npz", indptr=HIST.indptr, values=HIST.values)
    for hist in ("h.txt", "h.npz"):
        store = from_embeddings(tmp_path / "u.npy", tmp_path / "i.npy", tmp_path / hist, tmp_path / hist[2:], padding_row=True)
        np.testing.assert_array_equal(EmbeddingModel.from_store(store).item_embeddings()[1:].numpy(), items)
    assert list(load_histories(tmp_path / "h.txt")[3]) == [2, 5]


def test_provenance_rows_and_the_user_vector_is_the_longest_prefix(arrays, tmp_path):
    users, items = arrays
    vecs = np.vstack([users, users[:1] * 2])
    prov = pd.DataFrame({"user": [1, 2, 3, 1], "position": [3, 1, 2, 1]})
    store = from_embeddings(vecs, items, HIST, tmp_path / "s", provenance=prov)
    assert list(store.index.split) == ["test", "test", "test", "train"]
    assert list(store.index.target) == [0, 0, 0, 2]
    model = EmbeddingModel.from_store(store)
    np.testing.assert_array_equal(model.represent(torch.tensor([1]), torch.zeros(1, 1)).numpy(), users[:1])


def test_shape_mismatches_name_the_file(arrays, tmp_path):
    users, items = arrays
    np.save(tmp_path / "u.npy", users)
    np.save(tmp_path / "bad_items.npy", items[:, :3])
    with pytest.raises(DataError, match=r"bad_items\.npy.*3 columns"):
        from_embeddings(tmp_path / "u.npy", tmp_path / "bad_items.npy", HIST, tmp_path / "s")
    np.save(tmp_path / "few_users.npy", users[:2])
    with pytest.raises(DataError, match=r"few_users\.npy.*2 user vectors"):
        from_embeddings(tmp_path / "few_users.npy", items, HIST, tmp_path / "s")
    np.save(tmp_path / "flat.npy", users[0])
    with pytest.raises(DataError, match=r"flat\.npy.*2-D"):
        from_embeddings(tmp_path / "flat.npy", items, HIST, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_item_ids_beyond_the_table_and_pickled_arrays_are_rejected(arrays, tmp_path):
    users, items = arrays
    with pytest.raises(DataError, match=r"item ids must lie in 1\.\.4"):
        from_embeddings(users, items[:4], HIST, tmp_path / "s")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy"):
        from_embeddings(tmp_path / "obj.npy", items, HIST, tmp_path / "s")
    (tmp_path / "h.txt").write_text("1 2\nx\n")
    with pytest.raises(DataError, match="line 2"):
        load_histories(tmp_path / "h.txt")
