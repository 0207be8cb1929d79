from __future__ import annotations

import math

import numpy as np
import pytest

from recsae.data.dataset import Ragged, SplitData
from recsae.eval import evaluate
from recsae.steer.edit import Ablate, AddDirection, Mix, steered_score_fn
from recsae.steer.effects import (
    SteerContext,
    ablation_study,
    best_strength,
    compare,
    dose_response,
    measure,
    paired_test,
    ratio_interval,
)


@pytest.fixture
def ctx(world) -> SteerContext:
    return SteerContext(world.model, world.sae, world.split, k=5)


def test_cached_context_scores_equal_the_live_model_through_the_evaluator(world, ctx) -> None:
    for edit in (None, AddDirection((0,), 0.4)):
        live = evaluate(steered_score_fn(world.model, world.sae, edit), world.split, ks=(5,))
        cached = evaluate(ctx.score_fn(edit), world.split, ks=(5,))
        assert live.metrics == pytest.approx(cached.metrics)


def test_steering_toward_a_concept_raises_its_share_and_rank_more_than_random_latents(world, ctx) -> None:
    concepts = {"genre=A": world.items.mask("genre=A")}
    cmp = compare(ctx, AddDirection((0,), 0.5), concepts, n_random=3, seed=0)
    assert cmp.after.share["genre=A"] > 1.5 * cmp.before.share["genre=A"]
    assert cmp.after.share["genre=A"] > cmp.random.share["genre=A"]
    assert cmp.after.mean_rank["genre=A"] < cmp.random.mean_rank["genre=A"] < cmp.before.mean_rank["genre=A"] + 1e-9
    rows = {r["metric"]: r for r in cmp.table(5)}
    assert rows["ndcg@5"]["before"] == cmp.before.ndcg and rows["share@5[genre=A]"]["after"] == cmp.after.share["genre=A"]


def test_mix_toward_a_concept_raises_its_share(world, ctx) -> None:
    concepts = {"genre=B": world.items.mask("genre=B")}
    before = measure(ctx, None, concepts, accuracy=False).share["genre=B"]
    after = measure(ctx, Mix((1,), 0.8), concepts, accuracy=False).share["genre=B"]
    assert after > before + 0.2


def test_random_control_has_the_same_size_and_avoids_the_edited_latents(world, ctx) -> None:
    concepts = {"genre=A": world.items.mask("genre=A")}
    cmp = compare(ctx, AddDirection((0, 1), 0.2), concepts, n_random=4, seed=5, accuracy=False)
    assert len(cmp.random_latents) == 4
    for draw in cmp.random_latents:
        assert len(draw) == 2 and not set(draw) & {0, 1} and set(draw) <= set(ctx.alive.tolist())
    again = compare(ctx, AddDirection((0, 1), 0.2), concepts, n_random=4, seed=5, accuracy=False)
    assert again.random_latents == cmp.random_latents and again.random.share == cmp.random.share
    assert math.isnan(cmp.after.ndcg)  # accuracy not measured when not asked


def test_dose_response_starts_at_the_unedited_model_and_grows_with_strength(world, ctx) -> None:
    curve = dose_response(ctx, lambda a: AddDirection((0,), a), [0.0, 0.3, 1.0], "genre=A", world.items.mask("genre=A"), 2)
    assert curve[0]["share"] == curve[0]["share_before"] and curve[0]["ndcg"] == curve[0]["ndcg_before"]
    assert curve[0]["rank_shift"] == 0.0
    assert curve[0]["share"] < curve[1]["share"] < curve[2]["share"]
    assert curve[2]["share_ratio"] == pytest.approx(curve[2]["share"] / curve[2]["share_before"])


def test_best_strength_keeps_ndcg_within_tolerance() -> None:
    curve = [
        {"strength": 0.0, "share": 0.1, "ndcg": 0.50, "ndcg_before": 0.50},
        {"strength": 0.2, "share": 0.2, "ndcg": 0.49, "ndcg_before": 0.50},
        {"strength": 0.5, "share": 0.4, "ndcg": 0.46, "ndcg_before": 0.50},
    ]
    assert best_strength(curve, 0.05)["strength"] == 0.2
    assert best_strength(curve, 0.10)["strength"] == 0.5
    assert best_strength(curve[:1], 0.05) is None


