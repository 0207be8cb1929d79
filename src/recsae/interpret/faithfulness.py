"""Causal faithfulness of every unit's interpretation (docs/method.md §7.4).

A validated rule says *when* a unit fires; faithfulness asks whether the unit *does* what its
rule's concept says. For each tested unit j with concept c, on held-out rows where j fires:

- the unit's contribution is ``a_rj · w_j`` (SAE latent: activation times decoder row; raw
  neuron: its value minus its mean, along its axis), and the edits keep everything else,
  including the SAE's reconstruction error: ablate ``h' = h − a w`` (neurons: set to their
  mean), amplify ``h' = h + (s − 1) a w`` for each scale s;
- the model re-ranks every edited row (the row's prefix items masked, as in ranking) and we
  read c's share of the top-k and the mean rank of c's items (as a share of the ranked items);
- the **matched control** is another unit active on the same row with a similar contribution
  (a seeded draw among the ``n_match`` nearest in ``|a|·‖w‖``), edited the same way and read
  on the same concept c.

Per row, the unit's *swing* is c's mean rank percentile after ablation minus after the largest
amplification (positive: turning the unit up moves c's items up). The test statistic is the
unit's swing minus the control's, paired over rows: its mean, 95 % t-interval and one-sided
p-value. A unit is **faithful** when its rule is validated and the Benjamini–Hochberg
procedure over all tested units rejects "no larger than the control" at ``fdr``. The unit's
swing on another concept of the same attribute (a seeded draw per row) gives its selectivity.

Everything is batched: all (unit, row) pairs and their conditions are stacked and scored in
chunks, never a Python loop over units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from recsae.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where the tests run, so that configs load without it
    from torch import Tensor

    from recsae.data.dataset import Ragged

ScoreFn = Callable[["Tensor"], "Tensor"]
"""Representations (B x d) -> item scores (B x (n_items + 1)), column 0 the padding item."""
BYTES_PER_SCORE = 32
"""What the tests hold per scored item: the float32 score, the masking's temporaries, the int64
concept ranks and their masks (``_concept_reads``)."""


@dataclass(frozen=True)
class FaithConfig:
    """How the causal tests are run."""

    rows_per_unit: int = 20
    """Held-out rows where the unit fires, sampled per unit (seeded)."""
    min_rows: int = 8
    """A unit is tested only with at least this many rows that have a matched control."""
    scales: tuple[float, ...] = (2.0, 4.0)
    """Amplification factors s (z_j -> s z_j); the largest one defines the swing."""
    top_k: int = 10
    """Length of the recommendation list whose concept share is read."""
    n_match: int = 3
    """The control is drawn among this many other active units nearest in contribution size."""
    fdr: float = 0.05
    """False discovery rate of the Benjamini–Hochberg procedure across tested units."""
    batch_rows: int = 512
    """(unit, row) pairs scored at once; each brings 1 + 2 (1 + len(scales)) edited rows."""
    seed: int = 0
    """Seed of the row samples, the control draws and the other-concept draws."""

    def __post_init__(self) -> None:
        problems = []
        if self.rows_per_unit < 1 or self.min_rows < 2 or self.min_rows > self.rows_per_unit:
            problems.append(f"need 2 <= min_rows <= rows_per_unit, got {self.min_rows} and {self.rows_per_unit}")
        if not self.scales or any(not (s > 1.0 and np.isfinite(s)) for s in self.scales):
            problems.append(f"scales must be finite and > 1, got {self.scales}")
        if self.top_k < 1 or self.n_match < 1 or self.batch_rows < 1:
            problems.append("top_k, n_match and batch_rows must be >= 1")
        if not 0.0 < self.fdr < 1.0:
            problems.append(f"fdr must be in (0, 1), got {self.fdr}")
        if problems:
            raise ConfigError("invalid faithfulness config: " + "; ".join(problems))


class UnitEdits(NamedTuple):
    """What an edit of each unit removes or scales: h = (rest) + Σ_j coef[r, j] · directions[j]."""

    coef: sp.csr_matrix
    """rows x units; non-zero exactly where the unit fires (SAE: z; neurons: h_j − μ_j on active rows)."""
    directions: np.ndarray
    """units x d (SAE: decoder rows; neurons: the identity)."""


class Faithfulness(NamedTuple):
    """Per-unit causal evidence (arrays over units; NaN / False where a unit was not tested)."""

    tested: np.ndarray
    n_rows: np.ndarray
    effect: np.ndarray
    """Mean paired (unit swing − control swing) of c's rank percentile."""
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    q_value: np.ndarray
    """Benjamini–Hochberg adjusted p-value."""
    swing: np.ndarray
    """Mean swing of the unit on its concept (ablated rank percentile − amplified)."""
    control_swing: np.ndarray
    other_swing: np.ndarray
    """Mean swing of the unit on another concept of the same attribute."""
    ablate_share_drop: np.ndarray
    """c's top-k share unedited minus after ablation."""
    amplify_share_rise: np.ndarray
    """c's top-k share after the largest amplification minus unedited."""
    control_share_swing: np.ndarray
    """The control's (amplified − ablated) top-k share of c."""
    faithful: np.ndarray

    @property
    def selectivity(self) -> np.ndarray:
        """Swing on the unit's concept minus its swing on another concept."""
        return self.swing - self.other_swing


