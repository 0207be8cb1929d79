"""recsae.distributed, and the distributed stages against one process: a model training, a
full-ranking evaluation, a harvest, two SAE trainings and an interpretation
(``tests/distributed_job.py``) run alone and under ``torchrun --nproc-per-node 2`` (gloo, CPU);
a rank that dies or stops makes the other exit with one clear line, not hang."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsae.distributed import (
    World,
    _reason,
    all_gather,
    all_reduce,
    barrier,
    broadcast_,
    collective_timeout,
    env_world,
    init_world,
    once,
    rank_slice,
    single,
)
from recsae.errors import ConfigError
from recsae.probe.store import ActivationStore

JOB = Path(__file__).with_name("distributed_job.py")
SRC = Path(__file__).resolve().parents[1] / "src"
HANG_TIMEOUT_S = 5
"""RECSAE_DIST_TIMEOUT of the failure tests: how long the survivor waits for a rank that hangs."""

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()), reason="no gloo backend"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1", **extra)
    return env


# -- the world of one process ------------------------------------------------------------------


def test_without_torchrun_env_the_world_is_one_process_and_every_helper_is_a_no_op(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world = init_world("cpu")
    assert world == single("cpu") == World(0, 1, 0, torch.device("cpu"))
    assert world.is_main and not world.distributed and not torch.distributed.is_initialized()
    t = torch.arange(3.0)
    assert all_reduce(world, t) is t and all_gather(world, t) == [t]
    a = np.arange(3)
    assert all_reduce(world, a, "max") is a
    broadcast_(world, [t])
    barrier(world)
    assert once(world, lambda: 7, "seven") == 7
    assert rank_slice(5, world) == slice(0, 5)


def test_env_world_reads_torchrun_variables_and_rejects_malformed_ones() -> None:
    assert env_world({}) == (0, 1, 0)
    assert env_world({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    with pytest.raises(ConfigError, match="RANK='x'"):
        env_world({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="RANK=2, WORLD_SIZE=2"):
        env_world({"RANK": "2", "WORLD_SIZE": "2"})


def test_collective_timeout_comes_from_the_environment_and_must_be_positive() -> None:
    assert collective_timeout({}) > 0
    assert collective_timeout({"RECSAE_DIST_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigError, match="RECSAE_DIST_TIMEOUT"):
            collective_timeout({"RECSAE_DIST_TIMEOUT": bad})


@pytest.mark.parametrize("n", [0, 1, 7, 10])
def test_rank_slices_cover_the_items_in_rank_order_with_sizes_within_one(n: int) -> None:
    slices = [rank_slice(n, World(r, 3, r, torch.device("cpu"))) for r in range(3)]
    covered = [i for s in slices for i in range(n)[s]]
    sizes = [len(range(n)[s]) for s in slices]
    assert covered == list(range(n)) and max(sizes) - min(sizes) <= 1


def test_backend_errors_shorten_to_their_first_sentence() -> None:
    err = RuntimeError("[/src/gloo/pair.cc:553] Connection closed by peer [127.0.0.1]:4. This is typically caused...")
    assert _reason(err) == "Connection closed by peer [127.0.0.1]:4"


def test_the_sae_trainer_and_the_distributed_helpers_load_no_model_probe_or_eval_code() -> None:
    code = ("import sys, recsae.distributed, recsae.sae.train; "
            "print(sorted(m for m in sys.modules if m.startswith(('recsae.models', 'recsae.probe', 'recsae.eval'))))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- two ranks against one process --------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """OUT folders of the job run by one process and by torchrun with two."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    procs = [subprocess.Popen([*cmd, str(JOB), str(out)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for cmd, out in (([sys.executable], one), (torchrun, two))]
    for p in procs:
        log, _ = p.communicate(timeout=300)
        assert p.returncode == 0, log[-3000:]
    return one, two


@needs_gloo
def test_two_ranks_harvest_the_same_store_bit_for_bit_under_one_manifest(runs: tuple[Path, Path]) -> None:
    one, two = (ActivationStore.open(out / "activations") for out in runs)
    assert two.load().dtype == one.load().dtype and two.load().tobytes() == one.load().tobytes()
    assert two.index.equals(one.index)
    assert {k: v for k, v in two.meta.items() if k != "shards"} == {k: v for k, v in one.meta.items() if k != "shards"}
    # no rank's part is left beside the store
    assert not [p.name for p in runs[1].iterdir() if p.name.startswith(".")]


