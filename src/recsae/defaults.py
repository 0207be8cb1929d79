"""Defaults that scale with the data: the recommender's learning rate, batch size and patience
from the dataset's size, and the SAE's width and k from the rows it will train on.

Pure functions of a few counts (no torch): ``recsae run`` applies them to every option the user
left unset (``pipeline.resolve_defaults``), under the tuned ``PRESETS`` of a named dataset and
under every option given explicitly. The rules reproduce the settings measured on the synthetic
data and ML-1M exactly (tests/test_defaults.py), so those runs train as they did before the rules.
"""

from __future__ import annotations

from typing import NamedTuple

SMALL_USERS = 2_000
"""Below this many users the validation NDCG@10 (one held-out item per user) is noisy enough
that patience 10 stops training at an early bump: ml-100k's SASRec stopped some seeds early at
10, and LightGCN there stopped at epoch 5 (test NDCG@10 0.042, most-popular 0.041) where
patience 20 trains it on to 0.065 (lr 5e-3). Patience is 20 below, 10 (``TrainConfig``'s) at
or above."""
SEQ_SMALL_INTERACTIONS = 100_000
"""Sequential models: below this many interactions an epoch is a few dozen steps and lr 5e-3
trains (the synthetic data's 67.6k interactions; ml-latest-small's 41k, where 1e-3 and batch
128 left SASRec at most-popular level)."""
SEQ_LARGE_INTERACTIONS = 2_000_000
"""Sequential models: lr 3e-3 below this many interactions (on ML-1M's 574k, lr 3e-3 and batch
64 reached a better validation NDCG@10 sooner than 1e-3 / 128); 1e-3, the usual SASRec rate, at
or above (not measured here)."""
SEQ_BATCH_USERS = 20_000
"""Sequential models: batches of 64 sequences below this many users (ML-1M's 6,034 users give
94 steps per epoch), else the model's 128 (not measured here)."""
GENERAL_SMALL_INTERACTIONS = 200_000
"""General models (pairs per batch): below this many interactions, batches of 1,024 pairs
instead of 4,096, so that an epoch has at least about 50 steps (ml-100k's 54k interactions: 13
steps at 4,096), and LightGCN's lr is 5e-3. On ml-100k (leave-one-out, patience 20, seed 0)
LightGCN reached test NDCG@10 0.071 with lr 5e-3 and batch 1,024, against 0.065 with batch
4,096, 0.059 with lr 1e-3 and 0.048 with both; BPR-MF reached 0.067 with lr 1e-3 and batch
1,024, against 0.060 with lr 5e-3: BPR-MF keeps 1e-3. ML-1M (574k) keeps 4,096 and 1e-3."""


def lr_text(lr: float) -> str:
    """A learning rate as people write it: 5e-3, 1e-2, 0.5."""
    if not 0 < lr < 0.1:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


class TrainDefaults(NamedTuple):
    """The recommender's training options chosen from the data, and why."""

    lr: float
    batch_size: int
    patience: int
    why: dict[str, str]
    """The reason for each option (lr, batch_size, patience)."""

    @property
    def reasons(self) -> str:
        """Every option's reason, in one text."""
        return "; ".join(self.why.values())


def train_defaults(model: str, sequential: bool, n_users: int, n_interactions: int) -> TrainDefaults:
    """Learning rate, batch size (sequences for sequential models, pairs for general ones) and
    early-stopping patience for registry model ``model`` on ``n_users`` users and
    ``n_interactions`` interactions (the thresholds above say what each rule rests on)."""
    small = n_users < SMALL_USERS
    patience = 20 if small else 10
    why = {"patience": f"{'under' if small else 'at least'} {SMALL_USERS:,} users"
           + (" (noisy validation)" if small else "")}
    if sequential:
        if n_interactions < SEQ_SMALL_INTERACTIONS:
            lr, size = 5e-3, f"under {SEQ_SMALL_INTERACTIONS:,}"
        elif n_interactions < SEQ_LARGE_INTERACTIONS:
            lr, size = 3e-3, f"{SEQ_SMALL_INTERACTIONS:,} to {SEQ_LARGE_INTERACTIONS:,}"
        else:
            lr, size = 1e-3, f"at least {SEQ_LARGE_INTERACTIONS:,}"
        batch = 64 if n_users < SEQ_BATCH_USERS else 128
        why |= {"lr": f"{size} interactions",
                "batch_size": f"{'under' if batch == 64 else 'at least'} {SEQ_BATCH_USERS:,} users"}
    else:
        few = n_interactions < GENERAL_SMALL_INTERACTIONS
        batch = 1024 if few else 4096
        lr = 5e-3 if few and model == "lightgcn" else 1e-3
        size = f"{'under' if few else 'at least'} {GENERAL_SMALL_INTERACTIONS:,} interactions"
        why |= {"lr": size + (", LightGCN" if lr != 1e-3 else ""), "batch_size": size}
    return TrainDefaults(lr, batch, patience, why)


