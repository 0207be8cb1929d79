from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsae.errors import ConfigError
from recsae.steer.targets import (
    ConceptItems,
    check_latents,
    closest,
    concept_latents,
    decoder_selectivity,
    most_confident,
    popularity_association,
    popularity_latents,
    random_latents,
    rule_terms,
    selective_latents,
)


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "latent": [4, 9, 2, 7, 3],
            "rule": ["genre=Horror & decade=1980s", "genre=Horror", "genre=Horror", "genre=Comedy", "genre=Horror"],
            "confidence": [0.99, 0.85, 0.9, 0.95, 0.97],
            "interpretable": [True, True, True, True, False],
        }
    )


def test_concept_resolves_to_interpretable_latents_exact_rules_first_most_confident_first() -> None:
    assert concept_latents(_table(), "genre=Horror", n=5) == [2, 9, 4]
    assert concept_latents(_table(), "genre=Horror", n=2) == [2, 9]
    assert concept_latents(_table(), "genre=Horror", n=5, interpretable_only=False) == [2, 9, 3, 4]


def test_unknown_concept_is_a_config_error_listing_known_concepts() -> None:
    with pytest.raises(ConfigError, match=r"genre=Western.*genre=Comedy"):
        concept_latents(_table(), "genre=Western")


def test_most_confident_lists_interpretable_latents_by_confidence() -> None:
    top = most_confident(_table(), 3)
    assert top["latent"].tolist() == [4, 7, 2]
    assert top["concept"].tolist() == ["genre=Horror AND decade=1980s", "genre=Comedy", "genre=Horror"]


def test_rule_concepts_column_is_used_and_repeated_concepts_collapse() -> None:
    table = pd.DataFrame(
        {
            "latent": [0, 1],
            "rule": ["last item has genre=A OR genre=A in top-10 recs", "genre=B in top-10 recs AND last item has genre=C"],
            "rule_concepts": [["genre=A", "genre=A"], ["genre=B", "genre=C"]],
            "op": ["OR", "AND"],
            "confidence": [0.9, 0.8],
            "interpretable": [True, True],
        }
    )
    assert most_confident(table, 2)["concept"].tolist() == ["genre=A", "genre=B AND genre=C"]
    assert concept_latents(table, "genre=C") == [1]


def test_rule_terms_strip_feature_wrappers_and_split_combinations() -> None:
    assert rule_terms("last:genre=Horror") == ["genre=Horror"]
    assert rule_terms("top10(genre=Horror) & decade=1980s") == ["genre=Horror", "decade=1980s"]
    assert rule_terms("item=Alien (1979)") == ["item=Alien (1979)"]


def test_latent_ids_are_checked_against_the_sae() -> None:
    assert check_latents([3, 0], 4) == (3, 0)
    with pytest.raises(ConfigError, match=r"0\.\.3"):
        check_latents([4], 4)


def test_concept_items_from_metadata_and_extra_masks() -> None:
    from recsae.data.dataset import ItemMeta

    meta = ItemMeta(
        title=["", "a", "b", "c"],
        multi={"genre": [(), ("Horror",), ("Horror", "Comedy"), ("Comedy",)]},
        categorical={"decade": ["", "1980s", "1990s", "1980s"]},
    )
    items = ConceptItems(meta, 3, extra={"pop=head": np.array([True, True, False, False])})
    assert items.mask("genre=Horror").tolist() == [False, True, True, False]
    assert items.mask("decade=1980s").tolist() == [False, True, False, True]
    assert items.mask("genre=Horror & decade=1980s").tolist() == [False, True, False, False]
    assert items.mask("genre=Horror | decade=1980s").tolist() == [False, True, True, True]
    assert items.mask("pop=head").tolist() == [False, True, False, False]  # padding never counts
    with pytest.raises(ConfigError, match="decade, genre"):
        items.mask("mood=dark")
    assert not items.resolvable("genre=Western & mood=dark")


def test_a_concept_whose_name_holds_a_rule_operator_resolves_whole() -> None:
    from recsae.data.dataset import ItemMeta

    meta = ItemMeta(title=["", "a", "b"], multi={"genre": [(), ("Horror",), ()]},
                    categorical={"series": ["", "Tom & Jerry", "Tom"]})
    items = ConceptItems(meta, 2, extra={"cluster=A | B": np.array([False, False, True])})
    assert items.mask("series=Tom & Jerry").tolist() == [False, True, False]
    assert items.mask("cluster=A | B").tolist() == [False, False, True]
    assert items.mask("genre=Horror & series=Tom").tolist() == [False, False, False]  # still a rule


def _many_genres() -> ConceptItems:
    from recsae.data.dataset import ItemMeta

    genres = ["Action", "Adventure", "Animation", "Comedy", "Crime", "Drama", "Fantasy", "Film-Noir", "Horror",
              "Musical", "Mystery", "Romance", "Thriller", "War", "Western"]
    meta = ItemMeta(title=["", *genres], multi={"genres": [(), *((g,) for g in genres)]},
                    categorical={"decade": ["", *(["1980s", "1990s", "2000s"] * 5)]})
    return ConceptItems(meta, len(genres), extra={"concept=noir": np.arange(len(genres) + 1) == 8})


