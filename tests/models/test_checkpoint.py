"""A checkpoint reloads only the data its model was trained on: the recorded split fingerprint is
compared, so data of the same size with other interactions is refused, naming the checkpoint's
config.json and the field."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from recsae.data.registry import load_dataset
from recsae.data.split import make_split
from recsae.errors import DataError
from recsae.io import read_json, write_json
from recsae.models.checkpoint import (
    checkpoint_config,
    data_record,
    load_checkpoint,
    save_checkpoint,
    split_for_checkpoint,
)
from recsae.models.registry import model_class, model_config


def _rows(seed: int = 0) -> list[tuple[str, str, int]]:
    """40 users with 4-9 distinct items each out of 30."""
    rng = np.random.default_rng(seed)
    return [(f"u{u}", f"i{i}", t) for u in range(1, 41)
            for t, i in enumerate(rng.choice(np.arange(1, 31), size=int(rng.integers(4, 10)), replace=False))]


def _write(csv: Path, rows: list[tuple[str, str, int]]) -> None:
    csv.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path, list[tuple[str, str, int]]]:
    """(checkpoint folder, the CSV it was trained on, that CSV's rows): an untrained SASRec saved
    as ``recsae train`` saves one, with its data record."""
    csv, rows = tmp_path / "log.csv", _rows()
    _write(csv, rows)
    split = make_split(load_dataset(str(csv)), "leave-one-out")
    model = model_class("sasrec").build(model_config("sasrec", dim=8, max_len=6), split.n_users, split.n_items, split.train)
    source = {"dataset": str(csv), "data_root": None, "format": None, "min_rating": None, "k_core": None,
              "protocol": "leave-one-out", "seed": 0}
    save_checkpoint(tmp_path / "model", model, checkpoint_config(model, data_record(split, source), seed=0))
    return tmp_path / "model", csv, rows


def test_the_same_data_reloads(trained) -> None:
    checkpoint, _, _ = trained
    model, config = load_checkpoint(checkpoint)
    split = split_for_checkpoint(checkpoint, config)
    assert (split.n_users, split.n_items) == (model.n_users, model.n_items)


def test_same_size_data_with_one_interaction_changed_is_refused_naming_the_config_and_field(trained) -> None:
    checkpoint, csv, rows = trained
    user, old, t = rows[0]
    held = {i for u, i, _ in rows if u == user}
    new = next(f"i{i}" for i in range(1, 31) if f"i{i}" not in held)
    assert any(i == old for u, i, _ in rows if u != user)  # the old item stays in the catalogue
    _write(csv, [(user, new, t), *rows[1:]])
    changed = make_split(load_dataset(str(csv)), "leave-one-out")
    _, config = load_checkpoint(checkpoint)
    assert (changed.n_users, changed.n_items) == (config["model"]["n_users"], config["model"]["n_items"])
    with pytest.raises(DataError, match="other interactions") as err:
        split_for_checkpoint(checkpoint, config)
    assert err.value.path == str(checkpoint / "config.json")
    assert err.value.field == "data.split_fingerprint"


def test_a_checkpoint_without_a_recorded_fingerprint_reloads_with_a_warning(trained, caplog) -> None:
    checkpoint, _, _ = trained
    config = read_json(checkpoint / "config.json")
    del config["data"]["split_fingerprint"]  # as written before the fingerprint was recorded
    write_json(checkpoint / "config.json", config)
    with caplog.at_level(logging.WARNING, logger="recsae"):
        split = split_for_checkpoint(checkpoint, config)
    assert split.n_users == config["model"]["n_users"]
    assert "records no split fingerprint" in caplog.text
