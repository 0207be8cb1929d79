from __future__ import annotations

import numpy as np

from recsae.data.dataset import ItemMeta
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
