"""Trainer: learning, determinism, checkpoints, resume, and wrapping a custom model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from recsae.data.dataset import Ragged, SplitData, input_sequences
from recsae.errors import ConfigError, DataError
from recsae.io import read_json
from recsae.models import trainer
from recsae.models.base import DotProductModel, HiddenStates
from recsae.models.checkpoint import check_split_fits, load_checkpoint
from recsae.models.registry import model_config
from recsae.models.trainer import TrainConfig, evaluate_model, train_model

FAST = TrainConfig(epochs=3, lr=1e-2, batch_size=32, patience=5)


def small(name: str, **kw: object) -> object:
    """A small config: short windows keep the tests fast (histories here are at most 10 long)."""
    extra = {"max_len": 12, "n_blocks": 1} if name == "sasrec" else {"max_len": 12} if name == "gru4rec" else {}
    return model_config(name, **(extra | kw))


def scores(model: nn.Module, split: SplitData) -> Tensor:
    users = np.arange(1, split.n_users + 1)
    seqs = input_sequences(split.history("test"), users, 20)
    with torch.no_grad():
        return model.score(model.represent(torch.from_numpy(users), seqs))  # type: ignore[operator]


@pytest.mark.slow
def test_training_beats_the_untrained_model(split: SplitData) -> None:
    cfg = small("sasrec", dim=16)
    untrained = train_model("sasrec", split, cfg, train_cfg=TrainConfig(epochs=1, lr=1e-9))
    trained = train_model("sasrec", split, cfg, train_cfg=TrainConfig(epochs=8, lr=1e-2, batch_size=16))
    assert trained.test["ndcg@10"] > untrained.test["ndcg@10"] + 0.2
    assert trained.best_epoch >= 1 and trained.valid == trained.history[trained.best_epoch - 1].valid


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bpr", "lightgcn"])
def test_same_seed_gives_identical_models(name: str, split: SplitData) -> None:
    cfg = small(name, dim=8)
    a = train_model(name, split, cfg, seed=3, train_cfg=FAST)
    b = train_model(name, split, cfg, seed=3, train_cfg=FAST)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    assert a.test == b.test


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bpr", "lightgcn"])
def test_checkpoint_round_trip_gives_identical_scores(name: str, split: SplitData, tmp_path: Path) -> None:
    result = train_model(name, split, small(name, dim=8), out_dir=tmp_path, train_cfg=FAST)
    loaded, config = load_checkpoint(tmp_path)
    assert torch.equal(scores(result.model, split), scores(loaded, split))
    assert config["model"]["name"] == name and config["seed"] == 0 and config["format_version"] == 1
    assert config["metrics"]["test"] == result.test and config["data"]["fingerprint"]
    assert {"torch", "numpy", "recsae"} <= set(config["environment"])
    assert evaluate_model(loaded, split).metrics == result.test


def test_best_epoch_is_kept_not_the_last(split: SplitData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = iter([0.5, 0.9, 0.1, 0.2])  # validation NDCG@10 per epoch: epoch 2 is best
    real = trainer.evaluate_model

    def fake(model, split, which="test", *args, **kw):  # type: ignore[no-untyped-def]
        res = real(model, split, which, *args, **kw)
        if which == "valid":
            res.metrics["ndcg@10"] = next(values)
        return res

    monkeypatch.setattr(trainer, "evaluate_model", fake)
    result = train_model("bpr", split, small("bpr", dim=8), out_dir=tmp_path,
                         train_cfg=TrainConfig(epochs=10, patience=2, lr=1e-2))
    assert (result.best_epoch, result.epochs) == (2, 4)  # stopped after 2 epochs without improvement
    assert [h.best for h in result.history] == [True, True, False, False]
    loaded, _ = load_checkpoint(tmp_path)
    assert torch.equal(scores(loaded, split), scores(result.model, split))


class _Interrupt(Exception):
    pass


def test_resume_continues_from_the_saved_epoch_and_matches_an_uninterrupted_run(
    split: SplitData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small("sasrec", dim=8)
    tcfg = TrainConfig(epochs=4, lr=1e-2, batch_size=16, patience=10)
    straight = train_model("sasrec", split, cfg, seed=1, train_cfg=tcfg)

    calls = {"n": 0}
    real = trainer.evaluate_model

    def dies_in_epoch_3(*args, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Interrupt
        return real(*args, **kw)

    monkeypatch.setattr(trainer, "evaluate_model", dies_in_epoch_3)
    with pytest.raises(_Interrupt):
        train_model("sasrec", split, cfg, out_dir=tmp_path, seed=1, train_cfg=tcfg)
    assert len(read_json(tmp_path / "train_state.json")["history"]) == 2
    monkeypatch.setattr(trainer, "evaluate_model", real)
    resumed = train_model("sasrec", split, cfg, out_dir=tmp_path, seed=1, train_cfg=tcfg)
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4]
    assert [(h.loss, h.valid) for h in resumed.history] == [(h.loss, h.valid) for h in straight.history]
    for x, y in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert resumed.test == straight.test


def test_rerunning_a_finished_run_trains_nothing(split: SplitData, tmp_path: Path) -> None:
    cfg = small("bpr", dim=8)
    first = train_model("bpr", split, cfg, out_dir=tmp_path, train_cfg=FAST)
    again = train_model("bpr", split, cfg, out_dir=tmp_path, train_cfg=FAST)
    assert again.epochs == first.epochs and again.test == first.test
    assert again.seconds == first.seconds


def test_resume_refuses_a_folder_of_another_run(split: SplitData, tmp_path: Path) -> None:
    train_model("bpr", split, small("bpr", dim=8), out_dir=tmp_path, train_cfg=FAST)
    with pytest.raises(ConfigError, match="different training run"):
        train_model("bpr", split, small("bpr", dim=16), out_dir=tmp_path, train_cfg=FAST)


def test_loading_a_folder_without_a_checkpoint_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"config\.json"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("option", "value"),
    [("epochs", 0), ("patience", 0), ("lr", 0.0), ("lr", float("nan")), ("batch_size", 0), ("weight_decay", -1.0),
     ("eval_batch_size", 0), ("max_seconds", -1.0)],
)
def test_invalid_train_config_names_the_field_and_its_value(option: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"train: {option} must be .*, got {value!r}$"):
        TrainConfig(**{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("damaged", ["config.json", "model.safetensors"])
def test_a_damaged_checkpoint_file_is_a_data_error_naming_it(split: SplitData, tmp_path: Path, damaged: str) -> None:
    train_model("bpr", split, small("bpr", dim=8), out_dir=tmp_path, train_cfg=TrainConfig(epochs=1))
    path = tmp_path / damaged
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match=rf"{damaged.replace('.', '[.]')}(, line \d+)?: (not valid JSON|not a readable)"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_of_another_format_version_is_a_data_error(split: SplitData, tmp_path: Path) -> None:
    from recsae.io import write_json

    train_model("bpr", split, small("bpr", dim=8), out_dir=tmp_path, train_cfg=TrainConfig(epochs=1))
    write_json(tmp_path / "config.json", read_json(tmp_path / "config.json") | {"format_version": 7})
    with pytest.raises(DataError, match=r"config\.json, field 'format_version': format version 7"):
        load_checkpoint(tmp_path)


def test_a_damaged_resume_state_is_a_data_error_naming_it(split: SplitData, tmp_path: Path) -> None:
    cfg, tcfg = small("bpr", dim=8), TrainConfig(epochs=1)
    train_model("bpr", split, cfg, out_dir=tmp_path, train_cfg=tcfg)
    (tmp_path / "train_state.json").write_text("{")
    with pytest.raises(DataError, match=r"train_state\.json, line 1: not valid JSON"):
        train_model("bpr", split, cfg, out_dir=tmp_path, train_cfg=tcfg)


def test_wrong_config_type_is_a_config_error(split: SplitData) -> None:
    with pytest.raises(ConfigError, match="SASRecConfig"):
        train_model("sasrec", split, model_config("bpr"))


class TwoTower(nn.Module):
    """A user's own dot-product model, unaware of recsae."""

    def __init__(self, n_users: int, n_items: int, d: int = 4) -> None:
        super().__init__()
        self.user_tower = nn.Embedding(n_users + 1, d)
        self.item_tower = nn.Embedding(n_items + 1, d)


