"""Probe stage: read a frozen model's representations into an activation store (docs/method.md §1)."""

from recsae.probe.embeddings import EmbeddingModel, from_embeddings, load_histories
from recsae.probe.harvest import frozen, harvest, model_max_len
from recsae.probe.store import SPLITS, ActivationStore, StoreWriter

__all__ = [
    "SPLITS",
    "ActivationStore",
    "EmbeddingModel",
    "StoreWriter",
    "from_embeddings",
    "frozen",
    "harvest",
    "load_histories",
    "model_max_len",
]
