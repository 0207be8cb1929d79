"""What an edit acts on: concepts resolved to latents (through the interpretation) and to items
(through the item metadata), random latents of the same size for controls, and the latents most
associated with item popularity (for debiasing).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recsae.data.dataset import ItemMeta, SplitData, item_popularity
from recsae.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from recsae.interpret.concepts import ConceptConfig
    from recsae.models.base import Recommender
    from recsae.sae.model import TopKSAE

LATENT_COL = "latent"
RULE_COL = "rule"
CONFIDENCE_COL = "confidence"
INTERPRETABLE_COL = "interpretable"
CONCEPTS_COL = "rule_concepts"
"""Optional: the concept names of the rule (list); else they are parsed from the rule text."""
OP_COL = "op"
"""Optional: '' (single concept), 'AND' or 'OR'."""

MAX_LISTED = 10
"""An unknown concept's error lists all values of its attribute up to this many, else the closest."""

_TERM_SPLIT = re.compile(r"\s+(?:&|\||AND|OR)\s+")
_FEATURE_PREFIX = re.compile(r"^[A-Za-z0-9_\-]*[:(]")


def _strip_wrappers(term: str) -> str:
    term = term.strip()
    # unbalanced grouping parentheses left over from splitting "(a | b) & c"
    while term.startswith("(") and term.count("(") > term.count(")"):
        term = term[1:].strip()
    while term.endswith(")") and term.count(")") > term.count("("):
        term = term[:-1].strip()
    while term.startswith("(") and term.endswith(")"):
        term = term[1:-1].strip()
    m = _FEATURE_PREFIX.match(term)
    while m and "=" in term[m.end() :]:
        wrapped = m.group(0).endswith("(") and term.endswith(")")
        term = term[m.end() : len(term) - 1 if wrapped else len(term)].strip()
        m = _FEATURE_PREFIX.match(term)
    return term


def rule_terms(rule: str) -> list[str]:
    """The concepts a rule names: ``"genre=Horror & decade=1980s"`` -> both terms; feature
    wrappers such as ``last:genre=Horror`` or ``top10(genre=Horror)`` are stripped."""
    return [t for t in (_strip_wrappers(raw) for raw in _TERM_SPLIT.split(str(rule).strip())) if t]


def _ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Rows with a rule, interpretable first, then by confidence (stable by latent id), with
    ``_terms`` (the concepts the rule names) and ``_concept`` (them joined by the rule's operator,
    e.g. ``genre=Horror AND decade=1980s``: the item set the rule is about)."""
    missing = [c for c in (LATENT_COL, RULE_COL, CONFIDENCE_COL) if c not in table.columns]
    if missing:
        raise ConfigError(f"interpretation table lacks column(s) {missing}; has {list(table.columns)}")
    t = table[table[RULE_COL].notna() & (table[RULE_COL].astype(str) != "")].copy()
    t["_interp"] = t[INTERPRETABLE_COL].astype(bool) if INTERPRETABLE_COL in t.columns else True
    t["_conf"] = t[CONFIDENCE_COL].astype(float).fillna(-1.0)
    terms = t[CONCEPTS_COL].map(lambda cs: [str(c) for c in cs]) if CONCEPTS_COL in t.columns else t[RULE_COL].map(rule_terms)
    # a rule may name one concept twice (e.g. in the history OR in the recommendations)
    t["_terms"] = terms.map(lambda ts: list(dict.fromkeys(ts)))
    if OP_COL in t.columns:
        ops = t[OP_COL].fillna("").astype(str)
    else:
        ops = t[RULE_COL].astype(str).map(lambda r: "OR" if " | " in r or " OR " in r else "AND")
    t["_concept"] = [f" {op or 'AND'} ".join(terms) for terms, op in zip(t["_terms"], ops, strict=True)]
    return t.sort_values(["_interp", "_conf", LATENT_COL], ascending=[False, False, True], kind="stable")


def concept_latents(table: pd.DataFrame, concept: str, n: int = 3, interpretable_only: bool = True) -> list[int]:
    """The latents whose validated rule names ``concept``, most confident first (at most ``n``).

    Latents whose rule is exactly the concept come before those naming it in a combination.
    """
    t = _ranked(table)
    if interpretable_only:
        t = t[t["_interp"]]
    names = t["_terms"].map(lambda ts: concept in ts)
    exact = t["_terms"].map(lambda ts: ts == [concept])
    hits = t[names].assign(_exact=exact[names])
    if hits.empty:
        known = sorted({c for ts in t["_terms"] for c in ts})
        close = closest(concept, known)
        hint = f"closest: {', '.join(close)}" if close else f"they name {len(known)} concepts, e.g. {', '.join(known[:MAX_LISTED])}"
        which = "interpretable latent" if interpretable_only else "latent"
        raise ConfigError(f"concept {concept!r}: no {which} has a rule naming it; {hint}")
    hits = hits.sort_values(["_exact", "_interp", "_conf"], ascending=[False, False, False], kind="stable")
    return [int(j) for j in hits[LATENT_COL].head(n)]


def most_confident(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` most confident interpretable latents: latent, rule, confidence, and
    ``concept`` (the concepts the rule names, joined by its operator)."""
    t = _ranked(table)
    t = t[t["_interp"]].head(n)
    return t.assign(concept=t["_concept"])[[LATENT_COL, RULE_COL, CONFIDENCE_COL, "concept"]].reset_index(drop=True)


