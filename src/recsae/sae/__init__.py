"""The SAE core: TopK + AuxK SAE, its metrics, its trainer and the untrained baseline
(docs/method.md §2). It knows nothing of recommenders, activation stores or the evaluator
(``recsae.splice`` and ``recsae.sae_stage`` bring those together with an SAE).

The names are imported on first use, so that ``recsae.sae.config`` (which the CLI reads for
its defaults) does not load torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsae.sae.config import SaeConfig, SaeTrainConfig
    from recsae.sae.metrics import SaeMetrics, evaluate_sae
    from recsae.sae.model import EncoderOutput, ForwardOutput, TopKSAE, untrained_baseline
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
    "untrained_baseline": "model",
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
    "untrained_baseline",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
