"""Cost of ``recsae run``'s interpretation stage with every control and the causal tests.

For a finished ``recsae run`` folder (model, SAE, activation store, controls), redo exactly what
the interpretation stage computes — the SAE, the raw neurons, the untrained SAE and the SAE of
the untrained model through the rule test, the shuffled-explanation control, the causal tests
of every validated unit and k-sparse probing, then seed stability — and time each part, wall
and CPU seconds (the machine may be shared). Nothing in the run folder is written.

    .venv/bin/python benchmarks/bench_interpret_stage.py --run runs/ml1m [--out JSON]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from recsae.controls import untrained_model
from recsae.interpret import InterpretConfig, interpret
from recsae.interpret.from_run import run_inputs, seed_stability
from recsae.io import read_json, write_json
from recsae.models.checkpoint import load_checkpoint, split_for_checkpoint
from recsae.probe.store import ActivationStore
from recsae.rundir import RunDir
from recsae.sae.model import TopKSAE
from recsae.utils import environment_info, setup_logging

RESULT = Path(__file__).parent / "results" / "bench_interpret_stage.json"


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, round(time.perf_counter() - wall, 1), round(time.process_time() - cpu, 1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished recsae run folder with its controls")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    setup_logging()
    run = RunDir(args.run)
    config = read_json(run.config)["config"]
    model, ckpt = load_checkpoint(run.model)
    split = split_for_checkpoint(run.model, ckpt)
    sae = TopKSAE.load(run.sae)
    store = ActivationStore.open(run.activations)
    rm = untrained_model(config["model"], ckpt["model"]["config"], split, config["seed"])
    random_model = (rm, ActivationStore.open(run.random_model_control / RunDir.ACTIVATIONS),
                    TopKSAE.load(run.random_model_control / RunDir.SAE))
    inputs, w_in, c_in = timed(run_inputs, model, sae, store, split, seed=config["seed"],
                               random_sae=TopKSAE.load(run.random_sae), random_model=random_model)
    result, w_int, c_int = timed(interpret, **inputs, cfg=InterpretConfig(seed=config["seed"]))
    stability, w_st, c_st = timed(seed_stability, sae, TopKSAE.load(run.seed_sae_control / RunDir.SAE),
                                  inputs["reps"], config["seed"])
    total = round(w_in + w_int + w_st, 1)
    s = result.summary
    record = {
        "command": " ".join(sys.argv),
        "run": str(run.root),
        "rows": s["n_rows"],
        "concepts": s["n_concepts"],
        "seconds": {"inputs": w_in, "interpret_all_families": w_int, "seed_stability": w_st, "total": total},
        "cpu_seconds": {"inputs": c_in, "interpret_all_families": c_int, "seed_stability": c_st},
        "target_seconds": 300,
        "faithful": s.get("faithful"),
        "seed_stability": stability,
        "versions": environment_info(),
    }
    print(f"interpretation stage on {s['n_rows']} rows, {s['n_concepts']} concepts: {total} s wall "
          f"(inputs {w_in}, four families with causal tests and probing {w_int}, seed stability {w_st}); target 300 s")
    write_json(args.out, record)


if __name__ == "__main__":
    main()
