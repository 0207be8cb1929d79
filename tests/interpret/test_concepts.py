from __future__ import annotations

import numpy as np
import pytest

from recsae.data.dataset import ItemMeta, Ragged
from recsae.errors import ConfigError
from recsae.interpret.concepts import ConceptConfig, build_vocabulary, tokenize


def _meta() -> ItemMeta:
    n = 12
    titles = [""] + [f"The Alien {'Returns' if i % 2 else 'Strikes'} {i}" for i in range(1, n + 1)]
    titles[12] = "Zebra"
    return ItemMeta(
        title=titles,
        categorical={"studio": ["", *["A"] * 6, *["B"] * 6]},
        multi={"genres": [(), *[("Horror", "Drama")] * 5, *[("Comedy",)] * 7]},
        text={"title": titles},
        numeric={"year": np.r_[np.nan, [1981, 1985, 1989, 1983, 1994, 1992, 1995, 1991, 1999, 1990, np.nan, 2001]]},
    )


def test_tokenize_drops_stop_words_numbers_and_short_words() -> None:
    assert tokenize("The Alien (1979): it's a Man's World, ok") == ["alien", "it's", "man's", "world"]


def test_vocabulary_has_values_words_decades_popularity_and_items() -> None:
    meta = _meta()
    counts = np.r_[0, np.arange(12, 0, -1) * 10]  # item 1 most popular
    v = build_vocabulary(meta, counts, ConceptConfig(min_items=3, max_item_share=0.95, min_item_count=100,
                                                      pop_quantiles=(0.25,)))
    names = set(v.names)
    assert {"studio=A", "studio=B", "genre=Comedy", "decade=1980s", "decade=1990s"} <= names
    assert "genre=Horror" not in names  # same items as genre=Drama (listed first): dropped
    assert "word=returns" in names and "word=strikes" in names
    assert "word=the" not in names and "word=zebra" not in names  # stop word; rare word
    assert "word=alien" in names
    assert {"pop=top25%", "pop=bottom75%"} <= names
    items = [n for n in v.names if n.startswith("item=")]
    assert items == ["item=The Alien Returns 1", "item=The Alien Strikes 2", "item=The Alien Returns 3"]
    m = v.matrix.toarray()
    assert m[0].sum() == 0  # padding row carries nothing
    assert np.flatnonzero(m[:, v.concept_index("genre=Drama")]).tolist() == [1, 2, 3, 4, 5]
    assert np.flatnonzero(m[:, v.concept_index("decade=1980s")]).tolist() == [1, 2, 3, 4]
    assert np.flatnonzero(m[:, v.concept_index("pop=top25%")]).tolist() == [1, 2, 3]
    assert set(np.unique(m)) <= {0.0, 1.0}


def test_concepts_covering_most_of_the_catalogue_are_dropped() -> None:
    v = build_vocabulary(_meta(), np.ones(13), ConceptConfig(min_items=3, max_item_share=0.5))
    assert "word=alien" not in v.names  # 11 of 12 items
    assert "genre=Comedy" not in v.names  # 7 of 12 > 50 %
    assert "genre=Drama" in v.names


def test_other_numeric_attributes_get_quantile_bands() -> None:
    meta = ItemMeta(title=["", *map(str, range(1, 9))], numeric={"price": np.r_[np.nan, np.arange(1.0, 9.0)]})
    v = build_vocabulary(meta, np.zeros(9), ConceptConfig(min_items=2, max_item_share=0.5, numeric_bands=4))
    assert v.names == ["price=q1of4", "price=q2of4", "price=q3of4", "price=q4of4"]
    assert v.matrix.sum(axis=0).tolist() == [[2, 2, 2, 2]]


def _anonymous_meta(n: int) -> ItemMeta:
    """A catalogue without names: titles are the item ids (101, 102, ...), no attribute."""
    return ItemMeta(title=["", *[str(100 + i) for i in range(1, n + 1)]])


def test_bare_category_codes_carry_their_most_popular_items_and_are_marked_anonymous() -> None:
    meta = _anonymous_meta(12)
    meta.categorical["genre"] = ["", *["7"] * 6, *["9"] * 6]
    counts = np.r_[0, np.arange(1, 13)]  # item 12 the most popular
    v = build_vocabulary(meta, counts, ConceptConfig(min_items=3, min_item_count=11))
    anonymous = dict(zip(v.names, v.anonymous or [], strict=True))
    assert anonymous == {"genre=7 (items 106, 105, 104)": True, "genre=9 (items 112, 111, 110)": True,
                         "pop=top10-30%": False, "pop=top30-60%": False, "pop=bottom40%": False,
                         "item=111": True, "item=112": True}


def test_a_named_catalogue_keeps_its_names_and_has_no_anonymous_concept() -> None:
    counts = np.r_[0, np.arange(12, 0, -1) * 10]
    history = Ragged.from_lists([[], [1, 2, 3], [4, 5, 6], [1, 2, 4]])
    v = build_vocabulary(_meta(), counts, ConceptConfig(min_items=3), history)
    assert "genre=Drama" in v.names and not any(v.anonymous or [])
    assert not any(n.startswith("cluster=") for n in v.names)  # 'auto': the catalogue names things


def _two_communities() -> Ragged:
    """40 users: the first 20 consume 6 of items 1-10 each, the others 6 of items 11-20; two
    more users consume some of both."""
    rng = np.random.default_rng(0)
    rows = [[]] + [(rng.permutation(10)[:6] + 1 + 10 * (u >= 20)).tolist() for u in range(40)]
    return Ragged.from_lists([*rows, [1, 2, 11, 12], [5, 15]])


def test_co_consumption_clusters_recover_groups_of_items_consumed_together() -> None:
    histories = _two_communities()
    counts = np.bincount(histories.values, minlength=21)
    cfg = ConceptConfig(min_items=3, cluster_items=10)
    v = build_vocabulary(_anonymous_meta(20), counts, cfg, histories)
    clusters = [c for c, name in enumerate(v.names) if name.startswith("cluster=")]
    groups = sorted(np.flatnonzero(v.matrix[:, c].toarray().ravel()).tolist() for c in clusters)
    assert groups == [list(range(1, 11)), list(range(11, 21))]
    assert all(v.anonymous[c] and "(items 1" in v.names[c] for c in clusters)  # type: ignore[index]
    again = build_vocabulary(_anonymous_meta(20), counts, cfg, histories)
    assert again.names == v.names and (again.matrix != v.matrix).nnz == 0


def test_clusters_follow_the_option_and_need_histories() -> None:
    histories = _two_communities()
    counts = np.bincount(histories.values, minlength=21)
    named = ItemMeta(title=["", *[f"film {i}" for i in range(1, 21)]], text={"title": ["", *[f"film {i}" for i in range(1, 21)]]})

    def n_clusters(meta: ItemMeta, clusters: str, with_histories: bool = True) -> int:
        v = build_vocabulary(meta, counts, ConceptConfig(min_items=3, cluster_items=10, clusters=clusters),
                             histories if with_histories else None)
        return sum(name.startswith("cluster=") for name in v.names)

    assert n_clusters(named, "auto") == 0 and n_clusters(named, "on") == 2
    assert n_clusters(_anonymous_meta(20), "auto") == 2 and n_clusters(_anonymous_meta(20), "off") == 0
    assert n_clusters(_anonymous_meta(20), "auto", with_histories=False) == 0
    with pytest.raises(ConfigError, match="clusters must be auto, on or off"):
        ConceptConfig(clusters="yes")
