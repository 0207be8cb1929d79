"""Per-row concept features (docs/method.md §4.2), as one sparse 0/1 rows x features matrix.

A row is a prefix ``histories[user][:position]`` with the model's top-K recommendations for it.
For every concept c the features are

- ``input``: at least a share θ of the prefix's last ``window`` items carry c (the recency
  window, default 20, keeps long histories from washing out what the model attends to now);
- ``last``: the prefix's last item carries c;
- ``output``: at least a share θ of the row's top-K recommendations carry c,

for each θ in ``share_thresholds``. A single-item concept gets one presence feature per side
instead (the item is in the window / in the top-K). Everything is computed with sparse matrix
products (window-membership matrix x item-concept matrix), chunked over rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from recsae.data.dataset import Ragged
from recsae.errors import DataError
from recsae.interpret.concepts import ConceptVocab

_EPS = 1e-6  # shares like 3/10 are compared to 0.3 in float32


@dataclass(frozen=True)
class FeatureConfig:
    """Which per-row concept features are computed."""

    window: int = 20
    """Input side: only the prefix's last ``window`` items count."""
    share_thresholds: tuple[float, ...] = (0.3, 0.6)
    """A share feature holds when at least this share of the window / top-K carries the concept."""
    sides: tuple[str, ...] = ("input", "last", "output")
    """Feature families to compute ('input', 'last', 'output')."""
    chunk_rows: int = 131072
    """Rows processed at once (bounds memory)."""


class RowContext(NamedTuple):
    """Where each activation row comes from."""

    users: np.ndarray
    """(rows,) int64 internal user id."""
    positions: np.ndarray
    """(rows,) prefix length t: the prefix is ``histories[user][:t]``."""
    histories: Ragged
    """Full chronological history of every user."""
    recs: np.ndarray | None
    """(rows, K) int64 top-K recommended items per row (0 = none), or None (no output side)."""


class FeatureSpace(NamedTuple):
    """Meaning of each feature column."""

    concept: np.ndarray
    """(F,) concept index."""
    side: np.ndarray
    """(F,) 'input', 'last' or 'output'."""
    threshold: np.ndarray
    """(F,) share threshold (0 for presence / last-item features)."""
    window: int
    top_k: int

    @property
    def n_features(self) -> int:
        return len(self.concept)

    def describe(self, f: int, vocab: ConceptVocab) -> str:
        """Human-readable text of feature ``f``."""
        name = vocab.names[int(self.concept[f])]
        side, thr = str(self.side[f]), float(self.threshold[f])
        if side == "last":
            return f"last item has {name}"
        where = f"last {self.window} items" if side == "input" else f"top-{self.top_k} recs"
        if thr <= 0:
            return f"{name} in {where}"
        return f"≥{100 * thr:g}% of {where} have {name}"


def feature_space(vocab: ConceptVocab, cfg: FeatureConfig, top_k: int) -> FeatureSpace:
    """Column layout: blocks of (side, threshold) over the eligible concepts."""
    unknown = set(cfg.sides) - {"input", "last", "output"}
    if unknown:
        raise ValueError(f"unknown feature sides {sorted(unknown)}")
    is_item = np.array([k == "item" for k in vocab.kind], dtype=bool)
    all_c = np.arange(vocab.n_concepts)
    concept, side, thr = [], [], []
    for s in ("input", "last", "output"):
        if s not in cfg.sides or (s == "output" and top_k == 0):
            continue
        if s == "last":
            concept.append(all_c)
            side.append(np.full(len(all_c), s))
            thr.append(np.zeros(len(all_c)))
            continue
        for k, t in enumerate(cfg.share_thresholds):
            cs = all_c if k == 0 else all_c[~is_item]
            concept.append(cs)
            side.append(np.full(len(cs), s))
            thr.append(np.where(is_item[cs], 0.0, t))
    return FeatureSpace(
        concept=np.concatenate(concept) if concept else np.zeros(0, dtype=np.int64),
        side=np.concatenate(side) if side else np.zeros(0, dtype="<U6"),
        threshold=np.concatenate(thr) if thr else np.zeros(0),
        window=cfg.window,
        top_k=top_k,
    )


def _check_context(ctx: RowContext) -> None:
    users = np.asarray(ctx.users)
    pos = np.asarray(ctx.positions)
    if users.shape != pos.shape or users.ndim != 1:
        raise DataError(f"users {users.shape} and positions {pos.shape} must be equal-length vectors")
    if len(users) and (users.min() < 0 or users.max() >= len(ctx.histories)):
        raise DataError("user id outside the histories", field="user")
    lengths = ctx.histories.lengths()[users]
    if np.any(pos < 0) or np.any(pos > lengths):
        bad = int(np.flatnonzero((pos < 0) | (pos > lengths))[0])
        raise DataError(
            f"position {int(pos[bad])} outside user {int(users[bad])}'s history of "
            f"{int(lengths[bad])} items (row {bad})",
            field="position",
        )
    if ctx.recs is not None and (ctx.recs.ndim != 2 or len(ctx.recs) != len(users)):
        raise DataError(f"recs must be (rows x K) with {len(users)} rows, got {ctx.recs.shape}")


