"""Models by name: ``MODELS[name]`` is the class, ``model_config(name, **overrides)`` its config."""

from __future__ import annotations

import dataclasses
from typing import Any

from recsae.errors import ConfigError
from recsae.models.base import TrainableRecommender
from recsae.models.bpr import BPR
from recsae.models.gru4rec import GRU4Rec
from recsae.models.lightgcn import LightGCN
from recsae.models.sasrec import SASRec

MODELS: dict[str, type[TrainableRecommender]] = {cls.name: cls for cls in (SASRec, GRU4Rec, BPR, LightGCN)}
"""The trainable built-in models, keyed by their ``name``."""


def model_class(name: str) -> type[TrainableRecommender]:
    """The model class registered as ``name`` (case-insensitive); ConfigError when unknown."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None


def model_config(name: str, **overrides: Any) -> Any:
    """The model's config with ``overrides`` applied; options the model lacks are an error.

    ``None`` values are ignored, so CLI options left unset keep the model's defaults.
    """
    cls = model_class(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigError(f"model {name!r} has no option(s) {', '.join(unknown)}; it takes {', '.join(sorted(fields))}")
    import typing

    from recsae.config import option_value

    hints = typing.get_type_hints(cls.config_class)
    # each value checked against its field's type first: "0.2" for a number is a one-line error
    given = {k: option_value(hints[k], v, f"model {name!r}: {k}") for k, v in given.items()}
    return cls.config_class(**given)