def benjamini_hochberg(p: np.ndarray, fdr: float) -> tuple[np.ndarray, np.ndarray]:
    """(rejected, q-values) of the Benjamini–Hochberg step-up procedure; NaN p-values are
    neither counted nor rejected."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    n = len(valid)
    if n == 0:
        return np.zeros(p.shape, dtype=bool), q
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = p[order] * n / np.arange(1, n + 1)
    q[order] = np.minimum(np.minimum.accumulate(adjusted[::-1])[::-1], 1.0)
    return np.isfinite(q) & (q <= fdr), q


def _sample_pairs(coef_csc: sp.csc_matrix, units: np.ndarray, eval_mask: np.ndarray, per_unit: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(unit, row) pairs: up to ``per_unit`` seeded random eval rows where each unit fires."""
    counts = np.diff(coef_csc.indptr)
    col = np.repeat(np.arange(coef_csc.shape[1]), counts)
    rows = coef_csc.indices
    keep = np.isin(col, units) & eval_mask[rows] & (coef_csc.data != 0)
    col, rows = col[keep], rows[keep]
    order = np.lexsort((rng.random(len(col)), col))
    col, rows = col[order], rows[order]
    start = np.r_[0, np.flatnonzero(np.diff(col)) + 1]
    rank = np.arange(len(col)) - np.repeat(start, np.diff(np.r_[start, len(col)]))
    sel = rank < per_unit
    return col[sel], rows[sel]


def _match_controls(coef: sp.csr_matrix, mass: np.ndarray, units: np.ndarray, rows: np.ndarray, n_match: int,
                    rng: np.random.Generator) -> np.ndarray:
    """For each (unit, row), another unit active on the row whose contribution |a|·‖w‖ is among
    the ``n_match`` nearest to the unit's (seeded draw); -1 where the row has no other."""
    out = np.full(len(units), -1, dtype=np.int64)
    draws = rng.random(len(units))
    for i, (j, r) in enumerate(zip(units.tolist(), rows.tolist(), strict=True)):
        lo, hi = coef.indptr[r], coef.indptr[r + 1]
        cand = coef.indices[lo:hi]
        size = np.abs(coef.data[lo:hi]) * mass[cand]
        own = cand == j
        if own.sum() == len(cand):
            continue
        target = size[own][0] if own.any() else 0.0
        cand, size = cand[~own], size[~own]
        near = cand[np.argsort(np.abs(size - target), kind="stable")[:n_match]]
        out[i] = near[int(draws[i] * len(near))]
    return out


def _other_concepts(concepts: np.ndarray, attribute: list[str], kind: list[str], rng: np.random.Generator) -> np.ndarray:
    """Per entry, a seeded random concept of the same attribute other than the given one (else
    any other non-item concept; -1 when there is none)."""
    attr = np.asarray(attribute, dtype=object)
    pool_any = np.flatnonzero(np.asarray(kind, dtype=object) != "item")
    out = np.full(len(concepts), -1, dtype=np.int64)
    draws = rng.random(len(concepts))
    cache: dict[int, np.ndarray] = {}
    for i, c in enumerate(concepts.tolist()):
        if c not in cache:
            same = np.flatnonzero(attr == attr[c])
            pool = same[same != c]
            cache[c] = pool if len(pool) else pool_any[pool_any != c]
        pool = cache[c]
        if len(pool):
            out[i] = pool[int(draws[i] * len(pool))]
    return out


