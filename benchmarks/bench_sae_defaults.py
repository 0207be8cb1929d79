"""Which SAE recipe should ``recsae run`` use? Fidelity and causal faithfulness, per recipe.

For a finished ``recsae run`` folder (its model and activation store), each variant trains an
SAE on the store's training rows and reports, side by side:

- fidelity (docs/method.md §3): validation FVU, dead latents over every harvested row, spliced
  NDCG@10 retention and top-10 overlap with the original model on the test users;
- with ``--interpret``: the share of alive latents that pass the rule test and the share that
  is *causally faithful* (§7), for the trained SAE and for the untrained SAE of the same shape
  (the control that a random decomposition must fail), from the same code and rows.

The issue's fidelity bar: validation FVU <= 0.025, NDCG@10 retention >= 0.99, top-10 overlap
>= 0.88, dead <= 5 %. Results are merged into the output JSON after every variant, so a killed
sweep keeps what it finished.

    .venv/bin/python benchmarks/bench_sae_defaults.py --run runs/ml1m [--variants a,b] [--interpret]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsae.interpret import InterpretConfig, interpret
from recsae.interpret.from_run import run_inputs
from recsae.interpret.probing import ProbeConfig
from recsae.io import read_json, write_json
from recsae.models.checkpoint import load_checkpoint, split_for_checkpoint
from recsae.probe.harvest import harvest
from recsae.probe.store import ActivationStore
from recsae.rundir import RunDir
from recsae.sae.config import RUN_EPOCHS, RUN_MIN_ROWS, SaeConfig, SaeTrainConfig
from recsae.sae.metrics import evaluate_sae
from recsae.sae.model import untrained_baseline
from recsae.sae.train import train_sae
from recsae.splice import evaluate_splice
from recsae.utils import environment_info, setup_logging

RESULT = Path(__file__).parent / "results" / "bench_sae_defaults.json"

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name -> (SaeConfig overrides, SaeTrainConfig overrides) on k 32, 2,048 latents, 16 passes, lr 1e-2
    "balanced": ({}, {"balance_rate": 0.03}),
    "plain_auxrelu": ({"aux_relu": True}, {}),
    "plain_auxraw": ({"aux_relu": False}, {}),
    "annealed_auxraw": ({"aux_relu": False}, {"balance_rate": 0.03, "balance_until": 0.5}),
    "auxraw_lr3e-3": ({"aux_relu": False}, {"lr": 3e-3}),
    "auxraw_kl": ({"aux_relu": False}, {"kl_weight": 1.0}),
    "auxraw_w1024": ({"aux_relu": False, "expansion": 16}, {}),
    "auxraw_k16": ({"aux_relu": False, "k": 16}, {}),
}
BAR = {"valid_fvu": 0.025, "retention": 0.99, "top10_overlap": 0.88, "dead_fraction": 0.05}


def fidelity(model: Any, sae: Any, store: ActivationStore, split: Any, train_mean: torch.Tensor) -> dict[str, Any]:
    splice = evaluate_splice(model, sae, split, "test", mean=train_mean, seed=0)
    c = splice.conditions
    return {
        "retention": c["spliced"].retention,
        "top10_overlap": c["spliced"].top10_overlap,
        "kl": c["spliced"].kl,
        "random_sae_top10_overlap": c["random_sae"].top10_overlap,
        "dead_fraction": evaluate_sae(sae, store.load()).dead_fraction,
    }


def interpretation(model: Any, sae: Any, store: ActivationStore, split: Any, seed: int,
                   random_done: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rule test, causal faithfulness and 1-unit probing of the SAE and (unless an earlier
    variant of the same shape measured it: ``random_done``) of the untrained SAE of its shape."""
    inputs = run_inputs(model, sae, store, split, seed=seed)
    inputs.pop("neuron_acts")  # the neurons do not depend on the SAE recipe
    if random_done is not None:
        for key in ("random_acts", "random_decoder", "random_decoder_bias"):
            inputs.pop(key)
    t0 = time.perf_counter()
    res = interpret(**inputs, cfg=InterpretConfig(seed=seed, probe=ProbeConfig(ks=(1,))))
    s = res.summary
    out: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 1)}
    for family, summ in (("sae", s), ("random_sae", s.get("random_sae", {}))):
        out[family] = {
            "share_interpretable": summ.get("share_interpretable"),
            "faithful": s.get("faithful", {}).get(family),
            "explained_by_interpretable": s["explained_by_interpretable"].get(family),
        }
    if random_done is not None:
        out["random_sae"] = random_done["random_sae"] | {"from_variant": random_done["name"]}
    out["shuffled_median_confidence"] = s["shuffled_control"].get("median_confidence")
    out["sparse_probing_k1"] = {f: v["by_k"][0]["mean_auc"] for f, v in s.get("sparse_probing", {}).items()
                                if isinstance(v, dict) and v.get("by_k")}
    if random_done is not None:
        out["sparse_probing_k1"]["random_sae"] = random_done["sparse_probing_k1"].get("random_sae")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished recsae run folder (model/ and activations/)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--interpret", action="store_true", help="also the rule test and causal faithfulness")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    setup_logging()
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variant(s) {unknown}")

    run = RunDir(args.run)
    model, config = load_checkpoint(run.model)
    split = split_for_checkpoint(run.model, config)
    store_dir = run.activations
    store = (ActivationStore.open(store_dir) if (store_dir / "meta.json").is_file()
             else harvest(model, split, store_dir, checkpoint=run.model))
    train_x, valid_x = store.load(store.rows("train")), store.load(store.rows("valid"))
    train_mean = torch.from_numpy(train_x.mean(0, dtype=np.float64).astype(np.float32))
    results = read_json(args.out) if args.out.is_file() else {}
    results.update(command=" ".join(sys.argv), run=str(args.run), bar=BAR, versions=environment_info())
    results.setdefault("variants", {})
    random_by_shape: dict[tuple[int, int], dict[str, Any]] = {  # the untrained SAE is measured once per shape
        (SaeConfig.from_dict(r["sae"]).m, r["sae"]["k"]): r["interpret"] | {"name": n}
        for n, r in results["variants"].items() if "interpret" in r and "from_variant" not in r["interpret"]["random_sae"]
    }
    for name in names:
        sae_over, train_over = VARIANTS[name]
        cfg = SaeConfig(d_in=store.d, **({"expansion": 32, "k": 32} | sae_over))
        tcfg = SaeTrainConfig(**({"epochs": RUN_EPOCHS, "min_rows": RUN_MIN_ROWS, "seed": args.seed} | train_over))
        t0 = time.perf_counter()
        trained = train_sae(train_x, cfg, tcfg, valid=valid_x,
                            item_emb=model.item_embeddings().detach().numpy() if tcfg.kl_weight else None)
        row: dict[str, Any] = {"sae": cfg.to_dict(), "train": tcfg.to_dict(),
                               "train_seconds": round(time.perf_counter() - t0, 1),
                               "valid_fvu": trained.metrics.fvu if trained.metrics else None}
        row |= fidelity(model, trained.sae, store, split, train_mean)
        row["meets_bar"] = bool(row["valid_fvu"] is not None and row["valid_fvu"] <= BAR["valid_fvu"]
                                and row["retention"] >= BAR["retention"]
                                and row["top10_overlap"] >= BAR["top10_overlap"]
                                and row["dead_fraction"] <= BAR["dead_fraction"])
        if args.interpret:
            shape = (cfg.m, cfg.k)
            row["interpret"] = interpretation(model, trained.sae, store, split, args.seed, random_by_shape.get(shape))
            random_by_shape.setdefault(shape, row["interpret"] | {"name": name})
        print(f"{name:<18} valid FVU {row['valid_fvu']:.4f}  retention {row['retention']:.3f}  "
              f"top-10 overlap {row['top10_overlap']:.3f}  dead {row['dead_fraction']:.3f}  "
              f"bar {'yes' if row['meets_bar'] else 'no'}", flush=True)
        if args.interpret:
            it = row["interpret"]
            for fam in ("sae", "random_sae"):
                f = it[fam]["faithful"] or {}
                print(f"{'':<18} {fam:<11} interpretable {it[fam]['share_interpretable']:.3f}  "
                      f"faithful {f.get('share', float('nan')):.3f} ({f.get('n')})", flush=True)
        results["variants"][name] = row
        write_json(args.out, results)
    untrained = untrained_baseline(SaeConfig(d_in=store.d), train_x, args.seed)
    results["untrained_dead_fraction"] = evaluate_sae(untrained, store.load()).dead_fraction
    write_json(args.out, results)


if __name__ == "__main__":
    main()