class TinyGRU(nn.Module):
    def __init__(self, n_items: int, d: int = 4) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.gru = nn.GRU(d, d, batch_first=True)

    def encode(self, seqs: Tensor) -> Tensor:
        return self.gru(self.items(seqs))[0]


def test_wrapping_a_custom_dot_product_model_exposes_the_probe_contract(split: SplitData) -> None:
    torch.manual_seed(0)
    net = TwoTower(split.n_users, split.n_items)
    wrapped = DotProductModel(
        module=net,
        represent=lambda m, users, seqs: m.user_tower(users),
        item_embeddings=lambda m: m.item_tower.weight,
    )
    users = torch.arange(1, 6)
    h = wrapped.represent(users, torch.zeros(5, 3, dtype=torch.long))
    torch.testing.assert_close(wrapped.score(h), net.user_tower(users) @ net.item_tower.weight.T)
    assert not wrapped.sequential and wrapped.hidden_states(users, torch.zeros(5, 3)).states.shape == (5, 1, 4)
    assert set(evaluate_model(wrapped, split).metrics) >= {"ndcg@10", "hr@10"}


def test_wrapping_a_custom_sequential_model_needs_and_uses_its_hidden_states(split: SplitData) -> None:
    net = TinyGRU(split.n_items)
    with pytest.raises(ConfigError, match="hidden_states"):
        DotProductModel(net, lambda m, u, s: m.encode(s)[:, -1], lambda m: m.items.weight, sequential=True)
    wrapped = DotProductModel(
        module=net,
        represent=lambda m, users, seqs: m.encode(seqs)[:, -1],
        item_embeddings=lambda m: m.items.weight,
        sequential=True,
        hidden_states=lambda m, users, seqs: HiddenStates(m.encode(seqs), seqs > 0),
    )
    seqs = torch.tensor([[0, 1, 2], [3, 4, 5]])
    hs = wrapped.hidden_states(torch.tensor([1, 2]), seqs)
    assert wrapped.sequential and hs.states.shape == (2, 3, 4) and hs.mask.tolist() == [[False, True, True], [True] * 3]
    assert not DotProductModel.sequential  # the flag is per instance, not per class


