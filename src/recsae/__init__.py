"""recsae: open up recommendation models with sparse autoencoders (RecSAE).

``recsae.run(...)`` runs the whole job into a run folder and opens it; ``recsae.Run.open(out)``
opens a finished one; ``recsae.RunConfig`` holds every option, and ``recsae.PRESETS`` the tuned
options per (dataset, model). Imported lazily, so ``import recsae`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from recsae.config import RunConfig
    from recsae.pipeline import PRESETS, preset
    from recsae.runs import Run, run

__all__ = ["PRESETS", "Run", "RunConfig", "preset", "run"]

_HOMES = {"Run": "recsae.runs", "run": "recsae.runs", "RunConfig": "recsae.config", "PRESETS": "recsae.pipeline",
          "preset": "recsae.pipeline"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'recsae' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
