"""Splice evaluation (docs/method.md §3): does the SAE keep the model's behaviour?

The representation h at the last position of ``split.history(which)`` (exactly what the
evaluator ranks from) is replaced in the model's own scoring, ``model.score(h')``, and ranked
under the base model's protocol (full ranking, history masked, pessimistic ties), for the same
users. Conditions:

============== =====================================================================
original       h
spliced        x̂ = SAE(h)
spliced_error  x̂ + (h − x̂), carried in float64 so that it reproduces h bit for bit
mean_ablated   μ for every user
random_sae     x̂ of an untrained SAE of the same shape (seeded tied init, b_dec = μ:
               exactly where training starts)
============== =====================================================================

μ is the mean representation over the evaluated rows unless ``mean`` is given (the CLI passes
the mean of the activation store's train rows, the SAE's training distribution); the JSON
records which. Besides the ranking metrics, each condition gets FVU (μ of the evaluated rows),
cosine(h, h'), retention (its NDCG@10 / the original's), the mean overlap of its top-10 list with
the original's, and the mean KL(softmax(original scores) ‖ softmax(its scores)) over the
unmasked items; SAE conditions add L0, dead and dense fractions and the log10 activation-
frequency histogram over the evaluated rows. Ranking metrics alone are a weak check (an
untrained SAE can keep most of NDCG@10); the agreement columns are the discriminating ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recsae.data.dataset import SplitData, SplitName
from recsae.eval import DEFAULT_KS, DotScores, evaluate, mask_history, rows_within_budget
from recsae.io import write_json
from recsae.models.base import Recommender
from recsae.probe.harvest import frozen, model_device, model_max_len
from recsae.sae.metrics import evaluate_sae
from recsae.sae.model import TopKSAE, untrained_baseline
from recsae.utils import environment_info

CONDITIONS = ("original", "spliced", "spliced_error", "mean_ablated", "random_sae")
TOP_N = 10
"""Length of the top lists compared with the original model's."""
AGREEMENT_BYTES_PER_SCORE = 56
"""What the agreement of one user's lists holds per item: two float64 score rows, their log-softmax
and its exponential, the KL terms and masks."""

Transform = Callable[[Tensor], Tensor]


@dataclass
class ConditionResult:
    """One row of the splice table."""

    metrics: dict[str, float]
    """Ranking metrics (``ndcg@10`` ...) over the evaluated users."""
    retention: float
    """NDCG@10 of this condition / NDCG@10 of the original."""
    top10_overlap: float
    """Mean |top-10 ∩ original top-10| / 10 (history masked)."""
    kl: float
    """Mean KL(softmax(original scores) ‖ softmax(these scores)) over unmasked items, in nats."""
    fvu: float
    """Σ‖h − h'‖² / Σ‖h − μ‖² over the evaluated rows, μ their mean."""
    cosine: float
    """Mean cos(h, h')."""
    max_abs_diff: float
    """max |h' − h| (0 for the original and the spliced + error rows)."""
    sae: dict[str, Any] | None = None
    """SAE conditions: l0, dead_fraction, dense_fraction, freq_histogram over the evaluated rows."""


