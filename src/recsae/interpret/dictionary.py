"""The concept dictionary: the best rule per latent, fitted on the fit users (docs/method.md §4.3,
§4.4), vectorised over all latents and features at once.

A latent's state on each row is summarised by three 0/1 sparse matrices (``LatentStates``):

- ``band``: it fires strongly: activation ≥ the ``band_quantile`` (median) of its active
  fit values (SAE latents: the non-zero ones; neurons: those in the top decile, so the top 5 %);
- ``active``: it fires (SAE: > 0; neurons, which never rest: its top decile, docs/method.md §4.6);
- ``engaged``: it is not inactive; by default the same as ``active``. Rows outside ``engaged``
  are the negatives of the confidence score.

A rule is one feature, or two combined by OR / AND. Single rules are scored for every
(latent, feature) pair with sparse products ``target.T @ features``; two-term rules are built
from each latent's top candidates with inclusion-exclusion, where the three-way counts come
from looking up each (row, latent) entry's candidate features in the feature matrix.

Rules are chosen by Youden's J = TPR − FPR of "rule ⇒ target" against the rows outside
``engaged`` by default: the fit-split twin of the validated confidence (balanced accuracy =
(J + 1) / 2), so the rule that is validated is the one that was fitted for it. F1 (precision-
weighted; it prefers narrow rules) is the alternative ``select='f1'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from recsae.distributed import World

SELECTIONS = ("youden", "f1")
"""Scores that can pick a latent's rule (``FitConfig.select``)."""

OP_NAMES = ("", "OR", "AND")
"""Rule operators: 0 = single feature, 1 = OR, 2 = AND of two features."""


@dataclass(frozen=True)
class FitConfig:
    """How rules are scored and chosen on the fit rows."""

    fit_target: str = "band"
    """What a rule should predict on the fit rows: 'band' (strong firing) or 'active' (any)."""
    min_support: int = 5
    """A feature must hold on at least this many fit rows to become a rule."""
    max_terms: int = 2
    """1: single-feature rules only; 2: also OR / AND of two of the top candidates."""
    n_candidates: int = 4
    """Top single features per latent combined into two-term rules."""
    combo_min_gain: float = 0.02
    """A two-term rule replaces the single one only when its fit score is higher by this much."""
    select: str = "youden"
    """Score that picks the rule: 'youden' (TPR − FPR, matching the confidence) or 'f1'."""


class LatentStates(NamedTuple):
    """0/1 rows x latents matrices (float32 CSR) describing when each latent fires."""

    band: sp.csr_matrix
    active: sp.csr_matrix
    engaged: sp.csr_matrix
    band_threshold: np.ndarray
    """(m,) activation threshold of the band (inf where the latent never fires on fit rows)."""

    def subset(self, rows: np.ndarray) -> LatentStates:
        """The states of the given rows (shared matrices stay shared)."""
        band = self.band[rows]
        active = band if self.active is self.band else self.active[rows]
        engaged = active if self.engaged is self.active else self.engaged[rows]
        return LatentStates(band, active, engaged, self.band_threshold)


class Rules(NamedTuple):
    """One rule per latent with its fit statistics (arrays of length m)."""

    feature_a: np.ndarray
    """First feature (-1 where no rule: the latent never fires on fit rows)."""
    feature_b: np.ndarray
    """Second feature (-1 for single rules)."""
    op: np.ndarray
    """0 single, 1 OR, 2 AND."""
    support: np.ndarray
    """Fit rows where the rule holds."""
    n_target: np.ndarray
    """Fit rows where the latent is in its target state."""
    tp: np.ndarray
    """Fit rows with both."""
    n_rows: int

    def stats(self) -> dict[str, np.ndarray]:
        """precision, recall, F1 and lift of "rule ⇒ target" on the fit rows."""
        return _prf(self.tp, self.support, self.n_target, self.n_rows)


