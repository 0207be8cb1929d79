"""Sparse autoencoder stage: TopK + AuxK SAE, its metrics and its trainer (METHOD.md §2)."""

from recsae.sae.config import SaeConfig, SaeTrainConfig
from recsae.sae.model import EncoderOutput, ForwardOutput, TopKSAE

__all__ = ["EncoderOutput", "ForwardOutput", "SaeConfig", "SaeTrainConfig", "TopKSAE"]
