"""The dataset layer: loaders, filters, splits, statistics and downloads.

Start with ``load_dataset`` (a name such as 'ml-100k', or a path with a format) and
``leave_one_out`` / ``time_split`` / ``make_split`` to get a ``SplitData``.
"""

from recsae.data.dataset import InteractionDataset, ItemMeta, Ragged, SplitData, input_sequences
from recsae.data.registry import (
    DatasetOptions,
    dataset_fingerprint,
    list_datasets,
    load_dataset,
    load_split,
)
from recsae.data.split import given_split, leave_one_out, make_split, time_split
from recsae.data.stats import DatasetStats, dataset_stats

__all__ = [
    "DatasetOptions",
    "DatasetStats",
    "InteractionDataset",
    "ItemMeta",
    "Ragged",
    "SplitData",
    "dataset_fingerprint",
    "dataset_stats",
    "given_split",
    "input_sequences",
    "leave_one_out",
    "list_datasets",
    "load_dataset",
    "load_split",
    "make_split",
    "time_split",
]