def check_latents(latents: Sequence[int], m: int) -> tuple[int, ...]:
    """Validate explicit latent ids against an SAE with ``m`` latents."""
    ids = tuple(int(j) for j in latents)
    bad = [j for j in ids if not 0 <= j < m]
    if not ids or bad:
        raise ConfigError(f"latent id(s) {bad or 'none given'}: this SAE has latents 0..{m - 1}")
    return ids


class ConceptItems:
    """Concept name -> item mask (item-aligned bool array, row 0 False).

    Built from item metadata (``attr=value`` for multi-valued and categorical attributes, e.g.
    ``genre=Horror``), plus any extra masks (e.g. the interpretation's vocabulary: popularity
    bands, title words), which take precedence. Combined rules resolve too: ``a & b`` (both),
    ``a | b`` (either).
    """

    def __init__(self, meta: ItemMeta | None, n_items: int, extra: Mapping[str, np.ndarray] | None = None) -> None:
        self.meta = meta
        self.n_items = n_items
        self.extra = dict(extra or {})

    @classmethod
    def from_vocabulary(cls, meta: ItemMeta | None, vocab: Any) -> ConceptItems:
        """With the interpretation's concept vocabulary (``recsae.interpret.ConceptVocab``:
        an item x concept matrix and names), so every concept a rule can name resolves."""
        matrix = vocab.matrix.tocsc()
        extra = {}
        for c, name in enumerate(vocab.names):
            mask = np.zeros(matrix.shape[0], dtype=bool)
            mask[matrix.indices[matrix.indptr[c] : matrix.indptr[c + 1]]] = True
            extra[str(name)] = mask
        return cls(meta, matrix.shape[0] - 1, extra)

    def _attribute(self, concept: str) -> np.ndarray | None:
        if self.meta is None or "=" not in concept:
            return None
        attr, value = concept.split("=", 1)
        for name in (attr, f"{attr}s"):  # concept names use the singular ('genres' -> 'genre')
            if name in self.meta.multi:
                mask = np.array([value in vals for vals in self.meta.multi[name]], dtype=bool)
            elif name in self.meta.categorical:
                mask = np.array([v == value for v in self.meta.categorical[name]], dtype=bool)
            else:
                continue
            return mask if mask[1:].any() else None  # a value no item has names no item set
        return None

    def single(self, concept: str) -> np.ndarray | None:
        """Item mask of one concept name (no rule operators), padding excluded; None when unknown."""
        mask = self.extra.get(concept)
        if mask is None:
            mask = self._attribute(concept)
        if mask is None:
            return None
        mask = np.asarray(mask, dtype=bool).copy()
        if len(mask) != self.n_items + 1:
            raise ConfigError(f"concept {concept!r}: item mask has {len(mask)} rows, expected {self.n_items + 1}")
        mask[0] = False
        return mask

    def mask(self, concept: str) -> np.ndarray:
        """Item mask of a concept or rule; ConfigError when it names no known item set. A name
        that is itself a concept (a title such as ``Beauty & the Beast``) is not split into terms."""
        whole = self.single(concept.strip())
        if whole is not None:
            return whole
        terms = rule_terms(concept)
        masks = [self.single(t) for t in terms]
        found = [m for m in masks if m is not None]
        if not terms or len(found) < len(terms):
            unknown = [t for t, m in zip(terms, masks, strict=True) if m is None] or [concept]
            raise ConfigError(self._unknown(unknown[0]))
        combine = np.logical_or if "|" in concept or " OR " in concept else np.logical_and
        out = found[0]
        for m in found[1:]:
            out = combine(out, m)
        return out

    def resolvable(self, concept: str) -> bool:
        """Whether a concept or rule names a known item set (``mask`` would not raise)."""
        try:
            self.mask(concept)
        except ConfigError:
            return False
        return True

    def attributes(self) -> list[str]:
        """The item attributes a concept can name as ``attribute=value``, sorted."""
        names = [] if self.meta is None else [*self.meta.multi, *self.meta.categorical]
        return sorted(set(names))

    def names(self) -> list[str]:
        """Every concept name that resolves to an item set (``attribute=value`` of the item
        metadata and the extra masks), sorted."""
        from recsae.interpret.concepts import concept_prefix

        names = {name for name, m in self.extra.items() if np.asarray(m[1:]).any()}
        if self.meta is not None:
            values = {attr: {v for vals in per_item[1:] for v in vals} for attr, per_item in self.meta.multi.items()}
            values |= {attr: set(per_item[1:]) for attr, per_item in self.meta.categorical.items()}
            names.update(f"{concept_prefix(attr)}={v}" for attr, vs in values.items() for v in vs if str(v).strip())
        return sorted(names)

    def _unknown(self, concept: str) -> str:
        """One line: the concept names no item set, the closest valid names, how to list them all."""
        names = self.names()
        attr, eq, value = concept.partition("=")
        same_attr = [n for n in names if n.startswith(f"{attr}=")] if eq else []
        if eq and not same_attr:
            known = ", ".join(sorted({n.partition("=")[0] for n in names})) or "none"
            problem = f"this dataset has no concepts {attr}=... (it has {known})"
        else:
            problem = f"no item has {concept!r}" if eq else "a concept is attribute=value"
        if 0 < len(same_attr) <= MAX_LISTED:
            hint = f"; valid: {', '.join(same_attr)}"
        else:  # the value matters most: genre=Horror where this dataset's items have concept=horror
            close = closest(value if eq else concept, same_attr or names, key=lambda n: n.partition("=")[2]) or closest(
                concept, names)
            hint = f"; closest: {', '.join(close)}" if close else ""
        pool = f"{len(same_attr)} {attr} values" if same_attr else f"{len(names)} concepts"
        return f"concept {concept!r}: {problem}{hint} (all {pool}: `recsae data stats --concepts` with the dataset's options)"


