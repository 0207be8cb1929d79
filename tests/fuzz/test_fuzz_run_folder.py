"""Damaged run-folder files (truncated, bytes flipped, replaced, deleted, JSON values swapped):
every reader gives its object or a RecsaeError, never any other exception."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fuzzing import CASES, fuzz, scratch
from hypothesis import event, given
from hypothesis import strategies as st

from recsae.errors import RecsaeError

JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=5)


def _tiny_checkpoint(folder: Path) -> None:
    from recsae.data.dataset import InteractionDataset, ItemMeta
    from recsae.data.split import make_split
    from recsae.models.checkpoint import checkpoint_config, data_record, save_checkpoint
    from recsae.models.registry import model_class, model_config

    user = np.repeat(np.arange(1, 5), 5)
    ds = InteractionDataset(name="tiny", user=user, item=np.tile(np.arange(1, 6), 4), time=np.arange(20.0),
                            user_ids=np.array(["", "a", "b", "c", "d"]), item_ids=np.array(["", *"vwxyz"]),
                            item_meta=ItemMeta(title=[""] * 6))
    split = make_split(ds)
    cfg = model_config("sasrec", dim=8, max_len=5, n_blocks=1)
    model = model_class("sasrec").build(cfg, split.n_users, split.n_items, split.train)
    save_checkpoint(folder, model, checkpoint_config(model, data_record(split), 0))


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One intact artefact of every kind a run folder holds."""
    from recsae.io import write_json, write_parquet
    from recsae.probe.store import StoreWriter
    from recsae.sae.config import SaeConfig
    from recsae.sae.model import TopKSAE

    root = tmp_path_factory.mktemp("artefacts")
    write_json(root / "json" / "summary.json", {"seed": 1, "model": {"test": {"ndcg@10": 0.5}}, "x": [1, None]})
    TopKSAE(SaeConfig(d_in=4, expansion=2, k=2)).save(root / "sae")
    with StoreWriter(root / "store", 4, {"model": "tiny"}) as writer:
        n = 6
        writer.append(np.ones((n, 4)), np.arange(n), np.zeros(n), np.zeros(n), np.arange(n), np.zeros(n))
        writer.finish()
    (root / "run").mkdir()
    write_parquet(root / "run" / "interpretation.parquet",
                  pd.DataFrame({"latent": np.arange(3), "rule": ["a", "b", "c"], "confidence": [0.1, 0.5, 0.9]}))
    _tiny_checkpoint(root / "model")
    return {p.name: p for p in root.iterdir()}


def _readers() -> dict[str, Callable[[Path], Any]]:
    from recsae.interpret.api import read_interpretation
    from recsae.io import read_json
    from recsae.models.checkpoint import load_checkpoint
    from recsae.probe.store import ActivationStore
    from recsae.sae.model import TopKSAE

    return {
        "json": lambda p: read_json(p / "summary.json"),
        "sae": TopKSAE.load,
        "store": lambda p: ActivationStore.open(p).load(),
        "run": read_interpretation,
        "model": load_checkpoint,
    }


@dataclass(frozen=True)
class Damage:
    """A change to one file of a folder."""

    name: str
    how: str
    at: int
    byte: int
    junk: bytes
    value: Any
    spot: int

    def apply(self, folder: Path) -> str:
        path = folder / self.name
        data = path.read_bytes()
        if self.how.startswith("json") and path.suffix == ".json":
            doc = json.loads(data)
            spots = [(doc, k) for k in doc] + [(v, k) for v in doc.values() if isinstance(v, dict) for k in v]
            container, key = spots[self.spot % len(spots)]
            if self.how == "json key":
                del container[key]
            else:
                container[key] = self.value
            path.write_text(json.dumps(doc))
        elif self.how == "truncate":
            path.write_bytes(data[: self.at % (len(data) + 1)])
        elif self.how == "flip" and data:
            i = self.at % len(data)
            path.write_bytes(data[:i] + bytes([data[i] ^ (self.byte or 1)]) + data[i + 1:])
        elif self.how == "replace":
            path.write_bytes(self.junk)
        elif self.how == "delete":
            path.unlink()
        else:
            path.write_bytes(data + self.junk)
        return f"{self.how} {self.name}"


def damage(files: list[str]) -> st.SearchStrategy[Damage]:
    return st.builds(Damage, st.sampled_from(files),
                     st.sampled_from(["truncate", "flip", "replace", "delete", "append", "json value", "json key"]),
                     st.integers(0, 10**6), st.integers(0, 255), st.binary(max_size=40), JSON, st.integers(0, 100))


@pytest.mark.parametrize("kind", ["json", "sae", "store", "run", "model"])
def test_a_damaged_run_folder_file_is_read_or_refused(artefacts: dict[str, Path], kind: str) -> None:
    intact = artefacts[kind]
    files = sorted(str(p.relative_to(intact)) for p in intact.rglob("*") if p.is_file())
    read = _readers()[kind]
    read(intact)  # the intact artefact reads

    @fuzz(80)
    @given(change=damage(files))
    def check(change: Damage) -> None:
        CASES[f"run folder: {kind}"] += 1
        with scratch() as root:
            folder = root / kind
            shutil.copytree(intact, folder)
            event(change.apply(folder))
            try:
                read(folder)
            except RecsaeError:
                event("refused")

    check()
