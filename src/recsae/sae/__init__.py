"""Sparse autoencoder stage: TopK + AuxK SAE, its metrics and its trainer (METHOD.md §2)."""

from recsae.sae.config import SaeConfig, SaeTrainConfig
from recsae.sae.metrics import SaeMetrics, evaluate_sae
from recsae.sae.model import EncoderOutput, ForwardOutput, TopKSAE
from recsae.sae.train import SaeTrainResult, train_sae

__all__ = [
    "EncoderOutput",
    "ForwardOutput",
    "SaeConfig",
    "SaeMetrics",
    "SaeTrainConfig",
    "SaeTrainResult",
    "TopKSAE",
    "evaluate_sae",
    "train_sae",
]
