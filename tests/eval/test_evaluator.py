"""The full-ranking evaluator against closed-form cases and a naive per-user implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsae.data.dataset import Ragged, SplitData
from recsae.eval import DotScores, evaluate, topk_items
from recsae.eval import evaluator as evaluator_mod


class _Catalogue:
    def __init__(self, n_users: int, n_items: int) -> None:
        self.n_users, self.n_items = n_users, n_items


def make_split(train: list[list[int]], test: list[list[int]], n_items: int, valid: list[list[int]] | None = None) -> SplitData:
    n = len(train)
    valid = valid or [[] for _ in range(n)]
    return SplitData(
        dataset=_Catalogue(n - 1, n_items),  # type: ignore[arg-type]
        train=Ragged.from_lists(train),
        valid=Ragged.from_lists(valid),
        test=Ragged.from_lists(test),
        protocol="leave-one-out",
    )


def fixed_scores(table: np.ndarray):
    def score(users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(table[users.numpy()]).float()

    return score


def naive_metrics(scores: np.ndarray, history: list[int], targets: list[int], k: int) -> dict[str, float]:
    """Straightforward per-user reference: pessimistic rank of each target among unmasked items."""
    s = scores.astype(np.float64).copy()
    s[0] = -np.inf
    for i in history:
        if i not in targets:
            s[i] = -np.inf
    ranks = [int(np.sum(s >= s[t])) for t in targets]
    hits = [r for r in ranks if r <= k]
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(targets), k)))
    return {
        f"hr@{k}": float(bool(hits)),
        f"recall@{k}": len(hits) / len(targets),
        f"ndcg@{k}": sum(1 / math.log2(r + 1) for r in hits) / idcg,
        f"mrr@{k}": 1 / min(ranks) if min(ranks) <= k else 0.0,
    }


def test_target_ranked_first_scores_one_on_every_metric():
    split = make_split([[], [1, 2]], [[], [3]], n_items=5)
    scores = np.array([[0, 0, 0, 0, 0, 0], [0, 1, 1, 9, 2, 2]], dtype=np.float32)
    result = evaluate(fixed_scores(scores), split, "test", ks=(1, 5))
    assert result.metrics["ndcg@1"] == 1.0
    assert result.metrics["hr@1"] == 1.0
    assert result.metrics["mrr@5"] == 1.0


def test_ties_are_pessimistic():
    # item 3 (target) ties with items 4 and 5: pessimistic rank is 3.
    split = make_split([[], [1]], [[], [3]], n_items=5)
    scores = np.array([[0] * 6, [0, 9, 5, 5, 5, 5]], dtype=np.float32)
    result = evaluate(fixed_scores(scores), split, "test", ks=(3, 5))
    # items 2,3,4,5 all score 5 -> rank 4 (history item 1 masked despite scoring 9)
    assert result.metrics["hr@3"] == 0.0
    assert result.metrics["ndcg@5"] == pytest.approx(1 / math.log2(5))
    assert result.metrics["mrr@5"] == pytest.approx(0.25)


def test_history_items_are_masked_and_padding_never_counts():
    split = make_split([[], [1, 2]], [[], [3]], n_items=3)
    scores = np.array([[0] * 4, [100, 50, 50, 1]], dtype=np.float32)
    result = evaluate(fixed_scores(scores), split, "test", ks=(1,))
    assert result.metrics["hr@1"] == 1.0


def test_constant_scores_give_the_worst_rank():
    split = make_split([[], [1]], [[], [2]], n_items=10)
    scores = np.zeros((2, 11), dtype=np.float32)
    result = evaluate(fixed_scores(scores), split, "test", ks=(5,))
    assert result.metrics["hr@5"] == 0.0  # 9 unmasked items tie: rank 9


def test_multiple_targets_ndcg_uses_the_ideal_of_min_targets_and_k():
    split = make_split([[], [5]], [[], [1, 2]], n_items=5)
    scores = np.array([[0] * 6, [0, 3, 1, 2, 0, 9]], dtype=np.float32)
    result = evaluate(fixed_scores(scores), split, "test", ks=(2,))
    # ranks: item1 -> 1, item2 -> 3 (items 1, 3 above it)
    assert result.metrics["recall@2"] == pytest.approx(0.5)
    assert result.metrics["ndcg@2"] == pytest.approx(1.0 / (1 + 1 / math.log2(3)))


def test_matches_naive_reference_on_random_data():
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    train = [[]] + [list(rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, 8), replace=False)) for _ in range(n_users)]
    test = [[]] + [list(rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, 4), replace=False)) for _ in range(n_users)]
    # integer scores create many ties, exercising the pessimistic rule
    scores = rng.integers(0, 6, size=(n_users + 1, n_items + 1)).astype(np.float32)
    split = make_split(train, test, n_items)
    result = evaluate(fixed_scores(scores), split, "test", ks=(5, 10), batch_size=7)
    for pos, u in enumerate(result.users):
        ref = naive_metrics(scores[u], train[u], test[u], 10) | naive_metrics(scores[u], train[u], test[u], 5)
        for name, value in ref.items():
            assert result.per_user[name][pos] == pytest.approx(value), (u, name)


def test_batch_size_never_changes_a_metric():
    rng = np.random.default_rng(1)
    n_users, n_items = 25, 20
    train = [[]] + [[int(rng.integers(1, n_items + 1))] for _ in range(n_users)]
    test = [[]] + [[int(rng.integers(1, n_items + 1))] for _ in range(n_users)]
    scores = rng.normal(size=(n_users + 1, n_items + 1)).astype(np.float32)
    split = make_split(train, test, n_items)
    a = evaluate(fixed_scores(scores), split, batch_size=1).metrics
    b = evaluate(fixed_scores(scores), split, batch_size=1000).metrics
    assert a == pytest.approx(b)


def test_sampled_negatives_are_labelled_and_never_harder_than_full_ranking():
    rng = np.random.default_rng(2)
    n_users, n_items = 30, 200
    train = [[]] + [[int(rng.integers(1, n_items + 1))] for _ in range(n_users)]
    test = [[]] + [[int(rng.integers(1, n_items + 1))] for _ in range(n_users)]
    test = [t if t != tr else [] for t, tr in zip(test, train, strict=True)]
    scores = rng.normal(size=(n_users + 1, n_items + 1)).astype(np.float32)
    split = make_split(train, test, n_items)
    full = evaluate(fixed_scores(scores), split, ks=(10,))
    sampled = evaluate(fixed_scores(scores), split, ks=(10,), num_negatives=20, seed=3)
    assert "ndcg@10" not in sampled.metrics and "sampled20:ndcg@10" in sampled.metrics
    assert sampled.protocol["ranking"] == "sampled" and full.protocol["ranking"] == "full"
    assert sampled.metrics["sampled20:hr@10"] >= full.metrics["hr@10"]


def test_users_without_targets_are_skipped_by_default():
    split = make_split([[], [1], [2]], [[], [3], []], n_items=3)
    result = evaluate(fixed_scores(np.ones((3, 4), dtype=np.float32)), split)
    assert result.users.tolist() == [1]


def test_validation_history_excludes_the_validation_item_and_test_history_includes_it():
    split = make_split([[], [1]], [[], [3]], n_items=4, valid=[[], [2]])
    seen: list[list[int]] = []

    def score(users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        seen.append([int(i) for i in seqs[0] if i])
        return torch.zeros(len(users), 5)

    evaluate(score, split, "valid")
    evaluate(score, split, "test")
    assert seen == [[1], [1, 2]]


def test_topk_items_excludes_history_and_padding():
    history = Ragged.from_lists([[], [2, 3]])
    scores = torch.tensor([[100.0, 5, 9, 8, 1, 2]])
    top = topk_items(scores, history, np.array([1]), k=2)
    assert top.tolist() == [[1, 5]]


def test_many_targets_per_user_match_naive_reference():
    # more than 8 targets per user takes the sort-based ranking path
    rng = np.random.default_rng(4)
    n_users, n_items = 10, 60
    train = [[]] + [list(rng.choice(np.arange(1, 31), size=5, replace=False)) for _ in range(n_users)]
    test = [[]] + [list(rng.choice(np.arange(31, n_items + 1), size=12, replace=False)) for _ in range(n_users)]
    scores = rng.integers(0, 10, size=(n_users + 1, n_items + 1)).astype(np.float32)
    result = evaluate(fixed_scores(scores), make_split(train, test, n_items), ks=(20,))
    for pos, u in enumerate(result.users):
        for name, value in naive_metrics(scores[u], train[u], test[u], 20).items():
            assert result.per_user[name][pos] == pytest.approx(value), (u, name)


def _tied_dot_problem(seed: int, n_users: int = 150, n_items: int = 90, most_targets: int = 12):
    """Integer representations and item vectors (many exactly tied scores), histories that share
    items with the targets (repeat consumption) and up to ``most_targets`` targets per user."""
    rng = np.random.default_rng(seed)
    reps = torch.from_numpy(rng.integers(-2, 3, size=(n_users + 1, 3)).astype(np.float32))
    table = torch.from_numpy(rng.integers(-1, 2, size=(n_items + 1, 3)).astype(np.float32))
    items = np.arange(1, n_items + 1)
    train = [[]] + [list(rng.choice(items, size=rng.integers(1, 15), replace=False)) for _ in range(n_users)]
    test = [[]] + [list(rng.choice(items, size=rng.integers(1, most_targets + 1), replace=False)) for _ in range(n_users)]
    scores = DotScores(lambda users, seqs: reps[users], lambda: table)
    return scores, make_split(train, test, n_items)


@pytest.mark.parametrize("most_targets", [3, 12])  # one pass per target, and the sort-based path
def test_item_chunks_give_exactly_the_ranks_of_one_pass_with_ties(monkeypatch, most_targets):
    scores, split = _tied_dot_problem(5, most_targets=most_targets)
    chunks: list[int] = []
    chunked_ranks = evaluator_mod._chunked_ranks

    def spy(*args, **kw):
        chunks.append(args[-1])
        return chunked_ranks(*args, **kw)

    monkeypatch.setattr(evaluator_mod, "_chunked_ranks", spy)
    whole = evaluate(scores, split, ks=(1, 5, 20))
    assert chunks == []  # the budget holds every item at once
    # 64 users x 7 items x BYTES_PER_SCORE: items in chunks of 7 (13 chunks of the 91 columns)
    small = evaluate(scores, split, ks=(1, 5, 20), memory_budget=64 * 7 * evaluator_mod.BYTES_PER_SCORE)
    assert chunks and set(chunks) == {7}
    assert np.array_equal(whole.users, small.users)
    for name, values in whole.per_user.items():
        assert np.array_equal(values, small.per_user[name]), name


def test_a_small_budget_scores_fewer_users_at_a_time_with_the_same_metrics():
    rng = np.random.default_rng(6)
    n_users, n_items = 50, 40
    train = [[]] + [list(rng.choice(np.arange(1, n_items + 1), size=3, replace=False)) for _ in range(n_users)]
    test = [[]] + [[int(rng.integers(1, n_items + 1))] for _ in range(n_users)]
    table = rng.integers(0, 4, size=(n_users + 1, n_items + 1)).astype(np.float32)
    sizes: list[int] = []

    def score(users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        sizes.append(len(users))
        return torch.from_numpy(table[users.numpy()])

    split = make_split(train, test, n_items)
    whole = evaluate(score, split)
    assert max(sizes) == len(whole.users)
    sizes.clear()
    small = evaluate(score, split, memory_budget=3 * (n_items + 1) * evaluator_mod.BYTES_PER_SCORE)
    assert max(sizes) == 3  # an opaque score function: fewer users, every item
    for name, values in whole.per_user.items():
        assert np.array_equal(values, small.per_user[name]), name
