"""Harvest speed on ML-1M positives with SASRec (default config: d = 64, max_len = 200, 2 blocks).

Acceptance (issue 4): harvest + SAE training on ML-1M under 3 minutes on 2 cores. The cost of a
harvest does not depend on the weights, so without ``--checkpoint`` an untrained SASRec of the
default shape is used (with one, the checkpoint's model and recorded dataset). The comparison is
the reference RecSAE design, which reruns the frozen model at every SAE step instead of reading a
store: its per-epoch model cost is one forward pass over the same rows, i.e. the harvest time,
paid again every epoch. Also times reading the store back (memory map) and a splice-style
``represent`` pass over the test users.

    .venv/bin/python benchmarks/bench_harvest.py [--data-root ../shared/data] [--checkpoint DIR]

Writes benchmarks/results/bench_harvest.json (with environment info).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _common import default_data_root
from recsae.data import load_dataset
from recsae.data.split import make_split
from recsae.io import write_json
from recsae.models.registry import model_class, model_config
from recsae.probe import ActivationStore, harvest
from recsae.utils import environment_info

RESULTS = Path(__file__).resolve().parent / "results" / "bench_harvest.json"


def _model_and_split(args: argparse.Namespace) -> tuple[Any, Any, str]:
    if args.checkpoint:
        from recsae.models.checkpoint import load_checkpoint, split_for_checkpoint

        model, config = load_checkpoint(args.checkpoint)
        return model, split_for_checkpoint(Path(args.checkpoint), config, args.data_root), "checkpoint"
    split = make_split(load_dataset(args.dataset, data_root=args.data_root), "leave-one-out")
    torch.manual_seed(0)
    cfg = model_config("sasrec")
    model = model_class("sasrec").build(cfg, split.n_users, split.n_items, split.train).eval()
    return model, split, "untrained sasrec (default config)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    model, split, which_model = _model_and_split(args)
    figures: dict[str, Any] = {
        "dataset": args.dataset if not args.checkpoint else "recorded in checkpoint",
        "model": which_model,
        "n_users": split.n_users,
        "n_items": split.n_items,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, last_only in (("all_positions", False), ("last_only", True)):
            t0 = time.perf_counter()
            store = harvest(model, split, Path(tmp) / name, last_only=last_only, batch_size=args.batch_size)
            seconds = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in (Path(tmp) / name).iterdir())
            figures[name] = {
                "rows": store.n_rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(store.n_rows / seconds),
                "store_mb": round(size / 2**20, 1),
                "shards": len(store.shards),
            }
            print(f"harvest {name}: {store.n_rows} rows in {seconds:.1f} s ({store.n_rows / seconds:,.0f} rows/s), "
                  f"{size / 2**20:.0f} MB")
        t0 = time.perf_counter()
        store = ActivationStore.open(Path(tmp) / "all_positions")
        train = store.load(store.rows("train"))
        figures["read_train_rows_s"] = round(time.perf_counter() - t0, 3)
        figures["train_rows"] = len(train)
        figures["valid_rows"] = len(store.rows("valid"))
        print(f"open + load {len(train)} train rows: {figures['read_train_rows_s']} s")
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["reference_design_note"] = (
        "the reference reruns the frozen model inside every SAE step: about all_positions.seconds "
        "of extra model time per SAE epoch, which the store pays once"
    )
    figures["environment"] = environment_info()
    figures["load_average"] = os.getloadavg()
    write_json(RESULTS, figures)
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
