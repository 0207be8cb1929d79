"""Latent examples for the latent view: recent titles of the prefixes, log-spaced histograms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsae.data.dataset import Ragged
from recsae.errors import DataError
from recsae.report import activation_histograms, build_latent_examples


def _table(rows):
    return pd.DataFrame({"latent": [0], "top_rows": [rows]})


def test_recent_titles_are_the_last_items_of_the_prefix_oldest_first():
    hist = Ragged.from_lists([[], list(range(1, 21)), [5, 6]])
    titles = [""] + [f"t{i}" for i in range(1, 21)]
    rows = [{"user": 1, "position": 15, "activation": 2.0},
            {"user": 2, "position": 1, "activation": 5.0}]
    doc = build_latent_examples(_table(rows), hist, titles, max_titles=8)
    ex = doc["latents"]["0"]["examples"]
    assert [e["user"] for e in ex] == [2, 1]  # highest activation first
    assert ex[0]["recent_titles"] == ["t5"]
    assert ex[1]["recent_items"] == list(range(8, 16))  # history[1][:15][-8:]
    assert ex[1]["recent_titles"] == [f"t{i}" for i in range(8, 16)]


def test_examples_are_capped_per_latent():
    hist = Ragged.from_lists([[], [1, 2, 3]])
    rows = [{"user": 1, "position": 3, "activation": float(a)} for a in range(9)]
    doc = build_latent_examples(_table(rows), hist, ["", "a", "b", "c"], max_examples=5)
    assert [e["activation"] for e in doc["latents"]["0"]["examples"]] == [8, 7, 6, 5, 4]


def test_top_row_outside_the_histories_is_a_data_error():
    hist = Ragged.from_lists([[], [1, 2]])
    with pytest.raises(DataError, match="top_rows"):
        build_latent_examples(_table([{"user": 1, "position": 3, "activation": 1.0}]), hist, ["", "a", "b"])


def test_histograms_count_every_positive_activation_in_log_spaced_bins():
    dense = np.zeros((6, 3))
    dense[:4, 0] = [0.1, 1.0, 10.0, 100.0]  # log10 = -1, 0, 1, 2
    dense[2, 1] = 0.5  # a single value
    hists = activation_histograms(sp.csr_matrix(dense), [0, 1, 2], n_bins=3)
    h0 = hists[0]
    assert h0["log10_edges"] == pytest.approx([-1, 0, 1, 2])
    assert h0["counts"] == [1, 1, 2]  # the maximum falls in the last bin
    assert h0["n_zero"] == 2
    assert sum(hists[1]["counts"]) == 1 and hists[1]["n_zero"] == 5
    assert hists[2] == {"log10_edges": [], "counts": [], "n_zero": 6}  # never fires


def test_histograms_agree_across_column_chunks(monkeypatch):
    import recsae.report.examples as ex

    rng = np.random.default_rng(0)
    acts = sp.random(300, 40, density=0.2, random_state=rng, format="csr")
    whole = activation_histograms(acts, range(40), n_bins=5)
    monkeypatch.setattr(ex, "_CHUNK_NNZ", 7)
    chunked = activation_histograms(acts, range(40), n_bins=5)
    assert whole == chunked
    nnz = np.diff(acts.tocsc().indptr)
    assert [sum(whole[j]["counts"]) for j in range(40)] == nnz.tolist()


def test_build_with_activations_attaches_histograms_and_row_count():
    hist = Ragged.from_lists([[], [1]])
    acts = sp.csr_matrix(np.array([[0.0], [2.0], [3.0]]))
    doc = build_latent_examples(_table([{"user": 1, "position": 1, "activation": 3.0}]),
                                hist, ["", "a"], acts)
    assert doc["n_rows"] == 3
    assert doc["latents"]["0"]["histogram"]["n_zero"] == 1
