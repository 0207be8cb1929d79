"""Held-out validation of the fitted rules (docs/method.md §4.3 and §4.5).

Rows are split by user: a seeded random ``fit_fraction`` of the users give the fit rows, the
others the validation rows, so no user is on both sides.

On the validation rows, for each latent j and its rule R_j:

- **confidence** = balanced accuracy of R_j at telling apart the rows where j fires strongly
  (its ``band``, thresholds from the fit rows) from the rows where j is inactive:
  ``(P(R_j | band) + P(not R_j | inactive)) / 2``. Active rows below the band are left out, as
  docs/method.md §4.5 specifies. Its 95 % interval is the adjusted Wald interval for a mean of two
  independent proportions (each proportion p = x / n replaced by (x + 1) / (n + 2), the
  Agresti-Caffo adjustment), so a perfect score on few rows still gets a wide interval; the
  number of firing (band) and inactive rows is reported beside it.
- **precision / recall / F1** of "R_j ⇔ j active" over all validation rows, with active = fires
  at all (SAE: activation > 0; neurons: top decile): the strict view, reported beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.sparse as sp

from recsae.interpret.dictionary import LatentStates, RowShare, Rules, feature_keys, rule_counts

if TYPE_CHECKING:
    from recsae.distributed import World


def split_users(users: np.ndarray, fit_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the rows whose user is in the fit split (a seeded share of the users)."""
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    uniq = np.unique(users)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    n_fit = min(max(round(fit_fraction * len(uniq)), 1), max(len(uniq) - 1, 1))
    return np.isin(users, uniq[perm[:n_fit]])


class Validation(NamedTuple):
    """Validated statistics per latent (arrays of length m)."""

    n_rows: int
    n_band: np.ndarray
    """Validation rows where the latent fires strongly (the positives of the confidence)."""
    n_inactive: np.ndarray
    """Validation rows where the latent is inactive (the negatives of the confidence)."""
    n_active: np.ndarray
    support: np.ndarray
    """Validation rows where the rule holds."""
    tpr: np.ndarray
    tnr: np.ndarray
    confidence: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray


def balanced_accuracy_ci(
    x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray, z: float = 1.959964
) -> tuple[np.ndarray, np.ndarray]:
    """95 % interval of (x1/n1 + x2/n2) / 2 by the Agresti-Caffo adjusted Wald method."""
    p1 = (x1 + 1.0) / (n1 + 2.0)
    p2 = (x2 + 1.0) / (n2 + 2.0)
    center = (p1 + p2) / 2
    half = z * np.sqrt(p1 * (1 - p1) / (n1 + 2.0) + p2 * (1 - p2) / (n2 + 2.0)) / 2
    return np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)


def validate_rules(feats: sp.csr_matrix, states: LatentStates, rules: Rules, world: World | None = None) -> Validation:
    """Score every latent's rule on the (validation) rows of ``feats`` and ``states``.
    ``world`` (torchrun, every rank with the same arguments): each rank counts its block of
    the rows, the counts are summed over the ranks, and every rank returns one process's."""
    share = RowShare(feats.shape[0], world)
    feats = share(feats)
    band = share(states.band)
    active = band if states.active is states.band else share(states.active)
    engaged = active if states.engaged is states.active else share(states.engaged)
    keys = feature_keys(feats)

    def counts(target: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        return rule_counts(feats, target, rules.feature_a, rules.feature_b, rules.op, keys)

    def colsum(x: sp.csr_matrix) -> np.ndarray:
        return np.asarray(x.sum(axis=0)).ravel().astype(np.float64)

    tp_band, support = counts(band)
    tp_active = tp_band if active is band else counts(active)[0]
    tp_engaged = tp_active if engaged is active else counts(engaged)[0]
    n_band, n_active, n_engaged = colsum(band), colsum(active), colsum(engaged)
    rows = np.array([float(feats.shape[0])])
    tp_band, support, tp_active, tp_engaged, n_band, n_active, n_engaged, rows = share.total(
        tp_band, support, tp_active, tp_engaged, n_band, n_active, n_engaged, rows)
    n = int(rows[0])
    n_inactive = n - n_engaged
    has_rule = rules.feature_a >= 0
    support = np.where(has_rule, support, 0.0)
    true_neg = n_inactive - (support - np.where(has_rule, tp_engaged, 0.0))
    tp_band = np.where(has_rule, tp_band, 0.0)
    tp_active = np.where(has_rule, tp_active, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.where(n_band > 0, tp_band / n_band, np.nan)
        tnr = np.where(n_inactive > 0, true_neg / n_inactive, np.nan)
        precision = np.where(support > 0, tp_active / support, 0.0)
        recall = np.where(n_active > 0, tp_active / n_active, 0.0)
        f1 = np.where(support + n_active > 0, 2 * tp_active / (support + n_active), 0.0)
    confidence = (tpr + tnr) / 2
    lo, hi = balanced_accuracy_ci(tp_band, n_band, true_neg, n_inactive)
    undefined = np.isnan(confidence)
    lo, hi = np.where(undefined, np.nan, lo), np.where(undefined, np.nan, hi)
    return Validation(n, n_band, n_inactive, n_active, support, tpr, tnr, confidence, lo, hi, precision, recall, f1)


def shuffled_rules(rules: Rules, units: np.ndarray, seed: int) -> Rules:
    """The shuffled-explanation control: each of ``units`` (indices of units with a rule) gets
    the rule of another of them (a seeded derangement: a random cyclic order, each unit taking
    its successor's rule); every other unit keeps no rule. Validated like the real rules, these
    must score at chance: otherwise the confidence rewards something other than the match
    between a unit and its own explanation."""
    units = np.asarray(units, dtype=np.int64)
    none = np.full_like(rules.feature_a, -1)
    a, b, op = none.copy(), none.copy(), np.zeros_like(rules.op)
    if len(units) >= 2:
        order = units[np.random.default_rng(seed).permutation(len(units))]
        donor = np.roll(order, -1)
        a[order], b[order], op[order] = rules.feature_a[donor], rules.feature_b[donor], rules.op[donor]
    return rules._replace(feature_a=a, feature_b=b, op=op)
