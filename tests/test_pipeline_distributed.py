"""``recsae run`` under ``torchrun --nproc-per-node 2`` (gloo, CPU) against one process, from
the same checkpoint: the same activation store, the SAE within 1 % FVU with the same dead
counts, the same summary figures, and one writer of the run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsae.io import read_json

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                       reason="no gloo backend"),
]

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = """seed = 3
[data_kwargs]
n_users = 160
n_items = 120
n_concepts = 6
min_seq_len = 12
max_seq_len = 20
[model]
epochs = 3
[sae]
k = 8
expansion = 4
epochs = 2
min_rows = 0
controls = true
[interpret]
causal = false
"""


def _recsae(prefix: list[str], *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    done = subprocess.run([*prefix, "-m", "recsae", *args, "--threads", "1"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dist-run")
    (root / "tiny.toml").write_text(TINY)
    _recsae([sys.executable], "run", "--config", str(root / "tiny.toml"), "--out", str(root / "model"),
            "--stages", "model")
    # the same model for both: training with dropout under two ranks draws other masks
    args = ["run", "--config", str(root / "tiny.toml"), "--checkpoint", str(root / "model" / "model")]
    _recsae([sys.executable], *args, "--out", str(root / "one"))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _recsae(torchrun, *args, "--out", str(root / "two"))
    return root / "one", root / "two"


def test_two_ranks_harvest_the_run_s_store_bit_for_bit(runs: tuple[Path, Path]) -> None:
    one, two = (run / "activations" for run in runs)
    pd.testing.assert_frame_equal(pd.read_parquet(one / "index.parquet"), pd.read_parquet(two / "index.parquet"))
    load = lambda store: np.concatenate([np.load(p) for p in sorted(store.glob("shard-*.npy"))])  # noqa: E731
    assert np.array_equal(load(one), load(two))


def test_two_ranks_give_the_same_sae_and_summary_figures(runs: tuple[Path, Path]) -> None:
    one, two = (read_json(run / "summary.json") for run in runs)
    assert two["model"]["test"] == one["model"]["test"]
    assert two["sae"]["fvu"] == pytest.approx(one["sae"]["fvu"], rel=0.01)
    assert two["sae"]["dead_fraction"] == one["sae"]["dead_fraction"]
    assert two["sae"]["top10_overlap"] == pytest.approx(one["sae"]["top10_overlap"], abs=0.01)
    assert two["interpret"]["n_alive"] == one["interpret"]["n_alive"]
    assert two["interpret"]["share_interpretable"] == pytest.approx(one["interpret"]["share_interpretable"], abs=0.02)


def test_two_ranks_leave_one_complete_run_folder(runs: tuple[Path, Path]) -> None:
    one, two = runs
    entries = lambda run: sorted(str(p.relative_to(run)) for p in run.rglob("*") if "report" not in p.parts)  # noqa: E731
    assert entries(two) == entries(one)  # no rank part or temporary left behind
    assert (two / "report" / "index.html").is_file()