@needs_gloo
def test_two_ranks_end_with_the_same_weights_and_only_rank_0_writes_the_result(runs: tuple[Path, Path]) -> None:
    digests = [json.loads((runs[1] / f"weights-rank{r}.json").read_text()) for r in range(2)]
    assert digests[0] == digests[1] and set(digests[0]) == {"model", "plain", "balanced"}
    assert json.loads((runs[1] / "result.json").read_text())["world_size"] == 2


@needs_gloo
def test_two_ranks_evaluate_every_user_once_in_order_with_the_same_values(runs: tuple[Path, Path]) -> None:
    one, two = (json.loads((out / "result.json").read_text())["evaluation"] for out in runs)
    assert two["users"] == one["users"] and len(set(two["users"])) == len(two["users"])
    for name, values in one["per_user"].items():
        np.testing.assert_allclose(two["per_user"][name], values, rtol=1e-6, atol=1e-9)
    assert two["metrics"] == pytest.approx(one["metrics"], rel=1e-6)


@needs_gloo
def test_two_ranks_train_the_model_along_the_single_process_losses(runs: tuple[Path, Path]) -> None:
    one, two = (json.loads((out / "result.json").read_text())["model"] for out in runs)
    # each rank's loss is a mean over its positions, weighted by its rows: close to, not
    # exactly, the batch's mean over all positions
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-3)
    assert two["test"]["ndcg@10"] == pytest.approx(one["test"]["ndcg@10"], abs=0.01)


@needs_gloo
@pytest.mark.parametrize("name", ["plain", "balanced"])
def test_two_ranks_train_the_sae_to_fvu_within_1pct_with_the_same_dead_counts(runs: tuple[Path, Path],
                                                                              name: str) -> None:
    one, two = (json.loads((out / "result.json").read_text())[name] for out in runs)
    assert len(two["history"]) == len(one["history"])
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["rows"] == a["rows"]  # the same steps over the same global batches
        for key in ("fvu", "valid_fvu", "auxk", "kl"):
            assert b[key] == pytest.approx(a[key], rel=0.01, abs=1e-9), key
    assert two["valid"]["fvu"] == pytest.approx(one["valid"]["fvu"], rel=0.01)
    assert two["dead_latents"] == one["dead_latents"] and two["silent_latents"] == one["silent_latents"]
    if name == "plain":  # the counts compared are not trivially zero
        assert one["dead_latents"] > 0


@needs_gloo
def test_two_ranks_count_the_interpretation_exactly_as_one_process(runs: tuple[Path, Path]) -> None:
    one, two = (out / "interpret" for out in runs)
    for name in ("interpretation", "neurons", "random_sae", "random_model_sae"):
        a, b = (pd.read_parquet(folder / f"{name}.parquet") for folder in (one, two))
        pd.testing.assert_frame_equal(b, a, check_exact=True)
        # the counts compared are not trivially empty
        assert (a["val_support"] > 0).any() and (a["fit_support"] > 0).any() and (a["rule"] != "").any(), name
    summaries = [{k: v for k, v in json.loads((f / "interpret.json").read_text()).items() if k != "versions"}
                 for f in (one, two)]
    assert summaries[1] == summaries[0]


# -- a rank that dies or hangs -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_gloo
@pytest.mark.parametrize("fail", ["die", "hang"])
def test_when_a_rank_dies_or_hangs_mid_training_the_other_exits_with_one_clear_line(tmp_path: Path,
                                                                                    fail: str) -> None:
    # the two ranks started as torchrun starts them, without its agent (which would kill the
    # survivor itself), to see what the survivor does on its own
    port = str(_free_port())
    procs = [
        subprocess.Popen([sys.executable, str(JOB), str(tmp_path), "--fail", fail],
                         env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                  MASTER_PORT=port, RECSAE_DIST_TIMEOUT=str(HANG_TIMEOUT_S)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in range(2)
    ]
    try:
        _, err = procs[0].communicate(timeout=120)  # it must not hang
    finally:
        procs[1].kill()
        procs[1].communicate()
    assert procs[0].returncode == 2
    assert err.strip().splitlines()[-1].startswith("error: rank 0 of 2: SAE stop decision failed (")
    assert "another rank died or stopped taking part" in err and "Traceback" not in err
