"""The rechorus evaluation protocol (every held-out row its own next-item prediction) against a
hand-computed case and against ReChorus's own ranking rule written out naively."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsae.data.dataset import InteractionDataset, ItemMeta, Ragged, SplitData
from recsae.errors import ConfigError
from recsae.eval import evaluate
from recsae.eval.rows import held_out_rows

N_ITEMS = 8


def split_of(train: list[list[int]], valid: list[list[int]], test: list[list[int]], protocol: str = "global-time",
             n_items: int = N_ITEMS) -> SplitData:
    """Per-user parts (user 0, the padding row, is added here)."""
    full = [t + v + s for t, v, s in zip(train, valid, test, strict=True)]
    user = np.concatenate([np.full(len(f), u + 1) for u, f in enumerate(full)]).astype(np.int64)
    ds = InteractionDataset(
        "rows", user, np.concatenate([np.asarray(f, dtype=np.int64) for f in full]), np.arange(len(user), dtype=np.float64),
        np.array([""] + [f"u{u}" for u in range(1, len(full) + 1)]), np.array([""] + [f"i{i}" for i in range(1, n_items + 1)]),
        ItemMeta(title=[""] * (n_items + 1)),
    )
    parts = [Ragged.from_lists([[], *p]) for p in (train, valid, test)]
    return SplitData(ds, *parts, protocol=protocol)


def by_last_item(table: dict[int, list[float]], seen: list[list[int]] | None = None):
    """Scores that depend only on the last item of the model input (so the test sees which
    history each row was given); ``seen`` collects the inputs."""
    def score(users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        if seen is not None:
            seen.extend([[int(i) for i in row if i] for row in seqs])
        return torch.tensor([table[int(last)] for last in seqs[:, -1]], dtype=torch.float32)
    return score


def hand_case() -> tuple[SplitData, dict[int, list[float]]]:
    # user 1: train 1 2, valid 3, test 4 5; user 2: train 2 6, test 1; user 3: only a test row (no history)
    split = split_of(train=[[1, 2], [2, 6], []], valid=[[3], [], []], test=[[4, 5], [1], [8]])
    table = {  # scores of items 0..8, by the last item of the input
        3: [0, 9, 9, 9, 5, 9, 7, 5, 1],  # user 1's test row for 4 (input 1 2 3)
        4: [0, 9, 9, 9, 9, 3, 2, 1, 0],  # user 1's test row for 5 (input 1 2 3 4)
        2: [0, 9, 9, 4, 9, 9, 4, 6, 4],  # user 1's valid row for 3 (input 1 2)
        6: [0, 5, 9, 1, 2, 8, 9, 3, 4],  # user 2's test row for 1 (input 2 6)
    }
    return split, table


def test_each_test_row_is_ranked_with_its_own_history_against_unmasked_items_with_ties_against_it():
    split, table = hand_case()
    seen: list[list[int]] = []
    result = evaluate(by_last_item(table, seen), split, "test", ks=(1, 2, 10), eval_protocol="rechorus")
    # by hand: the user's five items are masked in both of user 1's rows, so
    # row (1, 4): others 6:7, 7:5 (a tie counts against it), 8:1 -> rank 3
    # row (1, 5): others 6:2, 7:1, 8:0 -> rank 1
    # row (2, 1): user 2's items 1 2 6 masked; others 3:1 4:2 5:8 7:3 8:4 -> rank 2
    # user 3's test row has no earlier interaction and is not scored
    ranks = [3, 1, 2]
    assert seen == [[1, 2, 3], [1, 2, 3, 4], [2, 6]]
    assert result.users.tolist() == [1, 1, 2]
    assert result.protocol["n_rows"] == 3 and result.protocol["n_users"] == 2
    assert result.per_user["ndcg@10"] == pytest.approx([1 / math.log2(r + 1) for r in ranks])
    assert result.metrics["ndcg@10"] == pytest.approx(np.mean([1 / math.log2(r + 1) for r in ranks]))
    assert result.metrics["hr@1"] == pytest.approx(1 / 3)
    assert result.metrics["hr@2"] == pytest.approx(2 / 3)
    assert result.metrics["mrr@10"] == pytest.approx(np.mean([1 / r for r in ranks]))


def test_validation_rows_mask_the_users_later_test_items_too():
    split, table = hand_case()
    result = evaluate(by_last_item(table), split, "valid", ks=(10,), eval_protocol="rechorus")
    # row (1, 3) with input 1 2: items 1 2 4 5 masked (4 and 5 come later); others 6:4 7:6 8:4 -> rank 4
    assert result.protocol["n_rows"] == 1
    assert result.metrics["ndcg@10"] == pytest.approx(1 / math.log2(5))


def test_history_is_cut_to_the_last_max_len_interactions_of_every_part():
    split, _ = hand_case()
    rows = held_out_rows(split, "test", max_len=2)
    assert [rows.history[r].tolist() for r in range(len(rows.user))] == [[2, 3], [3, 4], [2, 6]]
    assert rows.target.tolist() == [4, 5, 1]


def rechorus_metrics(scores: np.ndarray, clicked: set[int], target: int, k: int) -> tuple[float, float]:
    """ReChorus's ranking with test_all written out: candidates = [target, items 1..n], the
    user's clicked items set to -inf, gt_rank = number of candidates scoring >= the target's."""
    predictions = np.concatenate([[scores[target]], scores[1:]]).astype(np.float64)
    for item in clicked:
        predictions[item] = -np.inf  # column i of items 1..n is item i
    gt_rank = int((predictions >= predictions[0]).sum())
    hit = gt_rank <= k
    return float(hit), hit / math.log2(gt_rank + 1)


def test_agrees_with_rechorus_ranking_rule_on_random_timelines_with_ties():
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 25
    parts: list[list[list[int]]] = [[], [], []]
    for _ in range(n_users):
        items = rng.permutation(np.arange(1, n_items + 1))[: rng.integers(2, 12)].tolist()
        a, b = sorted(rng.integers(0, len(items) + 1, size=2))
        for p, chunk in zip(parts, (items[:a], items[a:b], items[b:]), strict=True):
            p.append(chunk)
    split = split_of(*parts, n_items=n_items)
    table = rng.integers(0, 6, size=(n_items + 1, n_items + 1)).astype(np.float32)  # coarse: many ties

    def score(users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(table[seqs[:, -1].numpy()])

    result = evaluate(score, split, "test", ks=(5,), eval_protocol="rechorus")
    expected_hr, expected_ndcg = [], []
    for u in range(1, n_users + 1):
        full = parts[0][u - 1] + parts[1][u - 1] + parts[2][u - 1]
        start = len(parts[0][u - 1]) + len(parts[1][u - 1])
        for pos in range(max(start, 1), len(full)):
            hr, ndcg = rechorus_metrics(table[full[pos - 1]], set(full), full[pos], 5)
            expected_hr.append(hr)
            expected_ndcg.append(ndcg)
    assert result.protocol["n_rows"] == len(expected_hr) > 20
    np.testing.assert_allclose(result.per_user["hr@5"], expected_hr)
    np.testing.assert_allclose(result.per_user["ndcg@5"], expected_ndcg)


def test_a_given_split_uses_the_datasets_time_order_across_parts():
    # user 1's dev row (item 2) comes between two training rows in time
    split = split_of(train=[[1, 3]], valid=[[2]], test=[[4]], protocol="given")
    ds = split.dataset
    ds.item = np.array([1, 2, 3, 4])
    ds.row_split = np.array([0, 1, 0, 2], dtype=np.int8)
    assert held_out_rows(split, "valid", 10).history[0].tolist() == [1]
    assert held_out_rows(split, "test", 10).history[0].tolist() == [1, 2, 3]


def test_splits_without_a_time_order_are_refused():
    split, table = hand_case()
    random = SplitData(split.dataset, split.train, split.valid, split.test, protocol="random")
    with pytest.raises(ConfigError, match="rechorus evaluation protocol needs"):
        evaluate(by_last_item(table), random, "test", eval_protocol="rechorus")
    with pytest.raises(ConfigError, match="unknown evaluation protocol"):
        evaluate(by_last_item(table), split, "test", eval_protocol="per-row")


def test_sampled_negatives_keep_the_target_and_label_the_metric_names():
    split, table = hand_case()
    result = evaluate(by_last_item(table), split, "test", ks=(10,), num_negatives=1, eval_protocol="rechorus")
    assert set(result.metrics) == {f"sampled1:{m}@10" for m in ("hr", "ndcg", "mrr", "recall")}
    # one negative besides the target: every rank is 1 or 2
    assert set(np.round(result.per_user["sampled1:mrr@10"], 6)) <= {1.0, 0.5}
