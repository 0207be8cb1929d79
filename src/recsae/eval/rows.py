"""The RecSAE reference's evaluation protocol (``eval_protocol="rechorus"``): every held-out
interaction is its own next-item prediction, ranked as ReChorus ranks it with ``test_all``.

For a held-out row of user u at position p of u's time line (the training rows, then the
validation rows, then the test rows; a given split keeps its dataset's time order):

- the model input is u's interactions before it, of every part, the last ``max_len`` of them;
- every item of u's whole time line is masked (training, validation and test, earlier and later
  ones: ReChorus's clicked set), and so is the padding item; the target itself stays scored;
- the target's rank is one plus the number of unmasked items scoring at least as high
  (pessimistic ties);
- a row without an earlier interaction is not scored (ReChorus drops position 0).

Metrics are means over rows, so a user counts once per held-out row. The per-user protocol of
``recsae.eval.evaluate`` pools a user's targets instead; on a split with many held-out rows per
user the two disagree, and only this one compares with the reference's figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from recsae.data.dataset import Ragged, SplitData, SplitName, input_sequences
from recsae.errors import ConfigError
from recsae.eval.evaluator import (
    DEFAULT_KS,
    EvalResult,
    ScoreFn,
    _sample_negatives,
    add_metrics,
    gather_metrics,
    mask_history,
)
from recsae.eval.metrics import METRICS

TIME_ORDERED = ("leave-one-out", "time", "global-time", "given")
"""Split protocols whose parts follow each other in time, so that 'earlier' has a meaning."""


class HeldOutRows(NamedTuple):
    """The held-out rows of one part, each a next-item prediction."""

    user: np.ndarray
    """The user of each row."""
    target: np.ndarray
    """The held-out item of each row."""
    history: Ragged
    """Row r: its user's interactions before it (the last ``max_len``), oldest first."""
    timeline: Ragged
    """Per user (not per row): every interaction of every part, the items masked in ranking."""


def timeline(split: SplitData) -> tuple[Ragged, Ragged]:
    """Every user's interactions of all three parts in time order, and the part of each
    (0 train, 1 valid, 2 test), both per user."""
    parts = (split.train, split.valid, split.test)
    ds = split.dataset
    row_split = getattr(ds, "row_split", None)
    n_rows = len(split.train)
    if split.protocol == "given" and row_split is not None and len(row_split) == sum(len(p.values) for p in parts):
        # the dataset's rows are in (user, time) order: a given split may interleave its parts
        return (Ragged.from_sorted_pairs(ds.user, ds.item, n_rows),
                Ragged.from_sorted_pairs(ds.user, row_split.astype(np.int64), n_rows))
    rows = np.concatenate([p.row_ids() for p in parts])
    order = np.argsort(rows, kind="stable")
    items = np.concatenate([p.values for p in parts])[order]
    labels = np.concatenate([np.full(len(p.values), k, dtype=np.int64) for k, p in enumerate(parts)])[order]
    return Ragged.from_sorted_pairs(rows[order], items, n_rows), Ragged.from_sorted_pairs(rows[order], labels, n_rows)


def held_out_rows(split: SplitData, which: SplitName, max_len: int, users: np.ndarray | None = None) -> HeldOutRows:
    """The rows of part ``which`` that have an earlier interaction (of ``users`` only, when given),
    in (user, time) order. ConfigError for a split without a time order."""
    if which == "train":
        raise ValueError("the train split has no held-out targets")
    if split.protocol not in TIME_ORDERED:
        raise ConfigError(f"the rechorus evaluation protocol needs held-out rows that follow the training rows in "
                          f"time; the {split.protocol} split has none (use --protocol global-time, time or leave-one-out "
                          "on data with timestamps, or --eval-protocol per-user)")
    items, part = timeline(split)
    user_of = items.row_ids()
    position = np.arange(len(items.values)) - items.indptr[user_of]
    chosen = (part.values == (1 if which == "valid" else 2)) & (position > 0)
    if users is not None:
        chosen &= np.isin(user_of, np.asarray(users, dtype=np.int64))
    idx = np.flatnonzero(chosen)
    n_hist = np.minimum(position[idx], max_len)
    indptr = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(n_hist, out=indptr[1:])
    offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], n_hist)
    history = Ragged(indptr, items.values[np.repeat(idx - n_hist, n_hist) + offsets])
    return HeldOutRows(user_of[idx], items.values[idx], history, items)


def row_ranks(
    scores: torch.Tensor, targets: np.ndarray, timeline: Ragged, users: np.ndarray,
    num_negatives: int | None = None, rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """The rank (B x 1, float64) of each row's target among ``scores`` (B x items) as ReChorus
    ranks it: one plus the items outside the row's user's ``timeline`` scoring at least as high
    (pessimistic ties); with ``num_negatives``, only that many unmasked items drawn with ``rng``
    compete. Masks ``scores`` in place, the target's own column too."""
    target_t = torch.from_numpy(targets).to(scores.device)
    target = scores[torch.arange(len(targets), device=scores.device), target_t].clone()
    scores = mask_history(scores, timeline, users)
    if num_negatives:
        assert rng is not None, "sampled negatives need a generator"
        scores = scores.masked_fill(~_sample_negatives(scores, num_negatives, rng), -torch.inf)
    return ((scores >= target[:, None]).sum(dim=1) + 1).to(torch.float64)[:, None]


def evaluate_rows(
    score_fn: ScoreFn,
    split: SplitData,
    which: SplitName = "test",
    ks: Sequence[int] = DEFAULT_KS,
    users: np.ndarray | None = None,
    batch_size: int = 1024,
    max_len: int = 200,
    num_negatives: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> EvalResult:
    """Rank every held-out row of ``which`` as its own next-item prediction (module doc).

    ``EvalResult.per_user`` then holds one value per row and ``users`` the row's user. With
    ``num_negatives`` each target competes only with that many sampled unmasked items.
    """
    rows = held_out_rows(split, which, max_len, users)
    ks = tuple(sorted(set(int(k) for k in ks)))
    prefix = f"sampled{num_negatives}:" if num_negatives else ""
    names = [f"{prefix}{m}@{k}" for m in METRICS for k in ks]
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rng = np.random.default_rng(seed)
    for start in range(0, len(rows.user), batch_size):
        idx = np.arange(start, min(start + batch_size, len(rows.user)))
        seqs = input_sequences(rows.history, idx, max_len)
        user_t = torch.from_numpy(rows.user[idx])
        if device is not None:
            seqs, user_t = seqs.to(device), user_t.to(device)
        with torch.no_grad():
            scores = score_fn(user_t, seqs).float()
        ranks = row_ranks(scores, rows.target[idx], rows.timeline, rows.user[idx], num_negatives, rng)
        add_metrics(values, ranks, torch.ones(len(idx), dtype=torch.int64, device=scores.device), ks, prefix)
    arrays, metrics, protocol = gather_metrics(values, num_negatives)
    protocol.update(split=which, eval_protocol="rechorus", unit="held-out row",
                    history="all earlier interactions of the user", masked="all of the user's items",
                    ties="pessimistic", n_rows=len(rows.user), n_users=len(np.unique(rows.user)))
    return EvalResult(metrics, arrays, rows.user, protocol)
