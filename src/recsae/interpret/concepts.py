"""Concept vocabulary from item metadata (docs/method.md §4.1).

A concept is a named set of items, stored as one column of a sparse 0/1 item x concept matrix
(row 0 is the padding item and carries nothing). Concepts come from whatever ``ItemMeta``
holds, so nothing here is specific to one catalogue:

- every categorical value and every value of a multi-valued attribute (``genre=Horror``,
  ``concept=noir``, ``tag=dark comedy``);
- words of free-text fields scored by TF-IDF (``word=alien`` for the title, ``<field>_word=...``
  for other fields): stop words, numbers and rare words dropped, the top-weighted words kept;
- decade bands of a ``year`` attribute (``decade=1980s``), quartile bands of other numeric ones;
- popularity bands by training count (``pop=top1%``, ``pop=top1-10%``, ...);
- single items seen often enough in training (``item=Alien (1979)``);
- co-consumption clusters of items (``cluster=3 (items 50, 181, 258)``), from the training
  histories, when the catalogue has no named attribute (``ConceptConfig.clusters``).

A concept whose name says nothing by itself (a cluster, a category known only by a code such as
``genre=264``, a single item known only by its id) is *anonymous*: its name carries its most
popular items (``genre=264 (items 50, 181, 258)``), and ``ConceptVocab.anonymous`` marks it.

Concepts covering too few items, or too large a share of the catalogue to say anything, are
dropped; a concept with exactly the item set of an earlier one is dropped too (so the synthetic
titles' words do not shadow the planted concepts they spell out).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from recsae.data.dataset import ItemMeta, Ragged
from recsae.errors import ConfigError

STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just let me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    le la les el los las de del des du un une der die das und et ii iii part vol""".split()  # noqa: SIM905
)
"""English (plus a few French/Spanish/German article) stop words removed from text fields."""

_TOKEN = re.compile(r"[^\W\d_](?:[^\W_]|')*[^\W_]|[^\W\d_]", re.UNICODE)


@dataclass(frozen=True)
class ConceptConfig:
    """Which concepts the vocabulary contains."""

    min_items: int = 5
    """A concept must cover at least this many items (single-item concepts excepted)."""
    max_item_share: float = 0.5
    """Concepts covering more than this share of the items are dropped as uninformative."""
    max_words: int = 400
    """Top-weighted words kept per free-text field (by summed TF-IDF over the items)."""
    min_word_items: int = 5
    """Rare words: a word must occur in at least this many items' text."""
    min_word_length: int = 3
    """Shorter words are dropped (after stop words)."""
    pop_quantiles: tuple[float, ...] = (0.01, 0.1, 0.3, 0.6)
    """Upper edges of the popularity bands as shares of items ranked by training count."""
    max_single_items: int = 500
    """Most single-item concepts (the most popular items first)."""
    min_item_count: int = 20
    """A single item becomes a concept only with at least this many training interactions."""
    numeric_bands: int = 4
    """Quantile bands for numeric attributes other than a year."""
    clusters: str = "auto"
    """Co-consumption clusters of items from the training histories: 'auto' adds them only when
    the catalogue has no named attribute (no title or text field, every category a bare code),
    so named catalogues keep their vocabulary; 'on' always; 'off' never."""
    cluster_items: int = 50
    """Items per cluster aimed at (the number of clusters is the interacted items over this)."""
    max_clusters: int = 200
    """Most clusters."""
    label_items: int = 3
    """Most popular member items named in an anonymous concept's name."""

    def __post_init__(self) -> None:
        if self.clusters not in ("auto", "on", "off"):
            raise ConfigError(f"concepts.clusters must be auto, on or off, got {self.clusters!r}")
        if self.cluster_items < 2 or self.max_clusters < 2 or self.label_items < 1:
            raise ConfigError("concepts: cluster_items and max_clusters must be >= 2 and label_items >= 1, got "
                              f"{self.cluster_items}, {self.max_clusters}, {self.label_items}")


