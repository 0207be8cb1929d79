"""Sparse autoencoder stage: TopK + AuxK SAE, its metrics and its trainer (docs/method.md §2).

The names are imported on first use, so that ``recsae.sae.config`` (which the CLI reads for
its defaults) does not load torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsae.sae.config import SaeConfig, SaeTrainConfig
    from recsae.sae.metrics import SaeMetrics, evaluate_sae
    from recsae.sae.model import EncoderOutput, ForwardOutput, TopKSAE
    from recsae.sae.train import SaeTrainResult, train_sae

_MODULES = {
    "EncoderOutput": "model",
    "ForwardOutput": "model",
    "SaeConfig": "config",
    "SaeMetrics": "metrics",
    "SaeTrainConfig": "config",
    "SaeTrainResult": "train",
    "TopKSAE": "model",
    "evaluate_sae": "metrics",
    "train_sae": "train",
}

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


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
