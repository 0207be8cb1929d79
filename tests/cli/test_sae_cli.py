"""`recsae sae train` / `recsae sae eval` from a model checkpoint on a small CSV dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from recsae.cli import app
from recsae.data.registry import load_dataset
from recsae.data.split import make_split
from recsae.models.checkpoint import checkpoint_config, data_record, save_checkpoint
from recsae.models.registry import model_class, model_config


@pytest.fixture
def checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,timestamp"]
    for u in range(1, 41):
        for t, i in enumerate(rng.choice(np.arange(1, 31), size=int(rng.integers(4, 10)), replace=False)):
            lines.append(f"u{u},i{i},{t}")
    csv = tmp_path / "log.csv"
    csv.write_text("\n".join(lines) + "\n")
    split = make_split(load_dataset(str(csv)), "leave-one-out")
    cfg = model_config("sasrec", dim=8, max_len=6)
    model = model_class("sasrec").build(cfg, split.n_users, split.n_items, split.train)  # untrained is enough
    source = {"dataset": str(csv), "data_root": None, "format": None, "min_rating": None, "k_core": None,
              "protocol": "leave-one-out", "seed": 0}
    save_checkpoint(tmp_path / "model", model, checkpoint_config(model, data_record(split, source), seed=0))
    return tmp_path / "model"


@pytest.mark.slow
def test_sae_train_then_eval(checkpoint, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(app, ["sae", "train", "--checkpoint", str(checkpoint), "--out", str(out), "--k", "2",
                              "--expansion", "2", "--epochs", "2", "--min-rows", "0", "--batch-size", "32",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "spliced_error" in res.output
    for path in ("activations/meta.json", "activations/index.parquet", "sae/cfg.json", "sae/sae.safetensors", "splice.json"):
        assert (out / path).is_file(), path
    splice = json.loads((out / "splice.json").read_text())
    assert splice["conditions"]["spliced_error"]["metrics"] == splice["conditions"]["original"]["metrics"]

    res = runner.invoke(app, ["sae", "eval", "--checkpoint", str(checkpoint), "--sae", str(out / "sae"),
                              "--out", str(tmp_path / "again.json"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["conditions"]["spliced"]["metrics"] == splice["conditions"]["spliced"]["metrics"]
    assert again["config"]["mean_source"].endswith("activations train rows")
    # one random-SAE recipe: sae eval reports exactly the row that sae train (and recsae run) wrote
    assert again["conditions"]["random_sae"] == splice["conditions"]["random_sae"]


def test_sae_eval_rejects_a_missing_sae_folder(checkpoint, tmp_path):
    res = CliRunner().invoke(app, ["sae", "eval", "--checkpoint", str(checkpoint), "--sae", str(tmp_path / "nope")])
    assert res.exit_code != 0
    assert "not an SAE checkpoint" in str(res.exception)


def test_sae_train_defaults_are_those_of_recsae_run() -> None:
    import inspect

    from recsae.cli.sae import train_command
    from recsae.config import SaeOptions
    from recsae.sae.config import SaeTrainConfig

    defaults = {name: p.default for name, p in inspect.signature(train_command).parameters.items()}
    run = SaeOptions()
    assert (defaults["epochs"], defaults["min_rows"], defaults["k"], defaults["expansion"], defaults["balance"]) == (
        run.epochs, run.min_rows, run.k, run.expansion, run.balance
    )
    assert defaults["lr"] == SaeTrainConfig().lr
