"""Base recommenders behind one probe interface (docs/method.md §1.1), their trainer and checkpoints."""

from recsae.models.base import DotProductModel, HiddenStates, Recommender, TrainableRecommender
from recsae.models.checkpoint import load_checkpoint, save_checkpoint
from recsae.models.registry import MODELS, model_class, model_config
from recsae.models.trainer import TrainConfig, TrainResult, evaluate_model, train_model

__all__ = [
    "MODELS",
    "DotProductModel",
    "HiddenStates",
    "Recommender",
    "TrainConfig",
    "TrainResult",
    "TrainableRecommender",
    "evaluate_model",
    "load_checkpoint",
    "model_class",
    "model_config",
    "save_checkpoint",
    "train_model",
]
