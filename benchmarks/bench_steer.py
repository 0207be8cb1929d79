"""Intervention acceptance (issue 6): ablation vs random latents, steering curve, debiasing.

With ``--run DIR`` (a ``recsae run`` folder: model/, sae/, interpretation.parquet) the steer stage
runs on that model. Without it, a small pipeline is built here first: SASRec trained on
``--dataset`` (default: the built-in synthetic data), every history position harvested, a TopK
SAE trained on them, the rows' top-10 recommendations computed, and the latents interpreted.

Acceptance figures printed and written to ``benchmarks/results/bench_steer.json``:

- ablation: Wilcoxon signed-rank statistic and p-value of "ablating a latent lowers its own
  concept's top-10 share more than ablating a random active latent of the same users";
- steering: the concept's top-10 share ratio at the strongest α whose NDCG@10 stays within 5 %
  of the unedited model (target ≥ 3×; the peer, arXiv 2601.11182, reports ×2.3 segment nDCG at
  unchanged personal nDCG on ML-25M), with the whole α curve and its random control;
- debiasing: coverage, Gini and long-tail share with the popularity latents damped;
- with ``--sweep ATTRIBUTE`` (e.g. genre): the same steering operating point for every value of
  that item attribute, through the decoder-selected latents and through the rule-named ones.

    .venv/bin/python benchmarks/bench_steer.py [--run DIR] [--dataset synthetic] [--concept C]
    .venv/bin/python benchmarks/bench_steer.py --keep DIR ...  # build, keep DIR as a run folder
    .venv/bin/python benchmarks/bench_steer.py --run DIR --sweep genre
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import default_data_root
from recsae.data.dataset import SplitData, item_popularity
from recsae.interpret.from_run import sparse_codes, top_recommendations
from recsae.io import write_json
from recsae.steer import ConceptItems, SteerConfig, concept_items, run_steer, steer_summary
from recsae.utils import environment_info, seed_everything

RESULT = Path(__file__).parent / "results" / "bench_steer.json"
PEER_SHARE_RATIO = 2.3


def build_run(dataset: str, work: Path, args: argparse.Namespace) -> tuple[Any, Any, SplitData, Any, ConceptItems, dict[str, Any]]:
    """Train SASRec, harvest, train the SAE and interpret it (a miniature ``recsae run``)."""
    from recsae.data.registry import load_dataset
    from recsae.data.split import leave_one_out
    from recsae.interpret import InterpretConfig, RowContext, interpret
    from recsae.models.registry import model_config
    from recsae.models.trainer import TrainConfig, train_model
    from recsae.probe import harvest
    from recsae.sae.config import SaeConfig, SaeTrainConfig
    from recsae.sae.train import train_sae

    info: dict[str, Any] = {}
    t = time.perf_counter()
    ds = load_dataset(dataset, data_root=default_data_root(), min_rating=args.min_rating, k_core=args.k_core)
    split = leave_one_out(ds)
    source = {"dataset": dataset, "data_root": None, "format": None, "min_rating": args.min_rating,
              "k_core": args.k_core, "protocol": "leave-one-out", "seed": args.seed}  # fmt: skip
    if args.checkpoint is not None:
        from recsae.io import read_json, write_json
        from recsae.models.checkpoint import load_checkpoint
        from recsae.models.trainer import evaluate_model

        shutil.copytree(args.checkpoint, work / "model", dirs_exist_ok=True)
        config = read_json(work / "model" / "config.json")
        config.setdefault("data", {})["source"] = source
        write_json(work / "model" / "config.json", config)
        model, _ = load_checkpoint(work / "model")
        test = evaluate_model(model, split, "test").metrics
        info["model"] = {"checkpoint": str(args.checkpoint), "test": test}
    else:
        cfg = model_config("sasrec", max_len=args.max_len)
        res = train_model("sasrec", split, cfg, work / "model", args.seed, "cpu",
                          TrainConfig(epochs=args.epochs, patience=args.epochs, lr=args.lr), data_source=source)  # fmt: skip
        model, test = res.model, res.test
        info["model"] = {"test": res.test, "epochs": res.epochs, "seconds": time.perf_counter() - t}
    print(f"SASRec on {dataset}: test NDCG@10 {test['ndcg@10']:.4f}")

    t = time.perf_counter()
    store = harvest(model, split, work / "acts")
    x = store.load().astype(np.float32)
    index = store.index
    users, positions = index["user"].to_numpy(), index["position"].to_numpy()
    if args.max_rows and len(x) > args.max_rows:
        keep = np.sort(np.random.default_rng(args.seed).choice(len(x), args.max_rows, replace=False))
        x, users, positions = x[keep], users[keep], positions[keep]
    d = x.shape[1]
    sae_cfg = SaeConfig(d_in=d, n_latents=args.latents, k=args.k)
    sres = train_sae(x, sae_cfg, SaeTrainConfig(epochs=args.sae_epochs, seed=args.seed, warmup_rows=min(100_000, len(x))))
    sae = sres.sae.eval()
    sae.save(work / "sae")
    info["sae"] = {"rows": len(x), "history": sres.history[-1], "seconds": time.perf_counter() - t}
    print(f"SAE: {len(x)} rows, {args.latents} latents, k={args.k}, last epoch {sres.history[-1]}")

    t = time.perf_counter()
    hist = split.history("test")
    recs = top_recommendations(model, x, users, positions, hist)
    acts = sparse_codes(sae, x)
    counts = item_popularity(split.train.values, split.n_items)
    ires = interpret(
        RowContext(users, positions, hist, recs), ds.item_meta, counts, acts,
        sae_decoder=sae.W_dec.detach().numpy(), item_emb=model.item_embeddings().detach().numpy(),
        cfg=InterpretConfig(),
    )  # fmt: skip
    table = ires.table
    table.to_parquet(work / "interpretation.parquet")
    info["interpret"] = {k: ires.summary.get(k) for k in ("n_alive", "n_interpretable", "share_interpretable")}
    info["interpret"]["seconds"] = time.perf_counter() - t
    print(f"interpretation: {info['interpret']}")
    return model, sae, split, table, concept_items(split), info


def attribute_sweep(
    model: Any, sae: Any, split: SplitData, table: Any, items: ConceptItems, cfg: SteerConfig, args: argparse.Namespace
) -> dict[str, Any]:
    """The steering operating point (largest share within the NDCG tolerance, both methods) for
    every value of one item attribute, through each latent source."""
    from dataclasses import replace

    from recsae.errors import ConfigError
    from recsae.steer.study import make_context, selection_context, steer_concept, steering_targets

    meta = split.dataset.item_meta
    values = meta.multi.get(args.sweep) or meta.multi.get(f"{args.sweep}s")
    if values is None and args.sweep in meta.categorical:
        values = [(v,) for v in meta.categorical[args.sweep]]
    if values is None:
        raise SystemExit(f"--sweep {args.sweep}: no such item attribute (have {items.attributes()})")
    names = sorted({v for vs in values for v in vs if v})
    cfg = replace(cfg, max_users=args.sweep_users, n_random=1)
    ctx = make_context(model, sae, split, cfg)
    select = selection_context(ctx, cfg)
    rows = []
    print(f"\nsweep over {args.sweep} ({len(names)} values, {len(ctx.users)} users): share ratio on the {ctx.which} "
          f"items at the strongest α whose NDCG@10 stays within {100 * cfg.ndcg_tolerance:g} % on the "
          f"{select.which} items ('!': not within it on the {ctx.which} items)")
    for name in names:
        concept = f"{args.sweep}={name}"  # ConceptItems resolves 'genre=' and 'genres=' alike
        if not items.resolvable(concept):
            continue
        row: dict[str, Any] = {"concept": concept, "n_items": int(items.mask(concept).sum())}
        for source in args.sweep_sources.split(","):
            try:
                latents = steering_targets(select, table, items, concept, replace(cfg, latent_source=source))
            except ConfigError:
                row[source] = None
                continue
            chosen = steer_concept(select, concept, latents, items, cfg, report_ctx=ctx)["chosen"]
            row["share_before"] = chosen["share_before"]
            row[source] = {
                "share_ratio": chosen["share_ratio"], "ndcg_ratio": chosen["ndcg_ratio"],
                "ndcg_ratio_ci": chosen.get("ndcg_ratio_ci"), "method": chosen["method"],
                "alpha": chosen["strength"], "share_random": chosen["share_random"], "n_latents": len(latents),
                "within_tolerance": chosen["within_tolerance"],
            }  # fmt: skip
        rows.append(row)

        def fmt(r: dict[str, Any] | None) -> str:
            if r is None:
                return "-"
            flag = "" if r["within_tolerance"] else "!"
            ci = r.get("ndcg_ratio_ci") or [math.nan, math.nan]
            return (f"x{r['share_ratio']:.2f}{flag} ({r['method']} {r['alpha']:.3g}, NDCG {r['ndcg_ratio']:.3f} "
                    f"[{ci[0]:.3f}, {ci[1]:.3f}])")

        print(f"  {concept:<24} base {row.get('share_before') or 0:.3f}  decoder {fmt(row['decoder']):<52} rules {fmt(row.get('rules'))}")
    reach = [r["concept"] for r in rows
             if r["decoder"] and r["decoder"]["share_ratio"] >= 3.0 and r["decoder"]["within_tolerance"]]
    print(f"  x3 within tolerance (decoder latents): {', '.join(reach) or 'none'}")
    return {"attribute": args.sweep, "n_users": len(ctx.users), "rows": rows, "reach_3x_decoder": reach}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None, help="a recsae run folder (else a small one is built)")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--concept", action="append", default=None, help="concept(s) to steer toward [default: automatic]")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a trained SASRec checkpoint on --dataset (skips training)")
    ap.add_argument("--keep", type=Path, default=None, help="build the run folder here (reuse it later with --run)")
    ap.add_argument("--min-rating", type=float, default=None)
    ap.add_argument("--k-core", type=int, default=None)
    ap.add_argument("--max-rows", type=int, default=0, help="cap on harvested rows for the SAE (0 = all)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--latents", type=int, default=1024)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--sae-epochs", type=int, default=5)
    ap.add_argument("--max-users", type=int, default=2000)
    ap.add_argument("--n-ablation", type=int, default=20)
    ap.add_argument("--latents-per-concept", type=int, default=16)
    ap.add_argument("--n-concepts", type=int, default=1, help="concepts chosen automatically")
    ap.add_argument("--sweep", default=None, help="also steer toward every value of this item attribute (e.g. genre)")
    ap.add_argument("--sweep-users", type=int, default=1000, help="users measured in the sweep")
    ap.add_argument("--sweep-sources", default="decoder,rules", help="latent sources steered through in the sweep")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULT, help="where the JSON figures go")
    args = ap.parse_args()
    seed_everything(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if args.run is not None:
        from recsae.runs import Run

        inputs = Run.open(args.run, device="cpu")
        if not inputs.has("interpret"):
            raise SystemExit(f"{args.run} has no interpretation.parquet")
        model, sae, split, table, items = inputs.model, inputs.sae, inputs.split, inputs.interpretation, inputs.items
        source = str(args.run)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.keep or Path(tmp)
            model, sae, split, table, items, info = build_run(args.dataset, work, args)
            source = f"built here: SASRec ({args.checkpoint or 'trained here'}) + SAE on {args.dataset}"
    build_s = time.perf_counter() - t0

    cfg = SteerConfig(
        max_users=args.max_users, n_ablation=args.n_ablation, concepts=tuple(args.concept or ()), seed=args.seed,
        latents_per_concept=args.latents_per_concept, n_auto_concepts=args.n_concepts,
    )  # fmt: skip
    t = time.perf_counter()
    result = run_steer(model, sae, split, table, items, cfg)
    steer_s = time.perf_counter() - t
    summary = steer_summary(result)
    ab = result.ablation
    print(f"\nablation study ({ab['n_latents']} latents): mean drop of own-concept top-10 share "
          f"{ab['mean_drop']:.4f} vs random {ab['mean_drop_random']:.4f}; Wilcoxon W={ab['statistic']}, "
          f"p={ab['p_value']:.3g}; latent beats random in {100 * ab['share_larger']:.0f} %")
    for r in ab["rows"][:10]:
        print(f"  latent {r['latent']:>5} {r['concept'][:40]:<40} n={r['n_users']:>5} "
              f"share {r['share_before']:.3f} -> {r['share_after']:.3f} (random {r['share_random']:.3f})")
    accept: dict[str, Any] = {}
    for c in result.concepts:
        print(f"\nsteering toward {c['concept']} (latents {c['latents']}, {c['n_items']} items; "
              f"curves on the {c.get('curves_on', 'test')} items)")
        for method, curve in c["curves"].items():
            print(f"  {method}: alpha  share  random  ndcg@10  random  ratio")
            for r in curve:
                print(f"    {r['strength']:>6.3f} {r['share']:.4f} {r['share_random']:.4f} {r['ndcg']:.4f} "
                      f"{r['ndcg_random']:.4f} x{r['share_ratio']:.2f}")
        s = summary[c["concept"]]
        ratio = s["share_ratio"]
        accept[c["concept"]] = {
            "share_ratio": ratio,
            "ndcg_change": s["ndcg_after"] / s["ndcg_before"] - 1 if s["ndcg_before"] else None,
            "method": s["method"],
            "alpha": s["alpha"],
            "passes": bool(s["within_tolerance"] and ratio >= 3.0),
            "peer_share_ratio": PEER_SHARE_RATIO,
        }
        print(f"  chosen on the {s['chosen_on']} items, measured on the test items: {s['method']} alpha={s['alpha']}: share {s['share_before']:.4f} -> {s['share_after']:.4f} "
              f"(x{ratio:.2f}; random {s['random_control_share_after']:.4f}), NDCG@10 {s['ndcg_before']:.4f} -> "
              f"{s['ndcg_after']:.4f}; peer x{PEER_SHARE_RATIO}")
    db = result.debias
    print(f"\ndebias (latents {db['latents']}): before {db['before']}")
    for r in db["table"]:
        print(f"  scale {r['scale']}: coverage {r['coverage']:.4f} (random {r['coverage_random']:.4f}), gini "
              f"{r['gini']:.4f} ({r['gini_random']:.4f}), long tail {r['long_tail_share']:.4f} "
              f"({r['long_tail_share_random']:.4f}), ndcg {r['ndcg']:.4f} ({r['ndcg_random']:.4f})")
    print(f"\nsteer stage: {steer_s:.1f} s on {result.n_users} users (setup {build_s:.1f} s)")
    sweep = attribute_sweep(model, sae, split, table, items, cfg, args) if args.sweep else None
    write_json(
        args.out,
        {
            "benchmark": "steer",
            "command": " ".join(sys.argv),
            "source": source,
            "targets": "ablation beats random latents (paired Wilcoxon); steering raises the concept's top-10 "
            "share >= 3x with NDCG@10 within 5 %; peer x2.3 at unchanged accuracy (ML-25M)",
            "ablation": {k: ab[k] for k in ("n_latents", "statistic", "p_value", "mean_drop", "mean_drop_random", "share_larger")},
            "steering": accept,
            "summary": summary,
            "steer_json": result.to_dict(),
            "sweep": sweep,
            "pipeline": info,
            "seconds": {"setup": build_s, "steer": steer_s},
            "seed": args.seed,
            "environment": environment_info(),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
