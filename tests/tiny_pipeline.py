"""The smallest ``recsae run`` that still produces every stage's output and every report part:
the ``tiny_run`` fixture of ``tests/conftest.py`` (one run per test session) and the pipeline
tests' variants of it."""

from __future__ import annotations

from typing import Any

from recsae.pipeline import RunConfig

TINY = {"n_users": 160, "n_items": 120, "n_concepts": 6, "min_seq_len": 12, "max_seq_len": 20}
"""Options of the synthetic generator."""


def tiny_config(**kw: Any) -> RunConfig:
    base = {
        # exactly two SAE passes: the tiny store would otherwise get 100 (sae_min_rows)
        "data_kwargs": TINY, "epochs": 3, "sae_expansion": 4, "sae_k": 8, "sae_epochs": 2, "sae_min_rows": 0,
        "seed": 3,
    }
    return RunConfig(**(base | kw))