def test_names_lists_every_concept_that_resolves_and_only_those() -> None:
    items = _many_genres()
    names = items.names()
    assert "genre=Film-Noir" in names and "decade=1990s" in names and "concept=noir" in names
    assert len(names) == 15 + 3 + 1
    for name in names:
        assert items.mask(name)[1:].any(), name


def test_a_misspelt_value_names_the_closest_values_of_its_attribute_and_how_many_there_are() -> None:
    with pytest.raises(ConfigError) as err:
        _many_genres().mask("genre=Horor")
    message = str(err.value)
    assert "closest: genre=Horror" in message and "all 15 genre values" in message and "recsae data stats --concepts" in message
    assert "genre=Action" not in message and "\n" not in message  # the closest few, on one line


def test_an_attribute_with_few_values_lists_them_all() -> None:
    with pytest.raises(ConfigError, match=r"valid: decade=1980s, decade=1990s, decade=2000s"):
        _many_genres().mask("decade=1970s")


def test_an_unknown_attribute_names_the_attributes_and_the_value_under_another_attribute() -> None:
    with pytest.raises(ConfigError, match=r"no concepts style=\.\.\. \(it has concept, decade, genre\); closest: genre=Film-Noir"):
        _many_genres().mask("style=film-noir")
    with pytest.raises(ConfigError, match=r"closest: concept=noir"):  # another dataset's genre, this one's concept
        _many_genres().mask("mood=Noir")


def test_closest_ignores_case_and_ranks_the_best_match_first() -> None:
    assert closest("HORROR", ["genre=Drama", "Horror", "horrors"]) == ["Horror", "horrors"]
    assert closest("noir", ["genre=Film-Noir", "genre=War"], key=lambda n: n.partition("=")[2]) == ["genre=Film-Noir"]
    assert closest("zzz", ["genre=Drama"]) == []


def test_random_latents_have_the_requested_size_avoid_excluded_and_are_seeded() -> None:
    pool = np.arange(20)
    a = random_latents(np.random.default_rng(1), pool, 4, exclude=[0, 1, 2])
    b = random_latents(np.random.default_rng(1), pool, 4, exclude=[0, 1, 2])
    assert a == b and len(set(a)) == 4 and not set(a) & {0, 1, 2}
    with pytest.raises(ConfigError):
        random_latents(np.random.default_rng(0), np.arange(3), 2, exclude=[0, 1])


def test_popularity_association_finds_the_latent_pushing_popular_items() -> None:
    from recsae.models.base import DotProductModel
    from recsae.sae.config import SaeConfig
    from recsae.sae.model import TopKSAE

    pop = np.array([0, 100, 50, 20, 5, 1, 0])
    items = torch.zeros(7, 4)
    items[1:, 0] = torch.log1p(torch.tensor(pop[1:], dtype=torch.float32))  # dim 0 = popularity
    items[1:, 1] = torch.tensor([0.3, -0.2, 0.1, 0.4, -0.1, 0.2])
    model = DotProductModel(torch.nn.Identity(), represent=lambda m, u, s: u, item_embeddings=lambda m: items)
    sae = TopKSAE(SaeConfig(d_in=4, n_latents=6, k=2))
    with torch.no_grad():
        sae.W_dec.copy_(torch.cat([torch.eye(4), -torch.eye(4)[:2]]))
    assoc = popularity_association(model, sae, pop)
    assert assoc[0] == pytest.approx(1.0) and assoc[4] == pytest.approx(-1.0)
    assert popularity_latents(assoc, 1) == (0,)
    assert popularity_latents(assoc, 1, pool=np.array([1, 2, 4])) != (0,)


def test_decoder_selectivity_ranks_the_direction_that_raises_only_the_concept_items_first() -> None:
    from recsae.models.base import DotProductModel
    from recsae.sae.config import SaeConfig
    from recsae.sae.model import TopKSAE

    items = torch.zeros(7, 3)
    items[1:3, 0] = 1.0  # items 1, 2: the concept, alone on dimension 0
    items[1:, 1] = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # dimension 1 raises every item alike
    items[1:, 2] = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])  # dimension 2: item 1 and two others
    model = DotProductModel(torch.nn.Identity(), represent=lambda m, u, s: u, item_embeddings=lambda m: items)
    sae = TopKSAE(SaeConfig(d_in=3, n_latents=4, k=1))
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0], [-1, 0, 0]]))
    mask = np.array([False, True, True, False, False, False, False])
    sel = decoder_selectivity(model, sae, mask)
    assert sel[1] == pytest.approx(0.0)  # +1 on item 1 and on items 3, 5 (scores 1,0,1,0,1,0)
    assert sel[0] == 0.0  # a constant shift moves no item past another
    # scores 1,1,0,0,0,0: (1 - 0) / std 0.4714
    assert sel[2] == pytest.approx(1 / np.std([1, 1, 0, 0, 0, 0])) and sel[3] == pytest.approx(-sel[2])
    assert selective_latents(sel, 2) == (2, 0)
    with pytest.raises(ConfigError):
        decoder_selectivity(model, sae, np.zeros(7, dtype=bool))


def test_concept_items_of_a_split_cover_metadata_and_vocabulary_concepts(world) -> None:
    from recsae.steer.targets import concept_items

    items = concept_items(world.split)
    assert items.mask("genre=A").sum() == 10 and items.mask("genre=A")[1:11].all()
    pop_bands = [c for c in items.extra if c.startswith("pop=")]
    assert pop_bands and all(not items.mask(c)[0] for c in pop_bands)