class ConceptVocab(NamedTuple):
    """Item x concept membership with names."""

    matrix: sp.csr_matrix
    """(n_items + 1) x n_concepts float32 0/1; row 0 (padding) is empty."""
    names: list[str]
    """``attribute=value`` per concept."""
    attribute: list[str]
    """Source of each concept: the metadata attribute name, or 'pop' / 'item' / 'decade'."""
    kind: list[str]
    """'value', 'word', 'band' or 'item' per concept."""
    anonymous: list[bool] | None = None
    """Per concept: its name says nothing by itself (a cluster, a bare category code, an item
    known by its id), so it carries its most popular items; None where not recorded."""

    @property
    def n_concepts(self) -> int:
        return len(self.names)

    def concept_index(self, name: str) -> int:
        return self.names.index(name)


def tokenize(text: str, min_length: int = 3) -> list[str]:
    """Lower-cased words of ``text`` without stop words, numbers and short words."""
    words = (w.lower().strip("'") for w in _TOKEN.findall(text))
    return [w for w in words if len(w) >= min_length and w not in STOP_WORDS]


def concept_prefix(name: str) -> str:
    """Singular concept prefix of an attribute name: 'genres' -> 'genre'."""
    return name[:-1] if len(name) > 3 and name.endswith("s") and not name.endswith("ss") else name


