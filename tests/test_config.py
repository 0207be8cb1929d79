"""The nested run config: a lossless record, strict reading of files, overrides by dotted key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsae.config import ModelOptions, RunConfig, SaeOptions, load_config
from recsae.data.registry import DatasetOptions
from recsae.errors import ConfigError
from recsae.io import read_json


def _custom() -> RunConfig:
    from recsae.interpret.api import InterpretConfig
    from recsae.interpret.faithfulness import FaithConfig
    from recsae.steer.study import SteerConfig

    return RunConfig(data=DatasetOptions("ml-100k", Path("/data"), min_rating=3.0), data_kwargs={"n_users": 7},
                     model=ModelOptions("gru4rec", epochs=5, lr=1e-4), sae=SaeOptions(k=8, balance=0.01),
                     interpret=InterpretConfig(causal=False, faith=FaithConfig(scales=(3.0,))),
                     steer=SteerConfig(concepts=("genre=Drama",), max_users=None), stages=("model", "sae"), seed=4)


def test_a_config_read_back_from_its_record_is_equal_to_it() -> None:
    cfg = _custom()
    record = json.loads(json.dumps(cfg.to_dict()))  # as written to config.json
    assert RunConfig.from_dict(record) == cfg
    assert RunConfig.from_dict(RunConfig().to_dict()) == RunConfig()


def test_the_run_seed_is_the_seed_of_every_nested_config() -> None:
    cfg = _custom()
    assert cfg.interpret.seed == cfg.steer.seed == 4


@pytest.mark.parametrize(("record", "message"), [
    ({"sae": {"kk": 3}}, r"sae: unknown option\(s\) \['kk'\]"),
    ({"interpret": {"faith": {"scale": [2.0]}}}, r"interpret.faith: unknown option\(s\) \['scale'\]"),
    ({"sae": {"k": "32"}}, "sae.k: expected an integer, got '32'"),
    ({"sae": {"k": True}}, "sae.k: expected an integer"),
    ({"sae": {"controls": 1}}, "sae.controls: expected true or false"),
    ({"model": {"lr": "fast"}}, "model.lr: expected a number"),
    ({"steer": {"concepts": "genre=Drama"}}, "steer.concepts: expected a list"),
    ({"steer": {"which": "later"}}, "steer.which: expected one of"),
    ({"sae": 3}, "sae: expected a table of options"),
    ({"stages": ["model", "dance"]}, "unknown stage"),
    ({"model": {"checkpoint": "a", "model_from": "m:f"}}, "one source of the model"),
    ({"model": {"user_vectors": "u.npy"}}, "needs both user_vectors and item_embeddings"),
    ({"data": {"min_rating": 3}}, "data: expected a table with at least 'dataset'"),
    ({"model": {"options": [0.2]}}, "model.options: expected a table of named options"),
    ({"model": {"options": {"dropout": 0.1}, "checkpoint": "ck"}}, r"model.options \['dropout'\]: only for a model the run trains"),
])
def test_a_bad_record_is_an_error_naming_the_key(record: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(record)


def test_override_replaces_dotted_keys_and_skips_unset_ones() -> None:
    cfg = _custom().override({"sae.k": 16, "model.epochs": None, "interpret.faith.scales": [2.0, 8.0], "seed": 9})
    assert cfg.sae.k == 16 and cfg.model.epochs == 5 and cfg.interpret.faith.scales == (2.0, 8.0)
    assert cfg.seed == 9 and cfg.interpret.seed == 9
    assert cfg.sae.balance == 0.01 and cfg.data.dataset == "ml-100k"  # the rest kept


def test_a_toml_file_sets_what_it_names_and_leaves_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text('seed = 2\n[data]\ndataset = "ml-1m"\n[sae]\nk = 16\n[interpret.faith]\nscales = [8.0]\n')
    cfg = load_config(tmp_path / "run.toml")
    assert (cfg.seed, cfg.data.dataset, cfg.sae.k, cfg.interpret.faith.scales) == (2, "ml-1m", 16, (8.0,))
    assert cfg.sae.expansion == SaeOptions().expansion and cfg.model == ModelOptions()


def test_model_options_come_from_a_toml_table_and_survive_the_round_trip(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text('[model]\nname = "gru4rec"\n[model.options]\ndropout = 0.3\nn_layers = 2\n')
    cfg = load_config(tmp_path / "run.toml")
    assert cfg.model.options == {"dropout": 0.3, "n_layers": 2}
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_a_bad_config_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "run.toml"
    bad.write_text("[sae\nk = 1\n")
    with pytest.raises(ConfigError, match=r"run.toml: not a valid TOML file"):
        load_config(bad)
    bad.write_text("[sae]\nkay = 1\n")
    with pytest.raises(ConfigError, match=r"run.toml: sae: unknown option"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "missing.toml")


def test_a_run_folder_config_this_recsae_cannot_read_says_another_version_wrote_it(tmp_path: Path) -> None:
    # the flat layout of an early recsae: same format_version, other keys
    old = tmp_path / "config.json"
    old.write_text(json.dumps({"format_version": 1, "config": {"sae_k": 32, "epochs": 22}, "seed": 0}))
    with pytest.raises(ConfigError, match=r"unknown option.*written by another version of recsae; rerun `recsae run`"):
        load_config(old)
    plain = tmp_path / "plain.json"  # a config file of the user's own: no such hint
    plain.write_text(json.dumps({"sae_k": 32}))
    with pytest.raises(ConfigError) as err:
        load_config(plain)
    assert "another version" not in str(err.value)


def test_the_cli_reads_a_config_file_lets_its_options_win_and_records_the_result(run_cli, tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text('seed = 5\n[data_kwargs]\nn_users = 150\n[sae]\nk = 16\nexpansion = 4\n'
                                       '[model]\nepochs = 2\n')
    out = tmp_path / "out"
    code, _, err = run_cli(["run", "--config", str(tmp_path / "run.toml"), "--k", "8", "--stages", "", "--out", str(out)])
    assert code == 0, err
    recorded = load_config(out / "config.json")  # a run folder's config.json is a config file too
    assert (recorded.seed, recorded.sae.k, recorded.sae.expansion, recorded.model.epochs) == (5, 8, 4, 2)
    assert recorded.data_kwargs == {"n_users": 150}
    assert read_json(out / "summary.json")["dataset"]["n_users"] == 150