@dataclass
class SpliceResult:
    """The splice table and how it was computed."""

    which: str
    """Split whose targets were ranked (``test`` or ``valid``)."""
    users: np.ndarray
    """The evaluated users (same for every condition)."""
    conditions: dict[str, ConditionResult]
    protocol: dict[str, Any]
    """The evaluator's protocol record (full ranking, masking, ties, n_users)."""
    config: dict[str, Any] = field(default_factory=dict)
    """ks, batch size, max_len, seed, source of μ, SAE config."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "which": self.which,
            "n_users": len(self.users),
            "protocol": self.protocol,
            "config": self.config,
            "conditions": {name: asdict(c) for name, c in self.conditions.items()},
            "environment": environment_info(),
        }

    def save(self, path: str | Path) -> None:
        """Write the table as JSON (atomically)."""
        write_json(path, self.to_dict())


def _sae_transform(sae: TopKSAE) -> Transform:
    def apply(h: Tensor) -> Tensor:
        x = h.to(sae.device, torch.float32)
        return sae.decode(*sae.encode(x)).to(h)

    return apply


def _with_error_term(sae: TopKSAE) -> Transform:
    spliced = _sae_transform(sae)

    def apply(h: Tensor) -> Tensor:
        # float64 holds the difference of two float32 values exactly (for any realistic ratio of
        # magnitudes), so x̂ + (h − x̂) rounds back to h itself.
        x_hat = spliced(h).double()
        return (x_hat + (h.double() - x_hat)).to(h.dtype)

    return apply


def _agreement(
    model: Recommender, h: Tensor, h_new: Tensor, split: SplitData, which: SplitName, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user top-10 overlap with the original list and KL(original ‖ new), history masked."""
    history = split.history(which)
    s0 = mask_history(model.score(h).double(), history, users)
    s1 = mask_history(model.score(h_new).double(), history, users)
    finite = torch.isfinite(s0)
    k = min(TOP_N, s0.shape[1])
    top0 = s0.topk(k, dim=1)
    top1 = s1.topk(k, dim=1)
    real0 = torch.isfinite(top0.values)
    real1 = torch.isfinite(top1.values)
    same = (top0.indices[:, :, None] == top1.indices[:, None, :]) & real0[:, :, None] & real1[:, None, :]
    overlap = same.any(2).sum(1).double() / real0.sum(1).clamp_min(1).double()
    logp, logq = torch.log_softmax(s0, dim=1), torch.log_softmax(s1, dim=1)
    kl = torch.where(finite, logp.exp() * (logp - logq), torch.zeros_like(logp)).sum(1)
    return overlap.cpu().numpy(), kl.clamp_min(0).cpu().numpy()


def _ndcg10(metrics: dict[str, float]) -> float:
    key = "ndcg@10" if "ndcg@10" in metrics else min((k for k in metrics if k.startswith("ndcg@")), default="")
    return metrics.get(key, float("nan"))


