"""A small harvest + SAE training, run alone or under ``torchrun`` by ``tests/test_distributed.py``.

    python tests/distributed_job.py OUT [--fail die|hang]

Synthetic data; a SASRec trained for a few epochs (OUT/model) and, apart, the full-ranking
evaluation of an untrained one; from the untrained one (its weights fixed by the seed, so that
both runs harvest the same model) the activation store in OUT/activations, one plain SAE (with
dead latents, so that their counts are compared) and one with load balancing and the
prediction-aware loss in OUT/sae-*. Then the interpretation of an untrained SAE on the store
(with the neurons, another untrained SAE and the untrained-model control read through the same
model: weights fixed by the seed, so that both runs interpret the same codes): every rank computes
its share of the inputs and counts, all leave the process group, and rank 0 writes the rest to
OUT/interpret. Rank 0 writes OUT/result.json, every rank the digest of its weights to
OUT/weights-rank<R>.json. ``--fail``: after the first SAE epoch, the last rank exits
at once (``die``) or stops taking part (``hang``). A recsae error prints one line and exits 2,
as the CLI does.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from recsae.data.registry import load_dataset
from recsae.data.split import make_split
from recsae.distributed import World, init_world, leave_together, shutdown
from recsae.errors import RecsaeError
from recsae.interpret.api import count_interpretation, interpret, write_interpretation
from recsae.interpret.from_run import run_inputs
from recsae.io import write_json
from recsae.models.registry import model_class, model_config
from recsae.models.trainer import TrainConfig, evaluate_model, train_model
from recsae.probe.harvest import harvest
from recsae.probe.store import ActivationStore
from recsae.sae.config import SaeConfig, SaeTrainConfig
from recsae.sae.model import TopKSAE, untrained_baseline
from recsae.sae.train import train_sae

SAES = {
    "plain": SaeTrainConfig(lr=3e-3, warmup_rows=500, batch_size=250, epochs=4, b_dec_init_rows=1000),
    "balanced": SaeTrainConfig(lr=3e-3, warmup_rows=500, batch_size=250, epochs=2, b_dec_init_rows=1000,
                               balance_rate=0.01, balance_until=0.5, kl_weight=0.5),
}


def main(out: Path, fail: str | None) -> dict[str, Any]:
    world = init_world("cpu")
    try:
        return _job(out, fail, world)
    finally:
        shutdown(world)


def _job(out: Path, fail: str | None, world: World) -> dict[str, Any]:
    ds = load_dataset("synthetic", seed=0, n_users=150, n_items=120, min_seq_len=15, max_seq_len=30)
    split = make_split(ds, "leave-one-out", seed=0)
    # no dropout: the ranks draw no random numbers, so the steps match one process's closely
    model_cfg = model_config("sasrec", dim=16, max_len=20, dropout=0.0)
    result: dict[str, Any] = {"world_size": world.world_size}
    weights: dict[str, dict[str, torch.Tensor]] = {}
    torch.manual_seed(0)
    model = model_class("sasrec").build(model_cfg, split.n_users, split.n_items, split.train)
    if fail is None:  # (the failure tests fail in the SAE's training)
        trained_model = train_model("sasrec", split, model_cfg, out / "model", seed=0, world=world,
                                    train_cfg=TrainConfig(epochs=3, batch_size=32, eval_batch_size=40))
        ranked = evaluate_model(model, split, "test", batch_size=16, world=world)
        result["model"] = {"valid": trained_model.valid, "test": trained_model.test,
                           "loss": [h.loss for h in trained_model.history]}
        result["evaluation"] = {"users": ranked.users.tolist(), "metrics": ranked.metrics,
                                "per_user": {k: v.tolist() for k, v in ranked.per_user.items()}}
        weights["model"] = trained_model.model.state_dict()
    store = harvest(model, split, out / "activations", batch_size=16, shard_rows=700, world=world)
    train_rows = store.load(store.rows("train"))
    valid_rows = store.load(store.rows("valid"))

    def fail_after_first_epoch(_sae: TopKSAE, rec: dict[str, Any]) -> None:
        if fail is not None and rec["epoch"] == 1 and world.rank == world.world_size - 1:
            if fail == "die":
                os._exit(1)
            time.sleep(600)

    for name, train_cfg in SAES.items():
        cfg = SaeConfig(d_in=16, n_latents=256, k=4, dead_window=1500)
        trained = train_sae(train_rows, cfg, train_cfg, valid=valid_rows, out_dir=out / f"sae-{name}", world=world,
                            callback=fail_after_first_epoch, item_emb=model.item_embeddings().detach().numpy())
        assert trained.metrics is not None
        result[name] = {"history": trained.history, "valid": trained.metrics.to_dict(),
                        "dead_latents": round(trained.history[-1]["dead_fraction"] * cfg.m),
                        "silent_latents": round(trained.metrics.dead_fraction * cfg.m)}
        weights[name] = trained.sae.state_dict()
    write_json(out / f"weights-rank{world.rank}.json", {k: _digest(v) for k, v in weights.items()})
    if world.is_main:
        write_json(out / "result.json", result)
    _interpret(model, split, store, out / "interpret", world)
    return result


def _interpret(model: Any, split: Any, store: ActivationStore, out: Path, world: World) -> None:
    """Every rank counts its share of the interpretation; after all left the process group,
    rank 0 writes the table, the summary and the baselines' tables to ``out``."""
    x = store.view(store.rows("train"))
    cfg = SaeConfig(d_in=16, n_latents=256, k=4)
    sae, other, control = (untrained_baseline(cfg, x, seed) for seed in (0, 1, 2))
    inputs = run_inputs(model, sae, store, split, seed=0, random_sae=other, random_model=(model, store, control),
                        causal=False, world=world)
    keys = ("ctx", "item_meta", "item_counts", "sae_acts", "neuron_acts", "random_acts", "random_model")
    counted = count_interpretation(**{k: inputs[k] for k in keys}, world=world)
    leave_together(world, "the end of the interpretation counts")
    if world.is_main:
        result = interpret(**inputs, counted=counted)
        write_interpretation(result, out)
        for name, table in result.baselines.items():
            table.to_parquet(out / f"{name}.parquet")


def _digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode() + state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--fail", choices=("die", "hang"))
    args = parser.parse_args()
    try:
        main(args.out, args.fail)
    except RecsaeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