def test_ablating_concept_latents_lowers_their_own_concept_share_more_than_random(world, ctx) -> None:
    study = ablation_study(ctx, world.interpretation, world.items, n_latents=5, n_random=3, min_users=3)
    assert [r["latent"] for r in study.rows] == [0, 1, 2]  # interpretable latents only
    for r in study.rows:
        assert r["drop"] > r["drop_random"]
        assert r["n_users"] == len(ctx.active_rows(r["latent"]))
    assert study.share_larger == 1.0 and study.n_latents == 3
    assert study.statistic == 6.0  # all three differences positive: W+ = 1 + 2 + 3
    assert study.p_value == pytest.approx(0.125)


def test_ablating_a_latent_changes_only_users_where_it_is_active(world, ctx) -> None:
    concepts = {"genre=A": world.items.mask("genre=A")}
    inactive = np.setdiff1d(np.arange(len(ctx.users)), ctx.active_rows(0))
    before = measure(ctx, None, concepts, rows=inactive, accuracy=False)
    after = measure(ctx, Ablate((0,)), concepts, rows=inactive, accuracy=False)
    assert before.share == after.share and before.mean_rank == after.mean_rank


def test_paired_test_is_one_sided_and_undefined_without_differences() -> None:
    stat, p = paired_test([3.0, 2.0, 5.0, 4.0, 6.0, 7.0], [0.0] * 6)
    assert stat == 21.0 and p == pytest.approx(1 / 64)
    assert paired_test([0.0] * 6, [3.0, 2.0, 5.0, 4.0, 6.0, 7.0])[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in paired_test([1.0, 2.0], [1.0, 2.0]))


def test_concept_rank_sum_matches_ranks_from_a_full_sort() -> None:
    import torch

    from recsae.steer.effects import concept_rank_sum

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 40, generator=g)
    scores[:, 0] = -torch.inf
    scores[torch.arange(6), torch.randint(1, 40, (6,), generator=g)] = -torch.inf  # a masked history item
    items = torch.tensor([1, 5, 7, 22, 39])
    order = scores.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(1, 41).expand(6, 40))
    valid = torch.isfinite(scores[:, items])
    total, n = concept_rank_sum(scores, items)
    assert n == int(valid.sum())
    assert total == float(ranks[:, items][valid].sum())


def test_ablation_study_skips_concepts_with_too_few_items(world, ctx) -> None:
    study = ablation_study(ctx, world.interpretation, world.items, n_latents=5, n_random=1, min_users=3, min_items=11)
    assert study.rows == [] and study.n_latents == 0 and math.isnan(study.statistic)


def test_ratio_interval_is_a_point_when_every_user_scales_alike_and_widens_with_noise() -> None:
    before = np.random.default_rng(0).uniform(0.1, 1.0, size=500)
    assert ratio_interval(0.9 * before, before) == pytest.approx([0.9, 0.9])
    noisy = 0.9 * before * np.random.default_rng(1).uniform(0.5, 1.5, size=500)
    lo, hi = ratio_interval(noisy, before)
    ratio = noisy.mean() / before.mean()
    assert lo < ratio < hi and hi - lo > 0.02
    few_lo, few_hi = ratio_interval(noisy[:50], before[:50])
    assert few_hi - few_lo > hi - lo  # fewer users, wider interval
    assert ratio_interval(None, before) is None and ratio_interval(before, before[:0]) is None


def test_steering_curve_rows_carry_an_interval_around_their_ndcg_ratio(world, ctx) -> None:
    concepts = "genre=A"
    rows = dose_response(ctx, lambda a: AddDirection((0,), a), [0.0, 0.5], concepts, world.items.mask(concepts), n_random=1)
    assert rows[0]["ndcg_ratio_ci"] == pytest.approx([1.0, 1.0])  # unedited: identical per user
    lo, hi = rows[1]["ndcg_ratio_ci"]
    assert lo <= rows[1]["ndcg_ratio"] <= hi