def test_a_time_limit_stops_after_the_epoch_that_passes_it(split: SplitData) -> None:
    result = train_model("bpr", split, small("bpr", dim=8), train_cfg=TrainConfig(epochs=50, max_seconds=0.0))
    assert result.epochs == 1 and result.best_epoch == 1


def test_a_split_of_another_size_than_the_model_is_refused_naming_the_checkpoint(split: SplitData, tmp_path: Path) -> None:
    check_split_fits(split, split.n_users, split.n_items, tmp_path)  # same size: accepted
    with pytest.raises(DataError, match="the model was trained on") as err:
        check_split_fits(split, split.n_users, split.n_items + 1, tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)


def test_resume_of_a_state_without_a_finite_validation_score_continues(
    split: SplitData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a NaN validation score leaves the best score at -inf, which strict JSON stores as null
    real = trainer.evaluate_model

    def nan_valid(model, split, which, *args, **kw):  # type: ignore[no-untyped-def]
        result = real(model, split, which, *args, **kw)
        return result._replace(metrics={k: math.nan for k in result.metrics}) if which == "valid" else result

    monkeypatch.setattr(trainer, "evaluate_model", nan_valid)
    cfg = small("bpr", dim=8)
    train_model("bpr", split, cfg, out_dir=tmp_path, train_cfg=TrainConfig(epochs=1, lr=1e-2, batch_size=32))
    assert read_json(tmp_path / "train_state.json")["best_value"] is None
    monkeypatch.setattr(trainer, "evaluate_model", real)
    resumed = train_model("bpr", split, cfg, out_dir=tmp_path, train_cfg=TrainConfig(epochs=2, lr=1e-2, batch_size=32))
    assert len(resumed.history) == 2 and resumed.best_epoch == 2


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_a_split_without_training_sequences_is_a_data_error(name: str) -> None:
    from recsae.data.dataset import InteractionDataset, ItemMeta
    from recsae.data.split import make_split

    # three interactions per user: leave-one-out leaves one training item, no next-item pair
    user = np.repeat(np.arange(1, 5), 3)
    ds = InteractionDataset(
        name="three", user=user, item=np.arange(1, 13), time=np.arange(12, dtype=np.float64),
        user_ids=np.array([""] + [f"u{u}" for u in range(1, 5)]), item_ids=np.array([""] + [f"i{i}" for i in range(1, 13)]),
        item_meta=ItemMeta(title=[""] * 13),
    )
    with pytest.raises(DataError, match=f"give {name} no training examples"):
        trainer.train_model(name, make_split(ds), seed=0, device="cpu", train_cfg=trainer.TrainConfig(epochs=1))


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m | {"n_items": 10**12}, "the weights do not match the model config"),
    (lambda m: m | {"config": m["config"] | {"dim": "8"}}, "malformed model section"),
])
def test_a_checkpoint_config_that_does_not_fit_its_weights_is_a_data_error(
    split: SplitData, tmp_path: Path, change, message: str
) -> None:
    # checked on a skeleton without memory: a config asking for 10^12 items is refused, not allocated
    from recsae.io import write_json

    train_model("bpr", split, small("bpr", dim=8), out_dir=tmp_path, train_cfg=TrainConfig(epochs=1))
    config = read_json(tmp_path / "config.json")
    write_json(tmp_path / "config.json", config | {"model": change(config["model"])})
    with pytest.raises(DataError, match=message):
        load_checkpoint(tmp_path)


