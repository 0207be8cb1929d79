"""recsae.defaults: the training options and the SAE's shape that scale with the data, and the
named datasets' settings they reproduce (through ``pipeline.run_defaults``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsae.config import ModelOptions, RunConfig
from recsae.data.dataset import SplitData
from recsae.data.registry import DatasetOptions
from recsae.defaults import (
    MAX_EXPANSION,
    MIN_ROWS_PER_LATENT,
    MIN_USERS_PER_LATENT,
    SMALL_USERS,
    lr_text,
    sae_defaults,
    train_defaults,
    width_warning,
)
from recsae.models.trainer import TrainConfig
from recsae.pipeline import apply_defaults, make_run_split, model_settings, run_defaults


def test_patience_is_longer_below_the_small_data_threshold() -> None:
    assert train_defaults("sasrec", True, SMALL_USERS - 1, 50_000).patience == 20
    assert train_defaults("sasrec", True, SMALL_USERS, 50_000).patience == 10
    assert train_defaults("bpr", False, 300, 9_000).patience == 20


def test_learning_rate_falls_and_batches_grow_with_the_data() -> None:
    sizes = [(300, 9_000), (1_500, 60_000), (6_000, 600_000), (30_000, 5_000_000)]
    for sequential, model in ((True, "sasrec"), (False, "lightgcn"), (False, "bpr")):
        rules = [train_defaults(model, sequential, users, n) for users, n in sizes]
        assert [r.lr for r in rules] == sorted((r.lr for r in rules), reverse=True)
        assert [r.batch_size for r in rules] == sorted(r.batch_size for r in rules)
    assert train_defaults("lightgcn", False, 900, 50_000).lr > train_defaults("bpr", False, 900, 50_000).lr


def test_every_training_choice_says_why() -> None:
    rule = train_defaults("lightgcn", False, 938, 54_413)
    assert set(rule.why) == {"lr", "batch_size", "patience"} and all(rule.why.values())
    assert "200,000 interactions" in rule.reasons and "2,000 users" in rule.reasons


@pytest.mark.parametrize(("n_rows", "n_users"), [(64_000, 1_500), (53_000, 938), (20_000, 400), (8_000, 350)])
def test_the_chosen_width_gives_each_latent_enough_rows_of_enough_users(n_rows: int, n_users: int) -> None:
    rule = sae_defaults(n_rows, n_users, 64)
    assert rule.n_latents == rule.expansion * 64 and 1 <= rule.k <= rule.n_latents
    assert n_rows * rule.k / rule.n_latents >= MIN_ROWS_PER_LATENT
    assert n_users * rule.k / rule.n_latents >= MIN_USERS_PER_LATENT
    assert width_warning(n_rows, n_users, 64, rule.k, rule.expansion) is None
    if rule.expansion < MAX_EXPANSION:  # the widest that fits: twice as wide would not
        wider = rule.expansion * 2
        assert width_warning(n_rows, n_users, 64, rule.k, wider) is not None


def test_width_shrinks_with_fewer_users_at_the_same_rows() -> None:
    widths = [sae_defaults(50_000, users, 64).n_latents for users in (3_000, 1_000, 300, 100)]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]


def test_too_wide_an_sae_is_warned_about_with_the_width_that_fits() -> None:
    warning = width_warning(53_000, 938, 64, 32, 32)
    assert warning is not None and "2,048 latents" in warning and "expansion 16" in warning
    tiny = width_warning(300, 300, 64, 4, 1)
    assert tiny is not None and "too small for any width" in tiny


def test_a_given_k_or_expansion_is_kept_and_the_other_chosen_around_it() -> None:
    assert sae_defaults(53_000, 938, 64, expansion=4).expansion == 4
    given_k = sae_defaults(300, 300, 8, k=100)
    assert given_k.k == 100 and given_k.n_latents >= 100  # never narrower than k


def test_lr_text_writes_rates_as_people_do() -> None:
    assert [lr_text(x) for x in (5e-3, 1e-3, 2.5e-4, 0.5)] == ["5e-3", "1e-3", "2.5e-4", "0.5"]


def _resolved(cfg: RunConfig, split: SplitData | None = None) -> tuple[TrainConfig, tuple[int | None, int | None]]:
    """The training a run ends up with and its SAE's (k, expansion), all left to the defaults."""
    split = split if split is not None else make_run_split(cfg)
    resolved = apply_defaults(cfg, run_defaults(cfg, split))
    return TrainConfig(**model_settings(resolved)[1]), (resolved.sae.k, resolved.sae.expansion)


def test_the_default_synthetic_run_trains_and_sizes_its_sae_as_before() -> None:
    split = make_run_split(RunConfig())  # one split for both models: leave-one-out
    for model in ("sasrec", "gru4rec"):
        train, shape = _resolved(RunConfig(model=ModelOptions(model)), split)
        assert (train.lr, train.batch_size, train.patience) == (5e-3, 64, 3)
        assert shape == (32, 32)


def test_ml1m_trains_and_sizes_its_sae_as_before(data_root: Path) -> None:
    data = DatasetOptions("ml-1m", data_root=str(data_root))
    before = {"sasrec": (3e-3, 64, 10), "bpr": (1e-3, 4096, 10), "lightgcn": (1e-3, 4096, 10)}
    for model, settings in before.items():
        train, shape = _resolved(RunConfig(data=data, model=ModelOptions(model)))
        assert (train.lr, train.batch_size, train.patience) == settings, model
        if model == "sasrec":
            assert shape == (32, 32)


def test_the_rule_reproduces_the_training_presets_it_replaced(data_root: Path) -> None:
    # ml-latest-small's SASRec preset was lr 5e-3 and batch 64; ml-100k's patience 20
    small, _ = _resolved(RunConfig(data=DatasetOptions("ml-latest-small", data_root=str(data_root))))
    assert (small.lr, small.batch_size) == (5e-3, 64)
    ml100k = DatasetOptions("ml-100k", data_root=str(data_root))
    for model in ("sasrec", "gru4rec"):
        train, _ = _resolved(RunConfig(data=ml100k, model=ModelOptions(model)))
        assert (train.lr, train.batch_size, train.patience) == (3e-3, 64, 20), model  # lr: the kept preset


def test_lightgcn_on_ml100k_gets_the_small_data_settings_and_a_narrower_sae(data_root: Path) -> None:
    cfg = RunConfig(data=DatasetOptions("ml-100k", data_root=str(data_root)), model=ModelOptions("lightgcn"))
    train, shape = _resolved(cfg)
    assert (train.lr, train.batch_size, train.patience) == (5e-3, 1024, 20)
    assert shape == (32, 16)