def closest(word: str, names: Sequence[str], n: int = 5, key: Callable[[str], str] = str) -> list[str]:
    """Up to ``n`` of ``names`` closest to ``word`` (``difflib``, ignoring case), best first;
    ``key`` picks the part of each name that is compared."""
    by_key: dict[str, list[str]] = {}
    for name in names:
        by_key.setdefault(key(name).lower(), []).append(name)
    matches = difflib.get_close_matches(word.lower(), list(by_key), n=n, cutoff=0.6)
    return [name for m in matches for name in by_key[m]][:n]


def concept_items(split: SplitData, concepts: ConceptConfig | None = None, vocab: Any = None) -> ConceptItems:
    """Concept item sets of a split's catalogue: the interpretation's vocabulary (attribute
    values, popularity bands, decades, title words, single items, co-consumption clusters; built
    from the training counts and the known histories as the interpretation builds it, with its
    ``concepts`` options, unless ``vocab`` gives it) plus every ``attribute=value`` of the item
    metadata."""
    from recsae.interpret.concepts import build_vocabulary

    meta = split.dataset.item_meta
    if vocab is None:
        counts = item_popularity(split.train.values, split.n_items)
        vocab = build_vocabulary(meta, counts, concepts, split.history("test"))
    return ConceptItems.from_vocabulary(meta, vocab)


