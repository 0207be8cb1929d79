"""Splice evaluation: the error term reproduces the original exactly, the agreement measures
have their closed forms, and a trained SAE beats the mean-ablated and random baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from recsae.data.dataset import InteractionDataset, ItemMeta, Ragged, SplitData
from recsae.eval import evaluate
from recsae.io import read_json
from recsae.models.base import DotProductModel
from recsae.sae import SaeConfig, SaeTrainConfig, TopKSAE
from recsae.sae.train import train_sae
from recsae.splice import (
    _agreement,
    _with_error_term,
    evaluate_splice,
    format_splice_table,
    splice_summary,
)


def _split(n_users: int, n_items: int, seed: int = 0) -> SplitData:
    rng = np.random.default_rng(seed)
    full = [rng.choice(np.arange(1, n_items + 1), size=min(n_items, int(rng.integers(3, 9))), replace=False) for _ in range(n_users)]
    user = np.concatenate([np.full(len(f), u + 1) for u, f in enumerate(full)])
    ds = InteractionDataset(
        name="tiny",
        user=user,
        item=np.concatenate(full),
        time=np.arange(len(user), dtype=np.float64),
        user_ids=np.array([""] + [str(u) for u in range(1, n_users + 1)]),
        item_ids=np.array([""] + [str(i) for i in range(1, n_items + 1)]),
        item_meta=ItemMeta(title=[""] * (n_items + 1)),
    )
    rows = lambda part: Ragged.from_lists([[], *part])  # noqa: E731
    return SplitData(ds, rows([f[:-2] for f in full]), rows([f[-2:-1] for f in full]), rows([f[-1:] for f in full]), "leave-one-out")


def _user_model(n_users: int, n_items: int, d: int, seed: int = 0) -> DotProductModel:
    torch.manual_seed(seed)
    tables = nn.ModuleDict({"u": nn.Embedding(n_users + 1, d), "i": nn.Embedding(n_items + 1, d)})
    # low-rank user vectors plus an offset: structure a small SAE can capture
    with torch.no_grad():
        basis = torch.randn(3, d) * 2
        tables["u"].weight.copy_(torch.randn(n_users + 1, 3).relu() @ basis + 1.0)
    return DotProductModel(tables, lambda m, u, s: m["u"](u), lambda m: m["i"].weight)


@pytest.fixture(scope="module")
def case():
    split = _split(300, 40)
    model = _user_model(300, 40, d=8)
    h = model.represent(torch.arange(1, 301), torch.zeros(300, 1, dtype=torch.long)).detach()
    cfg = SaeConfig(d_in=8, expansion=4, k=3)
    tcfg = SaeTrainConfig(lr=2e-2, warmup_rows=0, batch_size=100, epochs=40, b_dec_init_rows=300, seed=0)
    sae = train_sae(h, cfg, tcfg).sae
    return split, model, sae


def test_spliced_plus_error_reproduces_the_original_exactly(case):
    split, model, _ = case
    untrained = TopKSAE(SaeConfig(d_in=8, expansion=4, k=3), seed=3)  # large error term
    res = evaluate_splice(model, untrained, split, batch_size=64)
    orig, err = res.conditions["original"], res.conditions["spliced_error"]
    assert err.metrics == orig.metrics
    assert err.max_abs_diff == 0.0 and err.fvu == 0.0
    assert err.top10_overlap == 1.0 and err.kl == 0.0
    assert res.conditions["spliced"].max_abs_diff > 0.1
    h = torch.randn(50, 8) * torch.logspace(-4, 3, 8)
    assert torch.equal(_with_error_term(untrained)(h), h)


def test_original_row_is_the_base_models_evaluation(case):
    split, model, sae = case
    res = evaluate_splice(model, sae, split, which="valid")
    base = evaluate(lambda u, s: model.score(model.represent(u, s)), split, "valid")
    assert res.conditions["original"].metrics == base.metrics
    assert list(res.users) == list(base.users)
    assert res.conditions["original"].kl == 0.0 and res.conditions["original"].top10_overlap == 1.0
    assert res.conditions["original"].retention == 1.0


def test_the_reference_protocol_ranks_every_condition_per_held_out_row(case):
    _, model, sae = case
    # the same users with their last three interactions held out for test: several rows per user
    flat = _split(300, 40)
    full = [np.concatenate([flat.train[u], flat.valid[u], flat.test[u]]) for u in range(1, 301)]
    rows = lambda part: Ragged.from_lists([[], *part])  # noqa: E731
    split = SplitData(flat.dataset, rows([f[:-4] for f in full]), rows([f[-4:-3] for f in full]),
                      rows([f[-3:] for f in full]), "time")
    res = evaluate_splice(model, sae, split, batch_size=64, eval_protocol="rechorus")
    c = res.conditions

    def rows_metrics(represent):
        return evaluate(lambda u, s: model.score(represent(model.represent(u, s))), split, "test",
                        eval_protocol="rechorus").metrics

    assert c["original"].metrics == rows_metrics(lambda h: h)
    assert c["spliced"].metrics == rows_metrics(lambda h: sae.decode(*sae.encode(h)))
    assert c["spliced_error"].metrics == c["original"].metrics
    assert c["spliced"].retention == c["spliced"].metrics["ndcg@10"] / c["original"].metrics["ndcg@10"]
    assert res.protocol["eval_protocol"] == "rechorus" and res.protocol["n_rows"] > 2 * len(res.users)
    # the per-user table of the same split differs: the protocol is not a label only
    assert evaluate_splice(model, sae, split, batch_size=64).conditions["original"].metrics != c["original"].metrics


def test_trained_sae_agrees_with_the_model_far_better_than_the_baselines(case):
    split, model, sae = case
    res = evaluate_splice(model, sae, split)
    c = res.conditions
    assert c["spliced"].fvu < 0.1
    assert c["spliced"].top10_overlap > 0.75
    for baseline in ("mean_ablated", "random_sae"):
        assert c[baseline].top10_overlap < c["spliced"].top10_overlap - 0.15
        assert c[baseline].kl > 3 * c["spliced"].kl
        assert c[baseline].fvu > c["spliced"].fvu
    assert c["spliced"].sae["l0"] <= 3 and c["original"].sae is None
    assert c["mean_ablated"].fvu == pytest.approx(1.0)


def test_agreement_closed_form():
    # identity item table: the scores are h itself (item 0 = padding); history [1, 2] is masked
    model = DotProductModel(nn.Identity(), lambda m, u, s: u, lambda m: torch.eye(6))
    split = _split(4, 5)
    users = np.array([1])
    hist = set(split.history("test")[1].tolist())
    h = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    overlap, kl = _agreement(model, h, h.clone(), split, "test", users)
    assert overlap[0] == 1.0 and kl[0] == 0.0
    h2 = torch.tensor([[9.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    overlap, kl = _agreement(model, h, h2, split, "test", users)
    free = [i for i in range(1, 6) if i not in hist]
    p = torch.softmax(h[0, free].double(), 0)
    q = torch.softmax(h2[0, free].double(), 0)
    assert kl[0] == pytest.approx(float((p * (p / q).log()).sum()), abs=1e-12)
    assert overlap[0] == 1.0  # fewer than 10 candidates: both lists hold every unmasked item


def test_given_mean_is_used_and_recorded(case):
    split, model, sae = case
    mu = torch.full((8,), 0.5)
    res = evaluate_splice(model, sae, split, mean=mu, mean_source="store train rows")
    h = model.represent(torch.from_numpy(res.users), torch.zeros(len(res.users), 1, dtype=torch.long)).detach()
    assert res.conditions["mean_ablated"].max_abs_diff == pytest.approx(float((h - mu).abs().max()))
    assert res.config["mean_source"] == "store train rows"


def test_summary_keys_and_json_round_trip(case, tmp_path):
    split, model, sae = case
    res = evaluate_splice(model, sae, split)
    summary = splice_summary(res)
    for key in ("fvu", "cosine", "l0", "dead_fraction", "dense_fraction", "retention", "top10_overlap", "kl"):
        assert isinstance(summary[key], float)
    assert summary["spliced"]["test"]["ndcg@10"] == res.conditions["spliced"].metrics["ndcg@10"]
    assert "test" in summary["random_sae"] and "top10_overlap" in summary["random_sae"]
    assert "test" in summary["mean_ablated"] and summary["spliced_error_exact"] is True
    res.save(tmp_path / "splice.json")
    data = read_json(tmp_path / "splice.json")
    assert set(data["conditions"]) == {"original", "spliced", "spliced_error", "mean_ablated", "random_sae"}
    assert data["conditions"]["spliced"]["sae"]["freq_histogram"]["counts"]
    assert "spliced_error" in format_splice_table(res)


def test_a_small_memory_budget_gives_the_same_table(case, monkeypatch):
    """Ranked a few items at a time and one user per agreement: the same ranking figures bit for
    bit; the KL within rounding (a one-row matrix product rounds unlike a 64-row one)."""
    from recsae.eval import evaluator

    split, model, sae = case
    whole = evaluate_splice(model, sae, split, batch_size=64)
    chunks: list[int] = []
    chunked_ranks = evaluator._chunked_ranks
    monkeypatch.setattr(evaluator, "_chunked_ranks", lambda *a: chunks.append(a[-1]) or chunked_ranks(*a))
    # 41 columns: 64 users x 2 items per ranking chunk, 1 user per agreement
    monkeypatch.setattr(evaluator, "SCORE_BUDGET_BYTES", 64 * 2 * evaluator.BYTES_PER_SCORE)
    small = evaluate_splice(model, sae, split, batch_size=64)
    assert chunks and set(chunks) == {2}
    assert np.array_equal(whole.users, small.users)
    for name, c in whole.conditions.items():
        d = small.conditions[name]
        assert (c.metrics, c.top10_overlap, c.fvu) == (d.metrics, d.top10_overlap, d.fvu), name
        assert c.kl == pytest.approx(d.kl, rel=1e-6), name
