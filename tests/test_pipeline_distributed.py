"""``recsae run`` under ``torchrun --nproc-per-node 2`` (gloo, CPU) against one process, from
the same checkpoint: the same activation store, the SAE within 1 % FVU with the same dead
counts, the same summary figures, and one writer of the run folder; a 2-rank run killed after an
SAE checkpoint resumes from it and ends as the uninterrupted 2-rank run."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
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
epochs = 12
min_rows = 0
controls = true
[interpret]
causal = false
"""


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    return env


def _recsae(prefix: list[str], *args: str) -> str:
    """Run the CLI to completion; its stderr."""
    done = subprocess.run([*prefix, "-m", "recsae", *args, "--threads", "1"], capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _run_args(root: Path) -> list[str]:
    # the same model for every run: training with dropout under two ranks draws other masks
    return ["run", "--config", str(root / "tiny.toml"), "--checkpoint", str(root / "model" / "model")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dist-run")
    (root / "tiny.toml").write_text(TINY)
    _recsae([sys.executable], "run", "--config", str(root / "tiny.toml"), "--out", str(root / "model"),
            "--stages", "model")
    _recsae([sys.executable], *_run_args(root), "--out", str(root / "one"))
    _recsae(TORCHRUN, *_run_args(root), "--out", str(root / "two"))
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_two_rank_run_killed_after_an_sae_checkpoint_resumes_from_it(runs: tuple[Path, Path]) -> None:
    two = runs[1]
    out = two.parent / "killed"
    args = [*_run_args(two.parent), "--out", str(out), "--threads", "1"]
    checkpoint = out / "sae" / "train_state" / "state.json"  # written last: a complete checkpoint
    # the two ranks started as torchrun starts them, without its agent, so that each is killed by its id
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "recsae", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=_env() | {"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
             for r in range(2)]
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.is_file() and procs[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert checkpoint.is_file(), "no SAE checkpoint was written"
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert not (out / "splice.json").exists(), "the SAE stage had ended before the kill"
    stderr = _recsae(TORCHRUN, *args[:-2])
    resumed = re.search(r"sae: resuming at epoch (\d+)", stderr)
    assert resumed and int(resumed[1]) >= 2, stderr[-3000:]
    # the resumed training ends where the uninterrupted one did, and so does everything after it
    assert (out / "sae" / "sae.safetensors").read_bytes() == (two / "sae" / "sae.safetensors").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "interpretation.parquet"),
                                  pd.read_parquet(two / "interpretation.parquet"), check_exact=True)
