"""Concept vocabularies of real catalogues (read from the shared data folder, never copied)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsae.data.registry import load_dataset
from recsae.interpret import build_vocabulary


def test_ml100k_vocabulary_has_genres_decades_title_words_popularity_and_films(data_root: Path) -> None:
    ds = load_dataset("ml-100k", data_root=data_root)
    v = build_vocabulary(ds.item_meta, np.bincount(ds.item, minlength=ds.n_items + 1))
    names = set(v.names)
    assert {"genre=Horror", "genre=Film-Noir", "decade=1980s", "pop=top1%", "word=star"} <= names
    assert any(n.startswith("item=Star Wars") for n in names)
    assert v.matrix.shape == (ds.n_items + 1, v.n_concepts)


def test_ml_latest_small_free_text_tags_become_concepts(data_root: Path) -> None:
    ds = load_dataset("ml-latest-small", data_root=data_root)
    v = build_vocabulary(ds.item_meta, np.bincount(ds.item, minlength=ds.n_items + 1))
    tags = [n for n in v.names if n.startswith("tag=")]
    assert len(tags) >= 50 and "tag=dark comedy" in tags
    assert any(n.startswith("tags_word=") for n in v.names)