def _concept_reads(scores: Tensor, concept: np.ndarray, member_csc: sp.csc_matrix, top_k: int) -> tuple[Tensor, Tensor]:
    """Per scored row: the share of its top-k (finite) items in its concept, and the concept's
    mean rank percentile among the row's finite items (0 = top, 1 = bottom; NaN when none of
    its items is ranked). Counts, for every item, the concept items scoring below it against
    the row's sorted concept scores, instead of sorting the catalogue."""
    import torch
    device = scores.device
    lengths = np.diff(member_csc.indptr)[concept]
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    idx = np.zeros((len(concept), width), dtype=np.int64)
    valid = np.arange(width)[None, :] < lengths[:, None]
    flat = np.concatenate([member_csc.indices[member_csc.indptr[c] : member_csc.indptr[c + 1]] for c in concept]) \
        if len(concept) else np.zeros(0, dtype=np.int64)
    idx[valid] = flat
    idx_t = torch.from_numpy(idx).to(device)
    cs = scores.gather(1, idx_t)
    ok = torch.from_numpy(valid).to(device) & torch.isfinite(cs)
    ordered = cs.masked_fill(~ok, torch.inf).sort(dim=1).values
    finite = torch.isfinite(scores)
    below = torch.searchsorted(ordered, scores.contiguous(), side="left").masked_fill(~finite, 0)
    n_c = ok.sum(1).double()
    n_ranked = finite.sum(1).double()
    # Σ over concept items of (items scoring strictly above it) = Σ over items of (concept items below it)
    above = below.sum(1).double()
    pct = torch.where(n_c > 0, above / n_c / n_ranked.clamp_min(1), torch.full_like(n_c, torch.nan))
    top = scores.topk(top_k, dim=1)
    in_c = (top.indices[:, :, None] == idx_t[:, None, :]).any(2) & torch.isfinite(top.values)
    share = in_c.double().sum(1) / torch.isfinite(top.values).sum(1).clamp_min(1).double()
    return share, pct


def causal_faithfulness(
    score_fn: ScoreFn,
    reps: np.ndarray,
    edits: UnitEdits,
    unit_concept: np.ndarray,
    tested: np.ndarray,
    eval_mask: np.ndarray,
    users: np.ndarray,
    positions: np.ndarray,
    histories: Ragged,
    membership: sp.spmatrix,
    attribute: list[str],
    kind: list[str],
    cfg: FaithConfig | None = None,
    device: Any = "cpu",
) -> Faithfulness:
    """Causal tests of every unit with ``tested`` true and a concept (``unit_concept`` >= 0) on
    the rows of ``eval_mask`` where it fires (see the module doc). ``reps`` (rows x d) are the
    representations the model scores; ``users``/``positions``/``histories`` give each row's
    prefix, whose items are masked; ``membership`` is (n_items + 1) x concepts."""
    import torch

    from recsae.eval import mask_history, rows_within_budget
    cfg = cfg or FaithConfig()
    rng = np.random.default_rng(cfg.seed)
    coef = sp.csr_matrix(edits.coef, dtype=np.float32)
    n_units = coef.shape[1]
    directions = torch.from_numpy(np.asarray(edits.directions, dtype=np.float32)).to(device)
    mass = np.linalg.norm(np.asarray(edits.directions, dtype=np.float64), axis=1)
    candidates = np.flatnonzero(np.asarray(tested, dtype=bool) & (np.asarray(unit_concept) >= 0))
    unit, row = _sample_pairs(coef.tocsc(), candidates, np.asarray(eval_mask, dtype=bool), cfg.rows_per_unit, rng)
    control = _match_controls(coef, mass, unit, row, cfg.n_match, rng)
    has = control >= 0
    unit, row, control = unit[has], row[has], control[has]
    concept = np.asarray(unit_concept, dtype=np.int64)[unit]
    other = _other_concepts(concept, attribute, kind, rng)
    member_csc = sp.csc_matrix(membership, dtype=np.float32)
    a_unit = np.asarray(coef[row, unit]).ravel()
    a_ctrl = np.asarray(coef[row, control]).ravel()

    # ablation removes the contribution; amplification by s adds (s - 1) of it (largest last)
    factors = torch.tensor([-1.0, *[s - 1.0 for s in sorted(cfg.scales)]], dtype=torch.float32, device=device)
    n_f = len(factors)
    n_cond = 1 + 2 * n_f
    share = np.full((len(unit), n_cond), np.nan)
    pct = np.full((len(unit), n_cond), np.nan)
    other_pct = np.full((len(unit), 2), np.nan)  # the unit ablated / amplified most, read on the other concept
    # at most cfg.batch_rows pairs at once, fewer when their scores would exceed the evaluator's budget
    per_batch = min(cfg.batch_rows, rows_within_budget(membership.shape[0] * n_cond, BYTES_PER_SCORE))
    with torch.no_grad():
        for lo in range(0, len(unit), per_batch):
            sl = slice(lo, lo + per_batch)
            b = len(unit[sl])
            h = torch.from_numpy(np.asarray(reps[row[sl]], dtype=np.float32)).to(device)
            du = torch.from_numpy(a_unit[sl]).to(device)[:, None, None] * directions[torch.from_numpy(unit[sl]).to(device)][:, None, :]
            dc = torch.from_numpy(a_ctrl[sl]).to(device)[:, None, None] * directions[torch.from_numpy(control[sl]).to(device)][:, None, :]
            edited = torch.cat([h[:, None, :], h[:, None, :] + factors[None, :, None] * du,
                                h[:, None, :] + factors[None, :, None] * dc], dim=1)  # b x n_cond x d
            scores = score_fn(edited.reshape(b * n_cond, -1)).float()
            rows = np.repeat(row[sl], n_cond)
            scores = mask_history(scores, histories, users[rows], lengths=positions[rows])
            row_share, row_pct = _concept_reads(scores, np.repeat(concept[sl], n_cond), member_csc, cfg.top_k)
            share[sl] = row_share.reshape(b, n_cond).cpu().numpy()
            pct[sl] = row_pct.reshape(b, n_cond).cpu().numpy()
            ends = scores.reshape(b, n_cond, -1)[:, [1, n_f], :].reshape(2 * b, -1)
            oc = np.repeat(np.maximum(other[sl], 0), 2)
            _, po = _concept_reads(ends, oc, member_csc, cfg.top_k)
            po_np = po.reshape(b, 2).cpu().numpy()
            po_np[other[sl] < 0] = np.nan
            other_pct[sl] = po_np

    swing = pct[:, 1] - pct[:, n_f]
    ctrl_swing = pct[:, 1 + n_f] - pct[:, 2 * n_f]
    diff = swing - ctrl_swing
    other_swing = other_pct[:, 0] - other_pct[:, 1]
    per = _per_unit(unit, n_units, {
        "diff": diff, "swing": swing, "ctrl": ctrl_swing, "other": other_swing,
        "abl": share[:, 0] - share[:, 1], "amp": share[:, n_f] - share[:, 0],
        "ctrl_share": share[:, 2 * n_f] - share[:, 1 + n_f],
    })
    n_rows = per["n"]
    is_tested = n_rows >= cfg.min_rows
    mean, sd = per["diff"], per["diff_sd"]
    from scipy.stats import t as student_t

    with np.errstate(divide="ignore", invalid="ignore"):
        se = sd / np.sqrt(n_rows)
        half = student_t.ppf(0.975, np.maximum(n_rows - 1, 1)) * se
        tstat = np.where(se > 0, mean / se, np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0)))
    p = np.where(is_tested, student_t.sf(tstat, np.maximum(n_rows - 1, 1)), np.nan)
    rejected, q = benjamini_hochberg(p, cfg.fdr)

    def tested_only(x: np.ndarray) -> np.ndarray:
        return np.where(is_tested, x, np.nan)

    return Faithfulness(
        tested=is_tested,
        n_rows=n_rows,
        effect=tested_only(mean),
        ci_low=tested_only(mean - half),
        ci_high=tested_only(mean + half),
        p_value=p,
        q_value=q,
        swing=tested_only(per["swing"]),
        control_swing=tested_only(per["ctrl"]),
        other_swing=tested_only(per["other"]),
        ablate_share_drop=tested_only(per["abl"]),
        amplify_share_rise=tested_only(per["amp"]),
        control_share_swing=tested_only(per["ctrl_share"]),
        faithful=rejected & is_tested & (mean > 0),
    )


