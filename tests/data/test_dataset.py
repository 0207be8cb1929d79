"""Core data helpers: model input padding and item popularity."""

from __future__ import annotations

import numpy as np
import torch

from recsae.data.dataset import Ragged, input_sequences, item_popularity


def test_input_sequences_keep_the_last_max_len_items_left_padded_with_zero() -> None:
    history = Ragged.from_lists([[], [5, 6, 7, 8], [9], [], [1, 2]])
    seqs = input_sequences(history, np.array([1, 2, 3, 4, 1]), 3)
    assert seqs.dtype == torch.int64
    assert seqs.tolist() == [[6, 7, 8], [0, 0, 9], [0, 0, 0], [0, 1, 2], [6, 7, 8]]


def test_input_sequences_of_no_users_or_only_empty_histories_are_all_padding() -> None:
    history = Ragged.from_lists([[], [], [4]])
    assert input_sequences(history, np.zeros(0, dtype=np.int64), 2).shape == (0, 2)
    assert input_sequences(history, np.array([0, 1]), 2).tolist() == [[0, 0], [0, 0]]


def test_item_popularity_counts_training_interactions_with_padding_zero() -> None:
    assert item_popularity(np.array([1, 1, 3, 0]), 3).tolist() == [0, 2, 0, 1]
