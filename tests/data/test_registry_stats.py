"""Registry (names, paths, defaults, fingerprints) and statistics."""

from __future__ import annotations

import numpy as np
import pytest

from recsae.data import dataset_fingerprint, list_datasets, load_dataset
from recsae.data.registry import DatasetOptions, infer_format, resolve_data_root
from recsae.data.stats import dataset_stats, format_stats
from recsae.errors import ConfigError


def test_list_names_the_four_datasets_default_first():
    assert [d.name for d in list_datasets()] == ["synthetic", "ml-100k", "ml-1m", "ml-latest-small"]


def test_data_root_comes_from_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSAE_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data_root(other) == other
    with pytest.raises(ConfigError, match="not a folder"):
        resolve_data_root(tmp_path / "missing")


def test_ml100k_defaults_are_positives_then_5_core_and_overridable(data_root):
    ds = load_dataset("ml-100k", data_root=data_root)
    assert ds.info["filters"] == ["rating>=4", "5-core"]
    assert ds.info["defaults"]["min_rating"] == 4 and ds.info["defaults"]["k_core"] == 5
    assert ds.info["counts"]["raw"] == {"interactions": 100_000, "users": 943, "items": 1_682}
    assert np.bincount(ds.user)[1:].min() >= 5 and np.bincount(ds.item)[1:].min() >= 5
    everything = load_dataset("ml-100k", data_root=data_root, min_rating=0, k_core=0)
    assert everything.n_interactions == 100_000


def test_default_filters_are_logged(data_root, caplog):
    import logging

    logger = logging.getLogger("recsae")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="recsae"):
            load_dataset("ml-100k", data_root=data_root)
    finally:
        logger.removeHandler(caplog.handler)
    assert "positives = rating >= 4 (default" in caplog.text and "5-core (default" in caplog.text


def test_dataset_options_load_is_load_dataset(data_root):
    opts = DatasetOptions("ml-100k", data_root, None, 5.0, 0)
    ds = opts.load()
    assert set(ds.rating.tolist()) == {5.0}
    assert opts.to_dict()["min_rating"] == 5.0


def test_fingerprint_is_stable_and_sensitive(tiny):
    a = tiny([1, 1, 2], [1, 2, 2])
    b = tiny([1, 1, 2], [1, 2, 2])
    c = tiny([1, 1, 2], [2, 1, 2])
    assert dataset_fingerprint(a) == dataset_fingerprint(b)
    assert dataset_fingerprint(a) != dataset_fingerprint(c)
    assert len(dataset_fingerprint(a)) == 64


def test_infer_format_from_files(tmp_path):
    (tmp_path / "u.data").write_text("")
    assert infer_format(tmp_path) == "movielens-100k"
    assert infer_format(tmp_path / "x.parquet") == "table"


def test_stats_closed_form(tiny):
    # user lengths 1, 2, 3, 4 over 4 items
    ds = tiny([1, 2, 2, 3, 3, 3, 4, 4, 4, 4], [1, 1, 2, 1, 2, 3, 1, 2, 3, 4])
    stats = dataset_stats(ds)
    assert (stats.n_users, stats.n_items, stats.n_interactions) == (4, 4, 10)
    assert stats.density == pytest.approx(10 / 16)
    assert stats.seq_len["min"] == 1 and stats.seq_len["max"] == 4
    assert stats.seq_len["p50"] == 2.5 and stats.seq_len["p25"] == 1.75
    text = format_stats(stats)
    assert "interactions  10" in text and "62.5000%" in text