def evaluate_splice(
    model: Recommender,
    sae: TopKSAE,
    split: SplitData,
    which: SplitName = "test",
    random_sae: TopKSAE | None = None,
    mean: Tensor | np.ndarray | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
    users: np.ndarray | None = None,
    max_len: int | None = None,
    seed: int = 0,
    mean_source: str | None = None,
    eval_protocol: str = "per-user",
) -> SpliceResult:
    """The splice table of ``sae`` on ``model`` (see the module doc).

    ``random_sae``: the untrained baseline (default: ``untrained_baseline`` on the evaluated rows).
    ``mean``: μ for the mean-ablated row (default: the mean over the evaluated rows), described
    by ``mean_source`` in the output. ``users``: default, every user the evaluator evaluates.
    ``eval_protocol`` 'rechorus': the ranking metrics and retention are those of every held-out
    row ranked on its own (as the run's model was chosen and tested); the agreement, FVU and
    SAE statistics stay over one row per evaluated user.
    """
    max_len = max_len or model_max_len(model)
    device = model_device(model)
    seen: list[Tensor] = []

    def record(user_t: Tensor, seqs: Tensor) -> Tensor:
        h = model.represent(user_t, seqs)
        seen.append(h)
        return h

    def scores(represent: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        """The model's scores of ``represent``'s representations; a ``DotScores`` unless the model
        overrides ``score`` (then the catalogue is scored whole)."""
        if type(model).score is Recommender.score:
            return DotScores(represent, model.item_embeddings)
        return lambda user_t, seqs: model.score(represent(user_t, seqs))

    def run_eval(fn: Callable[[Tensor, Tensor], Tensor], eval_users: np.ndarray | None) -> Any:
        return evaluate(fn, split, which, ks=ks, users=eval_users, batch_size=batch_size, max_len=max_len, device=device)

    with frozen(model), frozen(sae):
        original = run_eval(scores(record), users)
        users = original.users
        # the evaluator visits the users in order, so row i of h_all belongs to users[i]
        h_all = torch.cat(seen) if seen else torch.zeros(0, model.dim, device=device)
        if len(h_all) != len(users):
            raise RuntimeError(f"the evaluator scored {len(h_all)} rows for {len(users)} users")
        row_of = torch.full((split.n_users + 1,), -1, dtype=torch.long, device=h_all.device)
        row_of[torch.from_numpy(users).to(h_all.device)] = torch.arange(len(users), device=h_all.device)
        mu = h_all.mean(0) if mean is None else torch.as_tensor(mean).to(h_all)
        random_given = random_sae is not None
        if random_sae is None:  # the same recipe as on a store's rows, on the evaluated rows
            random_sae = untrained_baseline(sae.cfg, h_all.float().cpu().numpy(), seed, sae.device)
        transforms: dict[str, Transform] = {
            "original": lambda h: h,
            "spliced": _sae_transform(sae),
            "spliced_error": _with_error_term(sae),
            "mean_ablated": lambda h: mu.expand_as(h).clone(),
            "random_sae": _sae_transform(random_sae),
        }
        with frozen(random_sae):
            sae_stats = {
                "spliced": evaluate_sae(sae, h_all.float(), batch_size),
                "random_sae": evaluate_sae(random_sae, h_all.float(), batch_size),
            }
            conditions: dict[str, ConditionResult] = {}

            def ranked(name: str, transform: Transform) -> Any:
                """The condition's ranking: per user from the recorded rows, or (``eval_protocol``
                'rechorus') every held-out row from its own history."""
                if eval_protocol != "per-user":
                    def transformed(user_t: Tensor, seqs: Tensor) -> Tensor:
                        return transform(model.represent(user_t, seqs))

                    return evaluate(scores(transformed), split, which, ks=ks, batch_size=batch_size, max_len=max_len,
                                    device=device, eval_protocol=eval_protocol)
                if name == "original":
                    return original

                def represent(user_t: Tensor, seqs: Tensor) -> Tensor:
                    return transform(h_all[row_of[user_t.to(row_of.device)]])

                return run_eval(scores(represent), users)

            for name, transform in transforms.items():
                res = ranked(name, transform)
                conditions[name] = _condition(model, h_all, transform, split, which, users, res.metrics, batch_size)
            for name in ("spliced", "spliced_error", "random_sae"):
                st = sae_stats["random_sae" if name == "random_sae" else "spliced"]
                conditions[name].sae = {
                    "l0": st.l0,
                    "dead_fraction": st.dead_fraction,
                    "dense_fraction": st.dense_fraction,
                    "freq_histogram": st.freq_histogram,
                }
        protocol = original.protocol
        if eval_protocol != "per-user":  # the agreement figures stay one row per user
            protocol = res.protocol | {"agreement_rows": f"one per evaluated user ({len(users)})"}
    base = _ndcg10(conditions["original"].metrics)
    for c in conditions.values():
        c.retention = _ndcg10(c.metrics) / base if base > 0 else float("nan")
    config = {
        "ks": list(ks),
        "batch_size": batch_size,
        "max_len": max_len,
        "seed": seed,
        "mean_source": mean_source or ("evaluated rows" if mean is None else "given"),
        "random_sae": "given" if random_given else "untrained_baseline(sae.cfg, evaluated rows, seed)",
        "sae": sae.cfg.to_dict(),
    }
    return SpliceResult(which, users, conditions, protocol, config)


def _condition(
    model: Recommender,
    h_all: Tensor,
    transform: Transform,
    split: SplitData,
    which: SplitName,
    users: np.ndarray,
    metrics: dict[str, float],
    batch_size: int,
) -> ConditionResult:
    overlaps, kls, new_parts = [], [], []
    # the agreement holds a few float64 copies of the users' scores: fewer users for large catalogues
    per_agreement = min(batch_size, rows_within_budget(split.n_items + 1, AGREEMENT_BYTES_PER_SCORE))
    for lo in range(0, len(users), batch_size):
        h = h_all[lo : lo + batch_size]
        h_new = transform(h)
        for a in range(0, len(h), per_agreement):
            b = slice(a, a + per_agreement)
            o, k = _agreement(model, h[b], h_new[b], split, which, users[lo : lo + batch_size][b])
            overlaps.append(o)
            kls.append(k)
        new_parts.append(h_new)
    h_new_all = torch.cat(new_parts) if new_parts else h_all.clone()
    x, y = h_all.double(), h_new_all.double()
    total = (x - x.mean(0)).pow(2).sum()
    fvu = float((x - y).pow(2).sum() / total) if total > 0 else float("nan")
    cos = float(torch.nn.functional.cosine_similarity(x, y, dim=1).mean()) if len(x) else float("nan")
    return ConditionResult(
        metrics=dict(metrics),
        retention=float("nan"),
        top10_overlap=float(np.concatenate(overlaps).mean()) if overlaps else float("nan"),
        kl=float(np.concatenate(kls).mean()) if kls else float("nan"),
        fvu=fvu,
        cosine=cos,
        max_abs_diff=float((x - y).abs().max()) if len(x) else 0.0,
    )


def splice_summary(result: SpliceResult) -> dict[str, Any]:
    """The ``sae`` section of ``summary.json`` (keys documented in docs/summary.md)."""
    c = result.conditions
    sp, rnd, mean = c["spliced"], c["random_sae"], c["mean_ablated"]
    assert sp.sae is not None
    w = result.which
    return {
        "fvu": sp.fvu,
        "cosine": sp.cosine,
        "l0": sp.sae["l0"],
        "dead_fraction": result.config.get("all_rows", sp.sae)["dead_fraction"],
        "dense_fraction": result.config.get("all_rows", sp.sae)["dense_fraction"],
        "silent_fraction_eval_rows": sp.sae["dead_fraction"],
        "original": {w: c["original"].metrics},
        "spliced": {w: sp.metrics},
        "retention": sp.retention,
        "top10_overlap": sp.top10_overlap,
        "kl": sp.kl,
        "spliced_error_exact": c["spliced_error"].metrics == c["original"].metrics,
        "random_sae": {w: rnd.metrics, "retention": rnd.retention, "top10_overlap": rnd.top10_overlap, "kl": rnd.kl, "fvu": rnd.fvu},
        "mean_ablated": {w: mean.metrics, "retention": mean.retention, "top10_overlap": mean.top10_overlap, "kl": mean.kl},
        "n_users": len(result.users),
    }


def format_splice_table(result: SpliceResult) -> str:
    """The splice table as aligned text (one line per condition)."""
    head = f"{'condition':<14} {'ndcg@10':>8} {'hr@10':>7} {'retain':>7} {'top10':>6} {'KL':>8} {'FVU':>8} {'cos':>6} {'L0':>6} {'dead':>6} {'dense':>6}"
    lines = [f"splice on {result.which} ({len(result.users)} users, full ranking)", head, "-" * len(head)]
    for name, c in result.conditions.items():
        s = c.sae or {}
        l0 = f"{s['l0']:6.1f}" if s else f"{'-':>6}"
        dead = f"{s['dead_fraction']:6.3f}" if s else f"{'-':>6}"
        dense = f"{s['dense_fraction']:6.3f}" if s else f"{'-':>6}"
        lines.append(
            f"{name:<14} {c.metrics.get('ndcg@10', float('nan')):8.4f} {c.metrics.get('hr@10', float('nan')):7.4f} "
            f"{c.retention:7.3f} {c.top10_overlap:6.3f} {c.kl:8.4f} {c.fvu:8.4f} {c.cosine:6.3f} {l0} {dead} {dense}"
        )
    return "\n".join(lines)