def window_matrix(
    users: np.ndarray, positions: np.ndarray, histories: Ragged, window: int, n_items: int
) -> sp.csr_matrix:
    """rows x items: weight 1/len on each of the prefix's last ``window`` items."""
    end = histories.indptr[users] + positions
    length = np.minimum(positions, window).astype(np.int64)
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(length, out=indptr[1:])
    idx = np.repeat(end - length - indptr[:-1], length) + np.arange(indptr[-1])
    data = np.repeat(1.0 / np.maximum(length, 1), length).astype(np.float32)
    return sp.csr_matrix((data, histories.values[idx], indptr), shape=(len(users), n_items))


def _binarise(shares: sp.csr_matrix, col_thr: np.ndarray, col_map: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """Keep entries with share ≥ threshold of their concept, moved to their feature column."""
    shares = shares.tocsr()
    c = shares.indices
    keep = (col_map[c] >= 0) & (shares.data >= col_thr[c] - _EPS) & (shares.data > 0)
    rows = np.repeat(np.arange(shares.shape[0]), np.diff(shares.indptr))[keep]
    return sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows, col_map[c[keep]])),
        shape=(shares.shape[0], n_cols),
    )


def row_features(
    ctx: RowContext, vocab: ConceptVocab, cfg: FeatureConfig | None = None
) -> tuple[sp.csr_matrix, FeatureSpace]:
    """The rows x features 0/1 matrix (float32 CSR, sorted indices) and its column layout."""
    cfg = cfg or FeatureConfig()
    _check_context(ctx)
    top_k = 0 if ctx.recs is None else int(ctx.recs.shape[1])
    space = feature_space(vocab, cfg, top_k)
    n_items = vocab.matrix.shape[0]
    if ctx.recs is not None and len(ctx.recs) and (ctx.recs.min() < 0 or ctx.recs.max() >= n_items):
        raise DataError(f"recommended item ids must be in [0, {n_items})", field="recs")
    blocks = []  # (side, threshold per concept, column per concept)
    for s in ("input", "last", "output"):
        sel = np.flatnonzero(space.side == s)
        if not len(sel):
            continue
        # One block per distinct threshold position: a concept appears at most once per block.
        order = np.argsort(space.concept[sel], kind="stable")
        sel = sel[order]
        rank = np.arange(len(sel)) - np.searchsorted(space.concept[sel], space.concept[sel])
        for r in range(int(rank.max()) + 1):
            cols = sel[rank == r]
            col_map = np.full(vocab.n_concepts, -1, dtype=np.int64)
            col_map[space.concept[cols]] = cols
            col_thr = np.zeros(vocab.n_concepts)
            col_thr[space.concept[cols]] = space.threshold[cols]
            blocks.append((s, col_thr, col_map))
    users = np.asarray(ctx.users, dtype=np.int64)
    positions = np.asarray(ctx.positions, dtype=np.int64)
    vm = vocab.matrix.tocsr().astype(np.float32)
    out = []
    for a in range(0, len(users), cfg.chunk_rows):
        u, p = users[a : a + cfg.chunk_rows], positions[a : a + cfg.chunk_rows]
        shares: dict[str, sp.csr_matrix] = {}
        if "input" in cfg.sides:
            shares["input"] = window_matrix(u, p, ctx.histories, cfg.window, n_items) @ vm
        if "last" in cfg.sides:
            last = np.where(p > 0, ctx.histories.values[ctx.histories.indptr[u] + np.maximum(p, 1) - 1], 0)
            shares["last"] = vm[last]
        if top_k and "output" in cfg.sides:
            recs = np.asarray(ctx.recs[a : a + cfg.chunk_rows], dtype=np.int64)  # type: ignore[index]
            rm = sp.csr_matrix(
                (np.full(recs.size, 1.0 / top_k, dtype=np.float32), recs.ravel(), np.arange(len(recs) + 1) * top_k),
                shape=(len(recs), n_items),
            )
            shares["output"] = rm @ vm
        parts = [_binarise(shares[s], thr, cmap, space.n_features) for s, thr, cmap in blocks]
        out.append(sum(parts[1:], parts[0]) if parts else sp.csr_matrix((len(u), space.n_features), dtype=np.float32))
    feats = sp.vstack(out, format="csr") if out else sp.csr_matrix((0, space.n_features), dtype=np.float32)
    feats.sort_indices()
    return feats.astype(np.float32), space