def random_latents(
    rng: np.random.Generator, pool: np.ndarray, size: int, exclude: Sequence[int] = ()
) -> tuple[int, ...]:
    """``size`` distinct latents drawn uniformly from ``pool`` minus ``exclude``."""
    candidates = np.setdiff1d(np.asarray(pool, dtype=np.int64), np.asarray(exclude, dtype=np.int64))
    if len(candidates) < size:
        raise ConfigError(f"random control: only {len(candidates)} candidate latents for a draw of {size}")
    return tuple(int(j) for j in rng.choice(candidates, size=size, replace=False))


LATENT_SOURCES = ("decoder", "rules")
"""How a concept resolves to latents for steering: by what the latent's decoder direction does to
the concept's item scores, or by the interpretation rules that name the concept."""


def decoder_item_scores(model: Recommender, sae: TopKSAE) -> np.ndarray:
    """(m, n_items) float64: the score ``E · W_dec[j]`` each latent's decoder direction gives every
    real item (padding excluded), i.e. what turning the latent up adds to each item's score."""
    with torch.no_grad():
        items = model.item_embeddings()[1:].float()
        return (sae.W_dec.float().to(items.device) @ items.T).cpu().numpy().astype(np.float64)


def decoder_selectivity(model: Recommender, sae: TopKSAE, mask: np.ndarray) -> np.ndarray:
    """Per latent, how specifically adding its decoder direction raises the concept's items: the
    mean score ``E · W_dec[j]`` over the concept's items minus the mean over the other items, in
    standard deviations of that score over all items. Steering acts only through the decoder, so
    these are the latents that move a concept up without reshuffling everything else."""
    from recsae.interpret.baselines import concept_selectivity

    mask = np.asarray(mask, dtype=bool)[1:]
    if not mask.any() or mask.all():
        raise ConfigError("decoder selectivity needs a concept with some, but not all, items")
    return concept_selectivity(decoder_item_scores(model, sae), mask[:, None].astype(np.float64))[:, 0]


def selective_latents(selectivity: np.ndarray, n: int, pool: np.ndarray | None = None) -> tuple[int, ...]:
    """The ``n`` latents (from ``pool``, default all) with the most selective decoder directions."""
    cand = np.arange(len(selectivity)) if pool is None else np.asarray(pool, dtype=np.int64)
    order = cand[np.argsort(-selectivity[cand], kind="stable")]
    return tuple(int(j) for j in order[:n])


def popularity_association(model: Recommender, sae: TopKSAE, popularity: np.ndarray) -> np.ndarray:
    """Per latent, the Pearson correlation over items between the score its decoder direction
    gives each item (E · W_dec[j]) and log(1 + training count): how much turning the latent up
    pushes popular items."""
    scores = decoder_item_scores(model, sae)
    pop = np.log1p(np.asarray(popularity, dtype=np.float64)[1:])
    s = scores - scores.mean(axis=1, keepdims=True)
    p = pop - pop.mean()
    denom = np.sqrt((s**2).sum(axis=1) * (p**2).sum())
    return np.divide(s @ p, denom, out=np.zeros(len(s)), where=denom > 0)


def popularity_latents(association: np.ndarray, n: int, pool: np.ndarray | None = None) -> tuple[int, ...]:
    """The ``n`` latents (from ``pool``, default all) most positively associated with popularity."""
    cand = np.arange(len(association)) if pool is None else np.asarray(pool, dtype=np.int64)
    order = cand[np.argsort(-association[cand], kind="stable")]
    return tuple(int(j) for j in order[:n])
