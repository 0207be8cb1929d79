from __future__ import annotations

import numpy as np
import pytest
from interpret_toy import Toy

from recsae.errors import DataError
from recsae.interpret import FeatureConfig, RowContext, build_vocabulary, row_features
from recsae.interpret.concepts import ConceptConfig


def _naive(toy: Toy, vocab, space, window: int) -> np.ndarray:
    """Row-by-row reference of every feature."""
    m = vocab.matrix.toarray()
    out = np.zeros((len(toy.ctx.users), space.n_features), dtype=np.float32)
    for r, (u, p) in enumerate(zip(toy.ctx.users, toy.ctx.positions, strict=True)):
        prefix = toy.ctx.histories[int(u)][: int(p)]
        win = prefix[-window:]
        recs = toy.ctx.recs[r]
        for f in range(space.n_features):
            c, side, thr = int(space.concept[f]), space.side[f], float(space.threshold[f])
            if side == "last":
                out[r, f] = len(prefix) > 0 and m[prefix[-1], c] > 0
            else:
                items = win if side == "input" else recs
                share = m[items, c].mean() if len(items) else 0.0
                out[r, f] = share > 0 and share >= thr - 1e-6
    return out


def test_features_equal_a_row_by_row_loop(toy: Toy) -> None:
    cfg = FeatureConfig(window=5, share_thresholds=(0.2, 0.6), chunk_rows=97)
    vocab = build_vocabulary(toy.meta, toy.counts, ConceptConfig(min_items=3, min_item_count=1, max_single_items=6))
    rows = np.arange(0, len(toy.ctx.users), 7)
    ctx = RowContext(toy.ctx.users[rows], toy.ctx.positions[rows], toy.ctx.histories, toy.ctx.recs[rows])
    sub = Toy(toy.meta, toy.counts, ctx, toy.acts[rows], toy.reps[rows])
    feats, space = row_features(ctx, vocab, cfg)
    assert feats.shape == (len(rows), space.n_features)
    np.testing.assert_array_equal(feats.toarray(), _naive(sub, vocab, space, cfg.window))
    # item concepts only get presence features; other concepts one per threshold and side
    n_item = sum(k == "item" for k in vocab.kind)
    assert space.n_features == 3 * vocab.n_concepts + 2 * (vocab.n_concepts - n_item)


def test_empty_prefix_has_no_input_features(toy: Toy) -> None:
    vocab = build_vocabulary(toy.meta, toy.counts)
    ctx = RowContext(np.array([1]), np.array([0]), toy.ctx.histories, None)
    feats, space = row_features(ctx, vocab)
    assert feats.nnz == 0
    assert set(space.side) == {"input", "last"}  # no recommendations: no output side


def test_positions_beyond_the_history_are_rejected(toy: Toy) -> None:
    vocab = build_vocabulary(toy.meta, toy.counts)
    n = int(toy.ctx.histories.lengths()[1])
    with pytest.raises(DataError, match="position"):
        row_features(RowContext(np.array([1]), np.array([n + 1]), toy.ctx.histories, None), vocab)
