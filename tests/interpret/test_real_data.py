"""Concept vocabularies of real catalogues (read from the shared data folder, never copied)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

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


def write_anonymous_ml100k(data_root: Path, folder: Path, max_user: int | None = None) -> Path:
    """ml-100k as a catalogue without names, written into ``folder`` (never into the repository):
    the interactions (of users up to ``max_user`` when given), and an item table holding only a
    genre-combination code per item (as ReChorus's ``i_genre_c``); no title. Returns the JSON
    spec that loads it."""
    import json

    import pandas as pd

    src = data_root / "ml-100k"
    log = pd.read_csv(src / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    if max_user is not None:
        log = log[log.user_id <= max_user]
    items = pd.read_csv(src / "u.item", sep="|", header=None, encoding="latin-1")
    flags = items.iloc[:, 5:].astype(str).agg("".join, axis=1)
    codes = {combo: k for k, combo in enumerate(sorted(flags.unique()), start=1)}
    log.to_csv(folder / "log.csv", index=False)
    pd.DataFrame({"item_id": items[0], "genre": flags.map(codes)}).to_csv(folder / "items.csv", index=False)
    spec = {"interactions": "log.csv", "items": "items.csv",
            "mapping": {"rating": "rating", "categorical": ["genre"]}}
    (folder / "anonymous.json").write_text(json.dumps(spec))
    return folder / "anonymous.json"


def test_anonymous_ml100k_clusters_group_items_of_shared_hidden_genres(data_root: Path, tmp_path: Path) -> None:
    from recsae.data.dataset import item_popularity
    from recsae.data.registry import DatasetOptions
    from recsae.data.split import make_split

    named = load_dataset("ml-100k", data_root=data_root)
    split = make_split(DatasetOptions(str(write_anonymous_ml100k(data_root, tmp_path)), min_rating=4, k_core=5).load(0),
                       "leave-one-out")
    ds = split.dataset
    v = build_vocabulary(ds.item_meta, item_popularity(split.train.values, split.n_items), histories=split.history("test"))
    assert not any(n.startswith(("word=", "genre=Drama")) for n in v.names)
    clusters = [c for c, n in enumerate(v.names) if n.startswith("cluster=")]
    assert len(clusters) >= 10 and all(v.anonymous[c] for c in clusters)  # type: ignore[index]
    # the hidden genres, by external id: two items of a cluster share one more often than two random items
    genre_of = dict(zip(named.item_ids[1:], named.item_meta.multi["genre"][1:], strict=True))
    genres = [set(genre_of[i]) for i in ds.item_ids[1:]]

    def shared(groups: list[np.ndarray]) -> float:
        pairs = [(a, b) for g in groups for k, a in enumerate(g) for b in g[k + 1:]]
        return float(np.mean([bool(genres[a - 1] & genres[b - 1]) for a, b in pairs]))

    groups = [np.flatnonzero(v.matrix[:, c].toarray().ravel()) for c in clusters]
    rng = np.random.default_rng(0)
    members = np.concatenate(groups)
    shuffled = rng.permutation(members)
    random_groups = np.split(shuffled, np.cumsum([len(g) for g in groups])[:-1])
    assert shared(groups) > shared(random_groups) + 0.1


@pytest.mark.slow
def test_a_run_on_a_catalogue_without_names_finds_interpretable_latents_named_by_their_items(
    data_root: Path, tmp_path: Path
) -> None:
    from recsae.config import ModelOptions, RunConfig, SaeOptions
    from recsae.data.registry import DatasetOptions
    from recsae.interpret.api import read_interpretation
    from recsae.pipeline import run_pipeline

    # 400 users and a small, briefly trained model and SAE: this checks the naming, not the quality
    spec = write_anonymous_ml100k(data_root, tmp_path, max_user=400)
    cfg = RunConfig(data=DatasetOptions(str(spec), min_rating=4, k_core=5),
                    model=ModelOptions("sasrec", epochs=3, max_len=50, lr=3e-3, batch_size=64),
                    sae=SaeOptions(expansion=4, k=16, epochs=2, min_rows=0, controls=False), stages=("interpret",))
    summary = run_pipeline(tmp_path / "run", cfg.override({"interpret.causal": False, "interpret.probe.ks": [1]}))
    anonymous = summary["interpret"]["anonymous_concepts"]
    assert set(anonymous["attributes"]) == {"cluster", "genre", "item"}
    table = read_interpretation(tmp_path / "run")
    named = table[table.interpretable]
    assert len(named) > 0 and named.anonymous.all() and anonymous["n_interpretable_latents"] == len(named)
    # every concept of their rules names items: an item by its id, a cluster or a genre code by its top items
    label = re.compile(r"item=\d+|(cluster|genre)=\d+ \(items \d+(, \d+)*\)|pop=.*")
    concepts = {c for cs in named.rule_concepts for c in cs}
    assert concepts and all(label.fullmatch(c) for c in concepts), concepts
