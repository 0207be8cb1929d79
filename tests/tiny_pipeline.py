"""The smallest ``recsae run`` that still produces every stage's output and every report part:
the ``tiny_run`` fixture of ``tests/conftest.py`` (one run per test session) and the pipeline
tests' variants of it."""

from __future__ import annotations

import dataclasses

from recsae.config import ModelOptions, RunConfig, SaeOptions
from recsae.data.registry import DatasetOptions

TINY = {"n_users": 160, "n_items": 120, "n_concepts": 6, "min_seq_len": 12, "max_seq_len": 20}
"""Options of the synthetic generator."""


def tiny_config(data: DatasetOptions | None = None, **changes: object) -> RunConfig:
    """The tiny run, with ``changes`` by dotted key (``**{"sae.k": 4}``)."""
    # exactly two SAE passes: the tiny store would otherwise get 100 (sae.min_rows)
    base = RunConfig(data_kwargs=TINY, model=ModelOptions(epochs=3), sae=SaeOptions(expansion=4, k=8, epochs=2, min_rows=0),
                     seed=3)
    if data is not None:
        base = dataclasses.replace(base, data=data)
    return base.override(changes)
