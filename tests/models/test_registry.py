"""Models are chosen by name; their options are checked."""

from __future__ import annotations

import pytest

from recsae.errors import ConfigError
from recsae.models.registry import MODELS, model_class, model_config
from recsae.models.sasrec import SASRecConfig


def test_every_model_is_registered_under_its_own_name() -> None:
    assert set(MODELS) == {"sasrec", "gru4rec", "bpr", "lightgcn"}
    assert all(cls.name == name for name, cls in MODELS.items())


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="sasrec"):
        model_class("bert4rec")


def test_overrides_apply_and_none_keeps_the_default() -> None:
    cfg = model_config("SASRec", dim=32, max_len=None)
    assert cfg == SASRecConfig(dim=32)


def test_an_option_the_model_lacks_is_an_error() -> None:
    with pytest.raises(ConfigError, match="max_len"):
        model_config("bpr", max_len=50)


@pytest.mark.parametrize(
    ("name", "bad"),
    [("sasrec", {"dim": 10, "n_heads": 3}), ("sasrec", {"loss": "hinge"}), ("gru4rec", {"dropout": 1.5}),
     ("lightgcn", {"n_layers": -1}), ("bpr", {"reg": -1.0})],
)
def test_invalid_values_are_config_errors(name: str, bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        model_config(name, **bad)