def _prf(tp: np.ndarray, support: np.ndarray, n_target: np.ndarray, n_rows: int) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        recall = np.where(n_target > 0, tp / np.maximum(n_target, 1), 0.0)
        f1 = np.where(support + n_target > 0, 2 * tp / np.maximum(support + n_target, 1), 0.0)
        base = n_target / max(n_rows, 1)
        lift = np.where(base > 0, precision / np.where(base > 0, base, 1.0), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "lift": lift}


def _select(m: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """Entries of CSR ``m`` where the boolean ``keep`` (aligned with ``m.data``) holds, as 0/1."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    indptr = np.zeros(m.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=m.shape[0]), out=indptr[1:])
    return sp.csr_matrix((np.ones(int(indptr[-1]), dtype=np.float32), m.indices[keep], indptr), shape=m.shape)


def column_order(col: np.ndarray, values: np.ndarray, descending: bool = False) -> np.ndarray:
    """Permutation sorting entries by column, then by value (ascending or descending).

    One float64 sort of ``column + scaled value`` (value mapped into [0, 0.5)), several times
    faster than ``np.lexsort``; values closer than ~1e-11 of their range may swap, which cannot
    change a threshold or a top-row list in any way that matters.
    """
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    scaled = (v - lo) / (2 * (hi - lo)) if hi > lo else np.zeros_like(v)
    key = col.astype(np.float64) + (0.5 - scaled if descending else scaled)
    return np.argsort(key)


def sae_states(acts: sp.csr_matrix, fit_rows: np.ndarray, band_quantile: float = 0.5) -> LatentStates:
    """States of sparse (SAE) latents; band thresholds from the non-zero fit activations."""
    acts = sp.csr_matrix(acts, dtype=np.float32)
    acts.eliminate_zeros()
    fit = acts[fit_rows].tocsc()
    m = acts.shape[1]
    counts = np.diff(fit.indptr)
    col = np.repeat(np.arange(m), counts)
    vals = fit.data[column_order(col, fit.data)]
    pick = fit.indptr[:-1] + np.floor(band_quantile * np.maximum(counts - 1, 0)).astype(np.int64)
    thr = np.full(m, np.inf, dtype=np.float64)
    alive = counts > 0
    thr[alive] = vals[pick[alive]]
    positive = acts.data > 0
    active = _select(acts, positive)
    band = _select(acts, positive & (acts.data >= thr[acts.indices]))
    return LatentStates(band=band, active=active, engaged=active, band_threshold=thr)


def neuron_states(
    acts: np.ndarray, fit_rows: np.ndarray, active_quantile: float = 0.9, band_quantile: float = 0.5,
    inactive_quantile: float | None = None,
) -> LatentStates:
    """States of dense units (raw neurons), parallel to the SAE's: ``active`` = the top decile
    (≥ the ``active_quantile`` of the fit rows); ``band`` = at or above the ``band_quantile``
    (median) of the active fit values, i.e. the top 5 %; inactive = not active, unless
    ``inactive_quantile`` sets a lower cut (rows between it and the active cut are then left out
    of the confidence, which flatters the neurons)."""
    acts = np.asarray(acts, dtype=np.float32)
    fit = acts[fit_rows]
    d = acts.shape[1]
    if not len(fit):
        inf = np.full(d, np.inf)
        empty = sp.csr_matrix(acts.shape, dtype=np.float32)
        return LatentStates(empty, empty, empty, inf)
    cut = np.quantile(fit, active_quantile, axis=0)
    top = np.where(fit >= cut, fit, np.nan)
    hi = np.nanquantile(top, band_quantile, axis=0, method="lower")
    active = sp.csr_matrix((acts >= cut).astype(np.float32))
    band = sp.csr_matrix((acts >= hi).astype(np.float32))
    if inactive_quantile is None:
        engaged = active
    else:
        engaged = sp.csr_matrix((acts >= np.quantile(fit, inactive_quantile, axis=0)).astype(np.float32))
    return LatentStates(band=band, active=active, engaged=engaged, band_threshold=np.asarray(hi, dtype=np.float64))


def member(feats: sp.csr_matrix, rows: np.ndarray, features: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
    """Whether ``feats[rows[i], features[i]]`` is set, for all i at once (-1 features: False).

    ``keys`` (from ``feature_keys``) can be passed to reuse the sorted lookup table.
    """
    if keys is None:
        keys = feature_keys(feats)
    q = rows.astype(np.int64) * feats.shape[1] + np.maximum(features, 0)
    pos = np.searchsorted(keys, q)
    hit = np.zeros(len(q), dtype=bool)
    ok = pos < len(keys)
    hit[ok] = keys[pos[ok]] == q[ok]
    return hit & (features >= 0)


def feature_keys(feats: sp.csr_matrix) -> np.ndarray:
    """Sorted ``row * n_features + column`` of every set entry (rows ascending, indices sorted)."""
    feats.sort_indices()
    rows = np.repeat(np.arange(feats.shape[0], dtype=np.int64), np.diff(feats.indptr))
    return rows * feats.shape[1] + feats.indices


class RowShare:
    """The rows a process counts (torchrun: this rank's block of them; one process: all) and
    the sum of its counts over the ranks. Every count below is a sum over rows, so the ranks'
    sums of their blocks are exactly one process's counts (integers in float64)."""

    def __init__(self, n_rows: int, world: World | None = None) -> None:
        self.world = world
        self.rows: slice | None = None
        if world is not None and world.distributed:
            from recsae.distributed import rank_slice

            self.rows = rank_slice(n_rows, world)

    def __call__(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """This process's rows of ``x``."""
        return x if self.rows is None else x[self.rows]

    def total(self, *counts: np.ndarray) -> list[np.ndarray]:
        """Each of ``counts`` (float64) summed over the ranks, in one reduction."""
        if self.rows is None or self.world is None:
            return list(counts)
        from recsae.distributed import all_reduce

        flat = all_reduce(self.world, np.concatenate([np.ravel(c) for c in counts]), what="interpretation counts")
        parts = np.split(flat, np.cumsum([np.size(c) for c in counts])[:-1])
        return [p.reshape(np.shape(c)) for p, c in zip(parts, counts, strict=True)]


ALL_ROWS = RowShare(0)
"""A process's share when it counts every row itself."""


class PairSupport:
    """Rows where two features both hold, from the Gram matrix of the features involved
    (``share``: summed over the ranks' rows of ``feats``, which are then the local block)."""

    def __init__(self, feats: sp.csr_matrix, features: np.ndarray, share: RowShare = ALL_ROWS) -> None:
        self.features = np.unique(features[features >= 0])
        sub = feats[:, self.features]
        self.gram = share.total((sub.T @ sub).toarray().astype(np.float64))[0]

    def __call__(self, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        """Support of (fa[i] AND fb[i]); 0 where either is -1."""
        ok = (fa >= 0) & (fb >= 0)
        ia = np.searchsorted(self.features, np.where(ok, fa, self.features[:1]))
        ib = np.searchsorted(self.features, np.where(ok, fb, self.features[:1]))
        return np.where(ok, self.gram[np.minimum(ia, len(self.features) - 1), np.minimum(ib, len(self.features) - 1)], 0.0)


def pair_support(feats: sp.csr_matrix, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Rows where both features hold, for each pair (fa[i], fb[i]) (0 where either is -1)."""
    ok = (fa >= 0) & (fb >= 0)
    if not ok.any():
        return np.zeros(len(fa))
    return PairSupport(feats, np.concatenate([fa[ok], fb[ok]]))(fa, fb)


def rule_counts(
    feats: sp.csr_matrix, target: sp.csr_matrix, fa: np.ndarray, fb: np.ndarray, op: np.ndarray,
    keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For every latent j: (rows where its rule holds and target[:, j] is set, rows where its
    rule holds). Vectorised over latents via lookups of the target's entries."""
    if keys is None:
        keys = feature_keys(feats)
    m = target.shape[1]
    rows = np.repeat(np.arange(target.shape[0]), np.diff(target.indptr))
    lat = target.indices
    ha = member(feats, rows, fa[lat], keys)
    hb = member(feats, rows, fb[lat], keys)
    o = op[lat]
    holds = np.where(o == 1, ha | hb, np.where(o == 2, ha & hb, ha))
    tp = np.bincount(lat[holds], minlength=m).astype(np.float64)
    col_support = np.asarray(feats.sum(axis=0)).ravel()
    sa = np.where(fa >= 0, col_support[np.maximum(fa, 0)], 0.0)
    sb = np.where(fb >= 0, col_support[np.maximum(fb, 0)], 0.0)
    both = pair_support(feats, np.where(op > 0, fa, -1), np.where(op > 0, fb, -1))
    support = np.where(op == 1, sa + sb - both, np.where(op == 2, both, sa))
    return tp, support


class _Scorer:
    """The selection score of rules from their counts on the fit rows (vectorised over latents)."""

    def __init__(self, select: str, n_target: np.ndarray, n_negative: np.ndarray, min_support: int) -> None:
        if select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
        self.youden = select == "youden"
        self.n_target = n_target
        self.n_negative = n_negative
        self.min_support = max(min_support, 1)

    def __call__(self, tp: np.ndarray, tp_engaged: np.ndarray, support: np.ndarray) -> np.ndarray:
        """Score of rules with ``tp`` target rows, ``tp_engaged`` engaged rows and ``support``
        rows; -1 below the minimum support. ``tp`` is (m,) or (m, features)."""
        n_target, n_negative = (self.n_target, self.n_negative) if tp.ndim == 1 else (self.n_target[:, None], self.n_negative[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.youden:
                score = tp / np.maximum(n_target, 1) - (support - tp_engaged) / np.maximum(n_negative, 1)
            else:
                score = 2 * tp / np.maximum(n_target + support, 1)
        return np.where(support >= self.min_support, score, -1.0)


def _colsum(x: sp.csr_matrix) -> np.ndarray:
    return np.asarray(x.sum(axis=0)).ravel().astype(np.float64)


def fit_rules(
    feats: sp.csr_matrix, target: sp.csr_matrix, cfg: FitConfig | None = None, engaged: sp.csr_matrix | None = None,
    world: World | None = None,
) -> Rules:
    """The best rule per latent on these (fit) rows, by ``cfg.select``.

    ``engaged``: rows x latents 0/1, the rows that are not negatives (default: ``target``);
    Youden's J counts false positives among the other rows only. ``world`` (torchrun, every
    rank with the same arguments): each rank counts its block of the rows, the counts are
    summed over the ranks, and every rank returns one process's rules.
    """
    cfg = cfg or FitConfig()
    share = RowShare(feats.shape[0], world)
    feats = share(feats)
    engaged = target if engaged is None or engaged is target else engaged
    target, engaged = (share(target),) * 2 if engaged is target else (share(target), share(engaged))
    n_rows, n_feat = int(share.total(np.array([float(feats.shape[0])]))[0][0]), feats.shape[1]
    m = target.shape[1]
    n_target, n_engaged, support = _colsum(target), _colsum(engaged), _colsum(feats)
    if not n_feat:
        none = np.full(m, -1, dtype=np.int64)
        zero = np.zeros(m)
        (n_target,) = share.total(n_target)
        return Rules(none, none.copy(), np.zeros(m, dtype=np.int64), zero, n_target, zero.copy(), n_rows)
    cooc = (target.T @ feats).toarray().astype(np.float64)
    if engaged is target:
        n_target, n_engaged, support, cooc = share.total(n_target, n_engaged, support, cooc)
        cooc_eng = cooc
    else:
        n_target, n_engaged, support, cooc, cooc_eng = share.total(
            n_target, n_engaged, support, cooc, (engaged.T @ feats).toarray().astype(np.float64))
    score = _Scorer(cfg.select, n_target, n_rows - n_engaged, cfg.min_support)
    none = np.full(m, -1, dtype=np.int64)
    scores = score(cooc, cooc_eng, support[None, :])
    best = np.argmax(scores, axis=1)
    best_score = scores[np.arange(m), best]
    alive = (n_target > 0) & (best_score > -1.0)
    fa = np.where(alive, best, -1)
    fb = none.copy()
    op = np.zeros(m, dtype=np.int64)
    tp = np.where(alive, cooc[np.arange(m), best], 0.0)
    sup = np.where(alive, support[best], 0.0)
    if cfg.max_terms >= 2 and n_feat > 1:
        fa, fb, op, tp, sup = _pairs(feats, target, engaged, cooc, cooc_eng, scores, support, score, fa, tp, sup, cfg,
                                     share)
    return Rules(fa, fb, op, sup, n_target, tp, n_rows)


def _pairs(
    feats: sp.csr_matrix, target: sp.csr_matrix, engaged: sp.csr_matrix, cooc: np.ndarray, cooc_eng: np.ndarray,
    scores: np.ndarray, support: np.ndarray, score: _Scorer, fa: np.ndarray, tp: np.ndarray, sup: np.ndarray,
    cfg: FitConfig, share: RowShare = ALL_ROWS,
) -> tuple[np.ndarray, ...]:
    """Try OR / AND of each latent's top candidates; keep one where it clearly beats the single.
    (``feats``, ``target`` and ``engaged``: ``share``'s rows; the other counts are totals.)"""
    m = target.shape[1]
    ar = np.arange(m)
    t = min(cfg.n_candidates, scores.shape[1])
    cand = np.argpartition(-scores, t - 1, axis=1)[:, :t]
    cand = np.where((np.take_along_axis(scores, cand, axis=1) > -1.0) & (fa >= 0)[:, None], cand, -1)
    keys = feature_keys(feats)

    def candidate_hits(states: sp.csr_matrix) -> tuple[np.ndarray, list[np.ndarray]]:
        rows = np.repeat(np.arange(states.shape[0]), np.diff(states.indptr))
        lat = states.indices
        return lat, [member(feats, rows, cand[lat, s], keys) for s in range(t)]

    lat_t, hits_t = candidate_hits(target)
    lat_e, hits_e = (lat_t, hits_t) if engaged is target else candidate_hits(engaged)
    both = PairSupport(feats, cand.ravel(), share) if (cand >= 0).any() else None
    pairs = [(s, u) for s in range(t) for u in range(s + 1, t)]
    # rows where the latent is in its target (engaged) state and both candidates hold, per pair
    and_t_all = np.stack([np.bincount(lat_t[hits_t[s] & hits_t[u]], minlength=m) for s, u in pairs] or [np.zeros(m)])
    and_e_all = and_t_all if engaged is target else np.stack(
        [np.bincount(lat_e[hits_e[s] & hits_e[u]], minlength=m) for s, u in pairs] or [np.zeros(m)])
    and_t_all, and_e_all = share.total(and_t_all.astype(np.float64), and_e_all.astype(np.float64))
    single = np.where(fa >= 0, scores[ar, np.maximum(fa, 0)], -1.0)
    best = single.copy()
    fb, op = np.full(m, -1, dtype=np.int64), np.zeros(m, dtype=np.int64)
    for i, (s, u) in enumerate(pairs):
        a, b = cand[:, s], cand[:, u]
        ok = (a >= 0) & (b >= 0)
        a0, b0 = np.maximum(a, 0), np.maximum(b, 0)
        and_t, and_e = and_t_all[i], and_e_all[i]
        s_and = both(np.where(ok, a, -1), np.where(ok, b, -1)) if both else np.zeros(m)
        s_or = support[a0] + support[b0] - s_and
        for code, tp_c, tpe_c, s_c in (
            (1, cooc[ar, a0] + cooc[ar, b0] - and_t, cooc_eng[ar, a0] + cooc_eng[ar, b0] - and_e, s_or),
            (2, and_t, and_e, s_and),
        ):
            f = np.where(ok, score(tp_c, tpe_c, s_c), -1.0)
            better = (f >= single + cfg.combo_min_gain) & (f > best)
            best = np.where(better, f, best)
            fa = np.where(better, a, fa)
            fb = np.where(better, b, fb)
            op = np.where(better, code, op)
            tp = np.where(better, tp_c, tp)
            sup = np.where(better, s_c, sup)
    return fa, fb, op, tp, sup