def _per_unit(unit: np.ndarray, n_units: int, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-unit means (NaN entries skipped), the number of rows with a finite difference, and
    the sample standard deviation of ``diff``."""
    out: dict[str, np.ndarray] = {}
    for name, v in values.items():
        ok = np.isfinite(v)
        n = np.bincount(unit[ok], minlength=n_units).astype(np.float64)
        total = np.bincount(unit[ok], weights=v[ok], minlength=n_units)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = np.where(n > 0, total / n, np.nan)
        if name == "diff":
            sq = np.bincount(unit[ok], weights=v[ok] ** 2, minlength=n_units)
            with np.errstate(divide="ignore", invalid="ignore"):
                var = np.where(n > 1, (sq - n * out[name] ** 2) / (n - 1), np.nan)
            out["diff_sd"] = np.sqrt(np.maximum(var, 0.0))
            out["n"] = n.astype(np.int64)
    return out


def faithful_summary(res: Faithfulness, alive: np.ndarray, interpretable: np.ndarray) -> dict[str, Any]:
    """JSON-ready counts: faithful units, as a share of the alive ones and of the validated ones."""
    alive = np.asarray(alive, dtype=bool)
    n_alive = int(alive.sum())
    n_valid = int((np.asarray(interpretable, dtype=bool) & alive).sum())
    n_f = int((res.faithful & alive).sum())
    eff = res.effect[res.tested & alive]

    def med(x: np.ndarray) -> float | None:
        x = x[np.isfinite(x)]
        return float(np.median(x)) if len(x) else None

    return {
        "n": n_f,
        "n_tested": int((res.tested & alive).sum()),
        "share": n_f / n_alive if n_alive else 0.0,
        "share_of_interpretable": n_f / n_valid if n_valid else 0.0,
        "median_effect": med(eff),
        "median_swing": med(res.swing[res.tested & alive]),
        "median_control_swing": med(res.control_swing[res.tested & alive]),
        "median_selectivity": med(res.selectivity[res.tested & alive]),
    }