class _Builder:
    """Collects concepts as (name, attribute, kind, item rows)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.attribute: list[str] = []
        self.kind: list[str] = []
        self.rows: list[np.ndarray] = []

        self.anonymous: list[bool] = []

    def add(self, name: str, attribute: str, kind: str, items: np.ndarray, anonymous: bool = False) -> None:
        self.names.append(name)
        self.attribute.append(attribute)
        self.kind.append(kind)
        self.rows.append(np.unique(np.asarray(items, dtype=np.int64)))
        self.anonymous.append(anonymous)


_CODE = re.compile(r"[-+]?\d+")


def is_code(value: str) -> bool:
    """A bare integer code ('264'), which names nothing by itself."""
    return _CODE.fullmatch(str(value).strip()) is not None


def has_names(meta: ItemMeta) -> bool:
    """Whether the catalogue names anything: a title or text field with a word, or a categorical
    or multi-valued attribute with a value that is not a bare code. Without titles, an item's
    title is its id (``recsae.data.loaders.common.make_dataset``), which names nothing."""
    if any(any(t and not is_code(t) for t in texts[1:]) for texts in meta.text.values()):
        return True
    single = (v for values in meta.categorical.values() for v in values[1:])
    multi = (v for values in meta.multi.values() for vs in values[1:] for v in vs)
    return any(v and not is_code(v) for v in (*single, *multi))


def _label(items: np.ndarray, meta: ItemMeta, counts: np.ndarray, n: int) -> str:
    """The ``n`` most popular of ``items`` by title, or by id where the titles are ids:
    'items 50, 181, 258' or 'Heat, Fargo, Alien'."""
    items = np.asarray(items, dtype=np.int64)
    top = items[np.argsort(-counts[items], kind="stable")][:n]
    titled = any(t for t in meta.text.get("title", [])[1:])
    shown = ", ".join(meta.title[i] or str(i) for i in top)
    return shown if titled else f"item{'s' if len(top) > 1 else ''} {shown}"


def _values(b: _Builder, attr: str, per_item: Sequence[Sequence[str]], meta: ItemMeta, counts: np.ndarray,
            cfg: ConceptConfig) -> None:
    groups: dict[str, list[int]] = {}
    for item, values in enumerate(per_item):
        if item == 0:
            continue
        for v in values:
            v = str(v).strip()
            if v:
                groups.setdefault(v, []).append(item)
    for value in sorted(groups):
        items = np.array(groups[value])
        if is_code(value):  # a code: its most popular items say what it holds
            b.add(f"{concept_prefix(attr)}={value} ({_label(items, meta, counts, cfg.label_items)})", attr, "value", items, True)
        else:
            b.add(f"{concept_prefix(attr)}={value}", attr, "value", items)


def _inv_sqrt(d: np.ndarray) -> sp.dia_matrix:
    """diag(1 / sqrt(d)), 0 where d is 0."""
    return sp.diags(np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-12)), 0.0))


def _clusters(b: _Builder, histories: Ragged, meta: ItemMeta, counts: np.ndarray, cfg: ConceptConfig) -> None:
    """Co-consumption clusters: items embedded by the leading singular vectors of the user x item
    matrix normalised by both degrees (spectral co-clustering: items consumed by the same users
    land close), then k-means on the unit-length embeddings. Deterministic (fixed seeds) and
    linear in the interactions. Clusters are numbered by their training interactions, most first."""
    from scipy.cluster.vq import kmeans2
    from scipy.sparse.linalg import svds

    n_rows = len(meta)
    users, items = histories.row_ids(), histories.values
    x = sp.csr_matrix((np.ones(len(items)), (users, items)), shape=(len(histories), n_rows))
    x.data[:] = 1.0  # a repeated item counts once per user
    du, di = np.asarray(x.sum(axis=1)).ravel(), np.asarray(x.sum(axis=0)).ravel()
    active = np.flatnonzero(di > 0)
    active = active[active > 0]
    k = int(np.clip(round(len(active) / cfg.cluster_items), 2, cfg.max_clusters))
    dim = min(k + 1, min(x.shape) - 1, 33)
    if len(active) < 2 * cfg.min_items or dim < 2:
        return
    a = (_inv_sqrt(du) @ x @ _inv_sqrt(di)).tocsc()
    v0 = np.random.default_rng(0).random(min(a.shape))
    _, values, vt = svds(a, k=dim, v0=v0, solver="arpack")
    leading = np.argsort(-values)[1:]  # the first singular vector is the degrees' own: it says nothing
    emb = vt[leading].T[active]  # (a degree scaling per item would vanish in the normalisation below)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    _, assign = kmeans2(emb, k, seed=np.random.default_rng(0), minit="++")
    sizes = np.bincount(assign, weights=counts[active], minlength=k)
    for rank, c in enumerate(np.argsort(-sizes, kind="stable"), start=1):
        members = active[assign == c]
        if len(members):
            b.add(f"cluster={rank} ({_label(members, meta, counts, cfg.label_items)})", "cluster", "value", members, True)


def _words(b: _Builder, attr: str, texts: Sequence[str], cfg: ConceptConfig) -> None:
    """Top words of one text field by summed TF-IDF (term frequency normalised per item)."""
    vocab: dict[str, int] = {}
    item_idx: list[int] = []
    word_idx: list[int] = []
    for item, text in enumerate(texts):
        if item == 0 or not text:
            continue
        for w in set(tokenize(text, cfg.min_word_length)):
            item_idx.append(item)
            word_idx.append(vocab.setdefault(w, len(vocab)))
    if not vocab:
        return
    n_items = len(texts)
    m = sp.csr_matrix(
        (np.ones(len(item_idx), dtype=np.float64), (item_idx, word_idx)), shape=(n_items, len(vocab))
    )
    df = np.asarray((m > 0).sum(axis=0)).ravel()
    n_docs = max(1, int(np.count_nonzero(np.asarray(m.sum(axis=1)).ravel())))
    idf = np.log((1 + n_docs) / (1 + df)) + 1.0
    tf = sp.diags(1.0 / np.maximum(np.asarray(m.sum(axis=1)).ravel(), 1.0)) @ m
    score = np.asarray((tf @ sp.diags(idf)).sum(axis=0)).ravel()
    keep = np.flatnonzero(df >= cfg.min_word_items)
    keep = keep[np.argsort(-score[keep], kind="stable")][: cfg.max_words]
    words = {i: w for w, i in vocab.items()}
    keep_ids = [int(j) for j in keep]
    prefix = "word" if attr == "title" else f"{attr}_word"
    csc = m.tocsc()
    for j in sorted(keep_ids, key=lambda j: words[j]):
        b.add(f"{prefix}={words[j]}", attr, "word", csc.indices[csc.indptr[j] : csc.indptr[j + 1]])


def _numeric(b: _Builder, attr: str, values: np.ndarray, cfg: ConceptConfig) -> None:
    values = np.asarray(values, dtype=np.float64)
    items = np.flatnonzero(np.isfinite(values))
    items = items[items > 0]
    if not len(items):
        return
    v = values[items]
    if attr.lower().endswith("year"):
        decades = (np.floor(v / 10) * 10).astype(np.int64)
        for d in np.unique(decades):
            b.add(f"decade={d}s", attr, "band", items[decades == d])
        return
    edges = np.unique(np.quantile(v, np.linspace(0, 1, cfg.numeric_bands + 1)[1:-1]))
    band = np.searchsorted(edges, v, side="right")
    for q in np.unique(band):
        b.add(f"{attr}=q{q + 1}of{len(edges) + 1}", attr, "band", items[band == q])


def _popularity(b: _Builder, counts: np.ndarray, cfg: ConceptConfig) -> None:
    items = np.arange(1, len(counts))
    order = items[np.argsort(-counts[1:], kind="stable")]
    order = order[counts[order] > 0]
    n = len(order)
    if not n:
        return
    lo = 0.0
    for q in (*cfg.pop_quantiles, 1.0):
        a, z = round(lo * n), round(q * n)
        name = f"pop=top{_pct(q)}%" if lo == 0 else f"pop=top{_pct(lo)}-{_pct(q)}%"
        if q == 1.0 and lo > 0:
            name = f"pop=bottom{_pct(1 - lo)}%"
        if z > a:
            b.add(name, "pop", "band", order[a:z])
        lo = q


def _pct(q: float) -> str:
    return f"{100 * q:g}"


def build_vocabulary(
    meta: ItemMeta, item_counts: np.ndarray, cfg: ConceptConfig | None = None, histories: Ragged | None = None,
) -> ConceptVocab:
    """The concept vocabulary of a catalogue.

    ``item_counts`` ((n_items + 1,), training interactions per item) defines the popularity
    bands and which single items are frequent enough to be concepts. ``histories`` (the users'
    known items, e.g. ``split.history("test")``) give the co-consumption clusters
    (``cfg.clusters``); without them there are none.
    """
    cfg = cfg or ConceptConfig()
    n_rows = len(meta)
    counts = np.asarray(item_counts, dtype=np.float64)
    if len(counts) != n_rows:
        raise ValueError(f"item_counts has {len(counts)} entries, item_meta {n_rows} rows")
    b = _Builder()
    for attr in sorted(meta.categorical):
        _values(b, attr, [(v,) for v in meta.categorical[attr]], meta, counts, cfg)
    for attr in sorted(meta.multi):
        _values(b, attr, meta.multi[attr], meta, counts, cfg)
    for attr in sorted(meta.numeric):
        _numeric(b, attr, meta.numeric[attr], cfg)
    _popularity(b, counts, cfg)
    for attr in sorted(meta.text):
        _words(b, attr, meta.text[attr], cfg)
    n_item_rows = n_rows - 1
    frequent = np.flatnonzero(counts >= max(cfg.min_item_count, 1))
    frequent = frequent[frequent > 0]
    frequent = frequent[np.argsort(-counts[frequent], kind="stable")][: cfg.max_single_items]
    titled = any(t for t in meta.text.get("title", [])[1:])
    for item in sorted(frequent):
        title = meta.title[item] or str(item)
        b.add(f"item={title}", "item", "item", np.array([item]), not titled)
    if histories is not None and (cfg.clusters == "on" or (cfg.clusters == "auto" and not has_names(meta))):
        _clusters(b, histories, meta, counts, cfg)

    keep: list[int] = []
    seen: set[bytes] = set()
    for c, rows in enumerate(b.rows):
        size = len(rows)
        if b.kind[c] != "item" and (size < cfg.min_items or size > cfg.max_item_share * n_item_rows):
            continue
        key = rows.tobytes()
        if key in seen:
            continue
        seen.add(key)
        keep.append(c)
    cols = np.repeat(np.arange(len(keep)), [len(b.rows[c]) for c in keep])
    rows = np.concatenate([b.rows[c] for c in keep]) if keep else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_rows, len(keep))
    )
    return ConceptVocab(
        matrix=matrix,
        names=[b.names[c] for c in keep],
        attribute=[b.attribute[c] for c in keep],
        kind=[b.kind[c] for c in keep],
        anonymous=[b.anonymous[c] for c in keep],
    )
