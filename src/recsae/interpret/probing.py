"""k-sparse probing (SAEBench style): can a few units predict a concept label of each row?

For every concept with enough support, the units (SAE latents, raw neurons, or a control's
latents) are ranked on the fit rows by the gap between their mean activation on the concept's
positive and negative rows; the top k feed an L2-regularised logistic regression (inputs
standardised on the fit rows) whose ROC AUC is measured on the held-out rows. A dictionary whose
latents line up with concepts reaches a high AUC with k = 1 or 2, where random directions or raw
neurons need many more; a logistic probe on every dimension of the representation
(``dense_probe``) is the ceiling. The fit / held-out split is by user and made by the caller
(``recsae.interpret.validate.split_users``), so no user's rows inform both sides.

The label used here is ``next_item_labels``: whether the item that follows the row's prefix
belongs to the concept, i.e. whether the representation encodes what the user watches next.

The logistic fits are batched over concepts: a damped Newton method for the few columns of the
sparse probe (exact and deterministic), L-BFGS in torch for the dense one (all concepts in one
objective, which separates over concepts, so each concept gets its own optimum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import expit
from scipy.stats import rankdata

from recsae.data.dataset import Ragged
from recsae.errors import ConfigError, DataError


@dataclass(frozen=True)
class ProbeConfig:
    """How the probes are chosen, fitted and sampled."""

    ks: tuple[int, ...] = (1, 2, 5)
    """Units per sparse probe (one probe per k and concept)."""
    min_positive: int = 50
    """A concept is probed only with at least this many positive rows, and as many negative
    rows, among both the fit rows and the held-out rows (after sampling)."""
    max_rows: int = 200_000
    """Rows sampled (seeded) when there are more; bounds time and memory."""
    l2: float = 1.0
    """Ridge strength of the logistic probe on standardised inputs (the intercept is not
    penalised); it keeps the fit finite when a unit separates the classes."""
    max_iter: int = 200
    """Most Newton (sparse probe) or L-BFGS (dense probe) iterations."""
    seed: int = 0
    """Seed of the row sample and of the bootstrap intervals."""

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"probe: ks must be a non-empty tuple of positive ints, got {self.ks}")
        if self.min_positive < 1 or self.max_rows < 2 or self.max_iter < 1:
            raise ConfigError("probe: min_positive and max_iter must be >= 1, max_rows >= 2")
        if not self.l2 > 0:
            raise ConfigError(f"probe: l2 must be positive, got {self.l2}")


class Labels(NamedTuple):
    """Binary concept labels of rows."""

    matrix: sp.csr_matrix
    """rows x concepts float32 0/1; rows without a label are empty."""
    has_next: np.ndarray
    """(rows,) bool: the row has a next item, hence a label. Probe only these rows (``keep=``):
    an empty row of ``matrix`` is a negative for every concept otherwise."""


class ProbeResult(NamedTuple):
    """Held-out AUC per probed concept; arrays follow ``concepts``."""

    concepts: np.ndarray
    """(n,) concept column indices probed (those with enough support), ascending."""
    auc: dict[int, np.ndarray]
    """k -> (n,) held-out ROC AUC of the probe on k units (the dense probe: k = all dims)."""
    units: dict[int, np.ndarray]
    """k -> (n, k) chosen unit indices, best first (empty for the dense probe, which uses all)."""
    n_fit_pos: np.ndarray
    """(n,) positive fit rows per concept."""
    n_eval_pos: np.ndarray
    """(n,) positive held-out rows per concept."""


def next_item_labels(
    users: np.ndarray, positions: np.ndarray, histories: Ragged, membership: sp.spmatrix
) -> Labels:
    """Row r is labelled with the concepts of ``histories[users[r]][positions[r]]``, the item right
    after the prefix of length ``positions[r]``; rows at the end of their history get none.
    ``membership`` is (n_items + 1) x C 0/1 (``ConceptVocab.matrix``, row 0 the padding item)."""
    users = np.asarray(users, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    if users.shape != positions.shape or users.ndim != 1:
        raise DataError(f"users {users.shape} and positions {positions.shape} must be equal-length vectors")
    if len(users) and (users.min() < 0 or users.max() >= len(histories)):
        raise DataError("user id outside the histories", field="user")
    lengths = histories.lengths()[users]
    if np.any((positions < 0) | (positions > lengths)):
        raise DataError("position outside its user's history (must be in [0, len(history)])", field="position")
    has_next = positions < lengths
    items = np.zeros(len(users), dtype=np.int64)
    items[has_next] = histories.values[histories.indptr[users[has_next]] + positions[has_next]]
    member = sp.csr_matrix(membership, dtype=np.float32)
    # row 0 is empty by convention; masking keeps unlabelled rows empty even if it is not
    matrix = sp.csr_matrix(member[items].multiply(has_next[:, None].astype(np.float32)), dtype=np.float32)
    matrix.eliminate_zeros()
    return Labels(matrix, has_next)


class _Targets(NamedTuple):
    """Rows and labels shared by the sparse and dense probes (same sample, same concepts)."""

    rows: np.ndarray
    fit: np.ndarray
    y: np.ndarray
    """(rows, n) bool labels of the probeable concepts."""
    concepts: np.ndarray
    n_fit_pos: np.ndarray
    n_eval_pos: np.ndarray


def _targets(
    n_rows: int, labels: sp.spmatrix, fit_mask: np.ndarray, concepts: np.ndarray | None,
    cfg: ProbeConfig, keep: np.ndarray | None,
) -> _Targets:
    fit_mask = np.asarray(fit_mask, dtype=bool)
    if labels.shape[0] != n_rows or fit_mask.shape != (n_rows,):
        raise DataError(f"{n_rows} rows of units but labels {labels.shape} and fit_mask {fit_mask.shape}")
    rows = np.arange(n_rows) if keep is None else np.flatnonzero(np.asarray(keep, dtype=bool))
    if len(rows) > cfg.max_rows:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, cfg.max_rows, replace=False))
    cols = np.arange(labels.shape[1]) if concepts is None else np.unique(np.asarray(concepts, dtype=np.int64))
    y = sp.csr_matrix(labels)[rows][:, cols].toarray() != 0
    fit = fit_mask[rows]
    n_fit, n_eval = int(fit.sum()), int((~fit).sum())
    fit_pos, eval_pos = y[fit].sum(axis=0), y[~fit].sum(axis=0)
    ok = (
        (fit_pos >= cfg.min_positive) & (n_fit - fit_pos >= cfg.min_positive)
        & (eval_pos >= cfg.min_positive) & (n_eval - eval_pos >= cfg.min_positive)
    )
    return _Targets(rows, fit, y[:, ok], cols[ok], fit_pos[ok].astype(np.int64), eval_pos[ok].astype(np.int64))


def _auc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(C,) ROC AUC of each row of ``scores`` (C x n) against ``y`` (C x n bool), ties averaged
    (Mann-Whitney U / (n_pos n_neg))."""
    ranks = rankdata(scores, axis=1)
    n_pos = y.sum(axis=1).astype(np.float64)
    n_neg = y.shape[1] - n_pos
    return ((ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _loss_from_z(z: np.ndarray, y: np.ndarray, w: np.ndarray, pen: np.ndarray) -> np.ndarray:
    """Penalised logistic loss per problem from its logits ``z`` (C, n)."""
    return (np.logaddexp(0.0, z) - y * z).sum(axis=1) + 0.5 * (pen * w**2).sum(axis=1)


def _newton_logistic(x: np.ndarray, y: np.ndarray, l2: float, max_iter: int, tol: float = 1e-9) -> np.ndarray:
    """(C, p + 1) weights (intercept first) of C independent L2-regularised logistic regressions,
    ``x`` (C, n, p), ``y`` (C, n) 0/1. Newton steps with Armijo backtracking per problem: plain
    Newton overshoots when a unit (nearly) separates the classes. The logits are linear in the
    weights, so a backtracking candidate's are ``z - t * dz``: no product with ``x`` per trial,
    and only the problems still backtracking are evaluated."""
    c, n, p = x.shape
    x1 = np.concatenate([np.ones((c, n, 1)), x], axis=2)
    pen = np.r_[0.0, np.full(p, l2)]
    ridge = np.diag(pen + 1e-9)  # keeps the intercept's Hessian invertible when p -> 0 / 1
    w = np.zeros((c, p + 1))
    rate = np.clip(y.mean(axis=1), 1e-6, 1 - 1e-6)
    w[:, 0] = np.log(rate / (1 - rate))  # start at the base rate: fewer steps
    z = np.einsum("cnp,cp->cn", x1, w)
    loss = _loss_from_z(z, y, w, pen)
    for _ in range(max_iter):
        prob = expit(z)
        grad = np.einsum("cnp,cn->cp", x1, prob - y) + pen * w
        hess = x1.transpose(0, 2, 1) @ (x1 * (prob * (1 - prob))[:, :, None]) + ridge
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        decrement = (grad * step).sum(axis=1)
        if decrement.max() < tol:
            break
        dz = np.einsum("cnp,cp->cn", x1, step)
        t = np.ones(c)
        new_w, new_z, new_loss = w - step, z - dz, np.empty(c)
        todo = np.arange(c)
        for _ in range(40):
            new_w[todo] = w[todo] - t[todo, None] * step[todo]
            new_z[todo] = z[todo] - t[todo, None] * dz[todo]
            new_loss[todo] = _loss_from_z(new_z[todo], y[todo], new_w[todo], pen)
            bad = new_loss[todo] > loss[todo] - 1e-4 * t[todo] * decrement[todo]
            todo = todo[bad]
            if not len(todo):
                break
            t[todo] /= 2
        else:  # no descent left at rounding level: those problems keep their weights
            new_w[todo], new_z[todo], new_loss[todo] = w[todo], z[todo], loss[todo]
        w, z, loss = new_w, new_z, new_loss
    return w


def _as_csr(acts: sp.spmatrix | np.ndarray, rows: np.ndarray) -> sp.csr_matrix:
    """Rows of ``acts`` as canonical float64 CSR: dense and sparse inputs share one code path and
    so give identical numbers."""
    sub = sp.csr_matrix(acts)[rows] if sp.issparse(acts) else np.asarray(acts)[rows]
    out = sp.csr_matrix(sub, dtype=np.float64, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.sort_indices()
    return out


MAX_PROBE_ENTRIES = 2e7
"""Design-matrix entries a sparse probe holds at once (concepts are fitted in blocks of about
this many): bounds memory at many concepts or rows; probes run side by side share it."""


def sparse_probe(
    acts: sp.spmatrix | np.ndarray, labels: sp.spmatrix, fit_mask: np.ndarray,
    concepts: np.ndarray | None = None, cfg: ProbeConfig | None = None, *, keep: np.ndarray | None = None,
    max_entries: float = MAX_PROBE_ENTRIES,
) -> ProbeResult:
    """k-sparse probes of every concept (columns of ``labels``, or those in ``concepts``) with
    enough support, for every k in ``cfg.ks``. ``acts`` is rows x units (sparse or dense),
    ``labels`` rows x concepts 0/1, ``fit_mask`` the rows to fit on (the rest are held out),
    ``keep`` the rows to use at all (e.g. ``Labels.has_next``). ``max_entries``: design-matrix
    entries held at once (concepts are fitted in blocks of that size; the figures do not depend
    on it)."""
    cfg = cfg or ProbeConfig()
    n_rows, m = acts.shape
    ks = sorted(set(cfg.ks))
    if ks[-1] > m:
        raise ConfigError(f"probe: k = {ks[-1]} exceeds the {m} units")
    tg = _targets(n_rows, labels, fit_mask, concepts, cfg, keep)
    n = len(tg.concepts)
    if n == 0:
        return ProbeResult(
            tg.concepts, {k: np.zeros(0) for k in ks}, {k: np.zeros((0, k), dtype=np.int64) for k in ks},
            tg.n_fit_pos, tg.n_eval_pos,
        )
    x = _as_csr(acts, tg.rows)
    x_fit, y_fit = x[tg.fit], tg.y[tg.fit]
    # all units x all concepts at once: sums over positive rows by one sparse product
    pos_sum = np.asarray((sp.csr_matrix(y_fit.T, dtype=np.float64) @ x_fit).toarray())
    total = np.asarray(x_fit.sum(axis=0)).ravel()
    n_pos = y_fit.sum(axis=0).astype(np.float64)[:, None]
    gap = np.abs(pos_sum / n_pos - (total - pos_sum) / (len(y_fit) - n_pos))
    ranked = np.argsort(-gap, axis=1, kind="stable")[:, : ks[-1]]  # ties: lowest unit index
    y_eval = tg.y[~tg.fit].T
    auc = {k: np.zeros(n) for k in ks}
    # concepts in blocks of ~max_entries design-matrix entries: bounds memory at many concepts or rows
    block = max(1, int(max_entries // (len(tg.rows) * (ks[-1] + 1))))
    for a in range(0, n, block):
        used, local = np.unique(ranked[a : a + block], return_inverse=True)
        local = local.reshape(ranked[a : a + block].shape)
        dense = np.asarray(x[:, used].toarray())
        mean, std = dense[tg.fit].mean(axis=0), dense[tg.fit].std(axis=0)
        dense = (dense - mean) / np.where(std > 0, std, 1.0)
        d_fit, d_eval = dense[tg.fit], dense[~tg.fit]
        y_block = y_fit[:, a : a + block].T.astype(np.float64)
        for k in ks:
            cols = local[:, :k]
            w = _newton_logistic(d_fit[:, cols].transpose(1, 0, 2), y_block, cfg.l2, cfg.max_iter)
            scores = np.einsum("ncj,cj->cn", d_eval[:, cols], w[:, 1:]) + w[:, :1]
            auc[k][a : a + block] = _auc(scores, y_eval[a : a + block])
    units = {k: ranked[:, :k].astype(np.int64) for k in ks}
    return ProbeResult(tg.concepts, auc, units, tg.n_fit_pos, tg.n_eval_pos)


def dense_probe(
    reps: np.ndarray, labels: sp.spmatrix, fit_mask: np.ndarray, concepts: np.ndarray | None = None,
    cfg: ProbeConfig | None = None, *, keep: np.ndarray | None = None,
) -> ProbeResult:
    """The ceiling: a logistic probe on all d dimensions of ``reps`` (rows x d) per concept, on the
    same rows and concepts as ``sparse_probe`` with the same arguments. Returned as a
    ``ProbeResult`` with the single key k = d and no ``units``."""
    cfg = cfg or ProbeConfig()
    reps = np.asarray(reps)
    n_rows, d = reps.shape
    tg = _targets(n_rows, labels, fit_mask, concepts, cfg, keep)
    n = len(tg.concepts)
    if n == 0:
        return ProbeResult(tg.concepts, {d: np.zeros(0)}, {}, tg.n_fit_pos, tg.n_eval_pos)
    x = np.asarray(reps[tg.rows], dtype=np.float64)
    mean, std = x[tg.fit].mean(axis=0), x[tg.fit].std(axis=0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    x_fit = torch.from_numpy(np.ascontiguousarray(x[tg.fit]))
    y_fit = torch.from_numpy(tg.y[tg.fit].astype(np.float64))
    rate = np.clip(tg.y[tg.fit].mean(axis=0), 1e-6, 1 - 1e-6)
    weight = torch.zeros(d, n, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(np.log(rate / (1 - rate)), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=cfg.max_iter, history_size=20, tolerance_grad=1e-9,
        tolerance_change=1e-12, line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = x_fit @ weight + bias
        # the sum over concepts separates, so the joint optimum is each concept's own; / rows
        # puts the gradient tolerance on a per-row scale
        loss = ((torch.nn.functional.softplus(z) - y_fit * z).sum() + 0.5 * cfg.l2 * (weight**2).sum()) / len(x_fit)
        loss.backward()
        return loss

    opt.step(closure)
    w, b = weight.detach().numpy(), bias.detach().numpy()
    scores = (x[~tg.fit] @ w + b).T
    return ProbeResult(tg.concepts, {d: _auc(scores, tg.y[~tg.fit].T)}, {}, tg.n_fit_pos, tg.n_eval_pos)


def _float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def mean_ci(values: np.ndarray, seed: int, n_boot: int) -> tuple[float | None, float | None, float | None]:
    """Mean and 95 % percentile-bootstrap interval over the entries; Nones when there are none."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return None, None, None
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))
    boot = values[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return _float(values.mean()), _float(lo), _float(hi)


def probe_summary(result: ProbeResult, names: list[str], seed: int = 0, n_boot: int = 2000) -> dict[str, Any]:
    """JSON-ready summary: per k the mean held-out AUC over the probed concepts with a 95 %
    bootstrap interval over concepts, then one entry per concept (``names`` indexed by column)."""
    ks = sorted(result.auc)
    by_k = []
    for k in ks:
        mean, lo, hi = mean_ci(result.auc[k], seed, n_boot)
        by_k.append({"k": int(k), "mean_auc": mean, "ci_low": lo, "ci_high": hi})
    per_concept = [
        {
            "concept": names[c],
            "column": int(c),
            "n_fit_pos": int(result.n_fit_pos[i]),
            "n_eval_pos": int(result.n_eval_pos[i]),
            "auc": {str(k): _float(result.auc[k][i]) for k in ks},
            "units": {str(k): result.units[k][i].tolist() for k in sorted(result.units)},
        }
        for i, c in enumerate(result.concepts.tolist())
    ]
    return {"n_concepts": len(result.concepts), "ks": [int(k) for k in ks], "by_k": by_k, "concepts": per_concept}


def auc_gap(
    a: ProbeResult, b: ProbeResult, k: int, seed: int = 0, k_b: int | None = None, n_boot: int = 2000
) -> dict[str, Any]:
    """Mean paired AUC difference a - b (``a`` at k units, ``b`` at ``k_b``, default k; pass the
    dense probe's d to compare with the ceiling) over the concepts both probed, with a 95 %
    bootstrap interval over those concepts; None values when they share no concept."""
    k_b = k if k_b is None else k_b
    if k not in a.auc or k_b not in b.auc:
        raise ConfigError(f"probe: no AUC at k = {k} in a ({sorted(a.auc)}) or k = {k_b} in b ({sorted(b.auc)})")
    common, ia, ib = np.intersect1d(a.concepts, b.concepts, return_indices=True)
    diff = a.auc[k][ia] - b.auc[k_b][ib]
    mean, lo, hi = mean_ci(diff, seed, n_boot)
    return {
        "k": int(k), "k_b": int(k_b), "n_concepts": len(common), "mean_diff": mean, "ci_low": lo, "ci_high": hi,
        "share_a_better": _float(float(np.mean(diff > 0))) if len(diff) else None,
    }