def test_measuring_an_edit_again_from_the_kept_codes_gives_the_same_effect(world) -> None:
    from recsae.steer import AddDirection, measure

    fresh = SteerContext(world.model, world.sae, world.split, k=5)
    masks = {"concept=a": np.arange(world.split.n_items + 1) % 3 == 0}
    edit = AddDirection((0, 1), 0.3)
    first = measure(fresh, edit, masks)
    assert fresh._codes  # the first pass kept the codes of its batches
    assert measure(fresh, edit, masks).to_dict() == first.to_dict()
    cold = SteerContext(world.model, world.sae, world.split, k=5)
    assert measure(cold, edit, masks).to_dict() == first.to_dict()


@pytest.mark.parametrize("repeat", [False, True], ids=["new-items", "repeat-consumption"])
def test_measured_accuracy_equals_the_evaluator_on_the_same_edit(world, repeat) -> None:
    split = world.split
    if repeat:  # every other user's held-out item is one of its history's items, which ranking keeps
        test = [split.test[u] if u % 2 else split.train[u][:1] for u in range(split.n_users + 1)]
        split = SplitData(split.dataset, split.train, split.valid, Ragged.from_lists(test), split.protocol)
    ctx = SteerContext(world.model, world.sae, split, k=5)
    rows = np.arange(0, len(ctx.users), 3)
    for edit in (None, AddDirection((0,), 0.4)):
        got = measure(ctx, edit, {}, rows=rows)
        want = evaluate(ctx.score_fn(edit), split, ks=(5,), users=ctx.users[rows])
        assert (got.hr, got.ndcg) == (want.metrics["hr@5"], want.metrics["ndcg@5"])
        np.testing.assert_array_equal(got.ndcg_per_user, want.per_user["ndcg@5"])
    assert 0 < got.hr < 1


def test_under_the_rechorus_protocol_each_held_out_item_is_a_row_measured_as_the_evaluator_ranks_it(world) -> None:
    import torch
    from torch import nn

    from recsae.errors import ConfigError
    from recsae.eval.rows import evaluate_rows
    from recsae.models.base import DotProductModel

    s = world.split
    n = s.n_users + 1  # two test items per user: the validation item, then the test item
    split = SplitData(s.dataset, Ragged.from_lists([s.train[u][:-1] for u in range(n)]),
                      Ragged.from_lists([s.train[u][-1:] for u in range(n)]),
                      Ragged.from_lists([np.concatenate([s.valid[u], s.test[u]]) for u in range(n)]), s.protocol)

    class _Items(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.items = nn.Embedding.from_pretrained(world.model.item_embeddings().detach())

    # the representation is the sum of the history's items, so each row has its own
    model = DotProductModel(_Items(), represent=lambda m, u, seqs: m.items(seqs).sum(1),
                            item_embeddings=lambda m: m.items.weight)
    ctx = SteerContext(model, world.sae, split, k=5, eval_protocol="rechorus")
    assert len(ctx.users) == 2 * s.n_users and set(np.bincount(ctx.users)[1:]) == {2}
    for edit in (None, AddDirection((0,), 0.4)):
        got = measure(ctx, edit, {})
        want = evaluate_rows(steered_score_fn(model, world.sae, edit), split, "test", ks=(5,))
        if edit is None:
            np.testing.assert_array_equal(got.ndcg_per_user, want.per_user["ndcg@5"])
        assert (got.hr, got.ndcg) == pytest.approx((want.metrics["hr@5"], want.metrics["ndcg@5"]))
    assert 0 < got.hr < 1
    with pytest.raises(ConfigError, match="held-out rows"):
        ctx.score_fn(None)
    with torch.no_grad():  # the second row of a user starts from a longer history
        assert not torch.equal(ctx.h[0], ctx.h[1])