DEFAULT_K = 32
"""Active latents per row, where the data allows it (ML-1M and the synthetic data's)."""
MAX_EXPANSION = 32
"""The widest SAE chosen: 32 latents per input dimension (ML-1M's and the synthetic data's)."""
MIN_USERS_PER_LATENT = 20
"""A latent must fire, on average, on the rows of at least this many users. The interpretation
validates a latent's rule on other users than those it was fitted on, and the rows of one user
(every prefix of a history, for LightGCN near copies of each other) count little more than one.
With k of m latents active per row, a latent fires on average on rows of n_users · k / m users:
2,048 latents (expansion 32 at d 64) give the synthetic data's 1,500 users 23 and ML-1M's
6,034 users 94; ml-100k's 938 would get 15 and are given 1,024 latents (29). Narrower SAEs
did not raise ml-100k LightGCN's interpretable share (expansion 8 / k 16: 1.8 %, 4 / 8: 1.6 %,
32 / 32: 2.7 %; benchmarks/results/bench_general_rows.json): the rule keeps latents testable,
it does not promise more interpretable ones."""
MIN_ROWS_PER_LATENT = 150
"""A latent must fire, on average, on at least this many rows: the interpretation needs 20
strongly firing rows (the top half of a latent's firing rows) among the validation users' (30 %
of the rows): 20 / (0.3 · 0.5) ≈ 133."""
MAX_DENSITY = 1 / 16
"""k is at most this share of the latents, so that a narrow SAE's codes stay sparse."""


class SaeDefaults(NamedTuple):
    """The SAE's shape chosen from the rows it trains on, and why."""

    k: int
    expansion: int
    n_latents: int
    reasons: str


def _support(n_rows: int, n_users: int, k: int, m: int) -> tuple[float, float]:
    """Mean rows and mean users a latent fires on, with k of m latents active per row."""
    return n_rows * k / m, n_users * k / m


def sae_defaults(n_rows: int, n_users: int, d: int, k: int | None = None, expansion: int | None = None) -> SaeDefaults:
    """The widest expansion (a power of two, at most ``MAX_EXPANSION``) whose latents fire on
    enough rows (``MIN_ROWS_PER_LATENT``) of enough users (``MIN_USERS_PER_LATENT``), from the
    ``n_rows`` harvested rows of ``n_users`` users at width ``d``, with k = ``DEFAULT_K`` or less
    where the SAE is so narrow that k would exceed ``MAX_DENSITY`` of its latents; expansion 1
    where no width is enough (``width_warning`` says so). A given ``k`` or ``expansion`` is kept
    and the other chosen around it."""
    def k_for(m: int) -> int:
        return k if k is not None else max(1, min(DEFAULT_K, int(m * MAX_DENSITY)))

    if expansion is None:
        expansion = MAX_EXPANSION
        # never narrower than a given k allows (k <= m)
        while (expansion > 1 and k_for(expansion // 2 * d) <= expansion // 2 * d
               and not _enough(n_rows, n_users, k_for(expansion * d), expansion * d)):
            expansion //= 2
    m = expansion * d
    rows, users = _support(n_rows, n_users, k_for(m), m)
    reasons = (f"{n_rows:,} rows of {n_users:,} users at d {d}: {m:,} latents with k {k_for(m)} fire on ~{rows:,.0f} "
               f"rows of ~{users:,.0f} users each (at least {MIN_ROWS_PER_LATENT} rows of {MIN_USERS_PER_LATENT} users)")
    return SaeDefaults(k_for(m), expansion, m, reasons)


def _enough(n_rows: int, n_users: int, k: int, m: int) -> bool:
    rows, users = _support(n_rows, n_users, k, m)
    return rows >= MIN_ROWS_PER_LATENT and users >= MIN_USERS_PER_LATENT


def width_warning(n_rows: int, n_users: int, d: int, k: int, expansion: int) -> str | None:
    """A warning when an SAE of ``expansion`` · ``d`` latents with ``k`` active is too wide for
    ``n_rows`` rows of ``n_users`` users: its latents would fire on too few rows or users to be
    validated (None when it is not)."""
    m = expansion * d
    if _enough(n_rows, n_users, k, m):
        return None
    rows, users = _support(n_rows, n_users, k, m)
    fit = sae_defaults(n_rows, n_users, d, k=k)
    advice = (f"expansion {fit.expansion} ({fit.n_latents:,} latents) is the widest that fits"
              if fit.expansion < expansion else "the data is too small for any width: expect few validated latents")
    return (f"SAE: {m:,} latents with k {k} fire on ~{rows:,.0f} rows of ~{users:,.0f} users each on average "
            f"({n_rows:,} rows of {n_users:,} users), fewer than the {MIN_ROWS_PER_LATENT} rows of "
            f"{MIN_USERS_PER_LATENT} users a latent needs to be validated; {advice}")
