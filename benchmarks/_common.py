"""Helpers shared by the benchmark scripts (each run as ``python benchmarks/NAME.py``, which puts
this folder on ``sys.path``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_data_root() -> Path:
    """Root of the real datasets: ``$RECSAE_DATA``, else ``../shared/data`` next to the repository."""
    return Path(os.environ.get("RECSAE_DATA") or REPO.parent / "shared" / "data")