def _many_rows_per_user(split: SplitData) -> SplitData:
    """The fixture's users with their last four items held out, two validation and two test rows
    each, as a global time split holds out many rows per user."""
    full = split.train.concat_rows(split.valid).concat_rows(split.test)
    rows = [full[u].tolist() for u in range(len(full))]
    parts = [Ragged.from_lists([r[: -4] for r in rows]), Ragged.from_lists([r[-4:-2] for r in rows]),
             Ragged.from_lists([r[-2:] for r in rows])]
    return SplitData(split.dataset, *parts, protocol="time")


def test_rechorus_protocol_picks_the_epoch_on_validation_rows_and_records_the_test_rows(
    split: SplitData, tmp_path: Path
) -> None:
    rows_split = _many_rows_per_user(split)
    tcfg = TrainConfig(epochs=3, lr=1e-2, batch_size=32, patience=5, eval_protocol="rechorus")
    result = train_model("sasrec", rows_split, small("sasrec", dim=8), out_dir=tmp_path, train_cfg=tcfg)
    by_rows = evaluate_model(result.model, rows_split, "valid", ks=(10, 20), eval_protocol="rechorus")
    assert result.valid == by_rows.metrics
    assert result.valid != evaluate_model(result.model, rows_split, "valid", ks=(10, 20)).metrics
    assert result.test == evaluate_model(result.model, rows_split, "test", eval_protocol="rechorus").metrics
    # every user has at least four items, so each held-out row has an earlier one
    assert result.evaluation is not None and result.evaluation["n_rows"] == len(rows_split.test.values)
    assert read_json(tmp_path / "config.json")["metrics"]["evaluation"]["n_rows"] == len(rows_split.test.values)
    with pytest.raises(ConfigError, match="eval_protocol differ"):
        train_model("sasrec", rows_split, small("sasrec", dim=8), out_dir=tmp_path, train_cfg=FAST)
