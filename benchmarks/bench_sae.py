"""SAE training throughput and quality: recsae's TopK + AuxK SAE against EleutherAI sparsify.

Same activations for both (``--activations rows x d .npy``, else synthetic rows with the
statistics of real SASRec activations, see ``synthetic_activations``), same row order, same
budget; each implementation trains in its own fresh subprocess with the same thread count, one
after the other in this run (alternating when ``--repeats`` > 1, so that load from other
processes on the machine falls on both). Reports rows/s (wall clock and per CPU-second),
held-out FVU (with the held-out mean), the share of latents silent on the held-out rows, L0.

    .venv/bin/python benchmarks/bench_sae.py                      # 1M train + 100k held out
    .venv/bin/python benchmarks/bench_sae.py --train-rows 200000 --valid-rows 20000   # quick

sparsify runs in a side virtual environment (``--sparsify-python``, default
/work/venvs/sparsify/bin/python, created with ``python3 -m venv`` and
``pip install -c constraints/cpu.txt torch==2.13.0 eai-sparsify==1.3.3``); see
``sae_sparsify_worker.py`` for how its training step is replicated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_SPARSIFY_PY = "/work/venvs/sparsify/bin/python"


def synthetic_activations(n: int, d: int = 64, seed: int = 0, n_atoms: int = 4096, active: int = 16) -> np.ndarray:
    """Rows like real SASRec activations (PEERS.md: row norm ≈ 21.8, per-dimension std ≈ 2.3):
    a large shared mean plus a sparse non-negative mixture of ``active`` unit atoms (out of
    ``n_atoms``, Zipf-popular, concentrated in a few principal directions: low-rank-ish) and a
    little isotropic noise."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    spectrum = 1.0 / (1.0 + np.arange(d)) ** 0.6
    atoms = (rng.normal(size=(n_atoms, d)) * spectrum) @ q.T
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    pop = 1.0 / (1.0 + np.arange(n_atoms)) ** 0.8
    pop /= pop.sum()
    out = np.empty((n, d), dtype=np.float64)
    for s in range(0, n, 65536):
        b = min(65536, n - s)
        ids = rng.choice(n_atoms, size=(b, active), p=pop)
        coef = rng.exponential(size=(b, active))
        out[s : s + b] = np.einsum("bj,bjd->bd", coef, atoms[ids]) + 0.05 * rng.normal(size=(b, d))
    out -= out.mean(0)
    out *= 2.3 / np.sqrt(out.var(0).mean())
    mu_norm = np.sqrt(max(21.8**2 - d * 2.3**2, 0.0))
    mu = rng.normal(size=d)
    out += mu / np.linalg.norm(mu) * mu_norm
    return out.astype(np.float32)


def data_stats(x: np.ndarray) -> dict[str, float]:
    return {
        "row_norm_mean": float(np.linalg.norm(x, axis=1).mean()),
        "dim_std_rms": float(np.sqrt(x.var(0).mean())),
        "mean_norm": float(np.linalg.norm(x.mean(0))),
    }


def recsae_worker(args: argparse.Namespace) -> None:
    """Train recsae's SAE in this (fresh) process and print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from recsae.sae import SaeConfig, SaeTrainConfig
    from recsae.sae.metrics import evaluate_sae
    from recsae.sae.train import train_sae

    train = np.load(args.train, allow_pickle=False)
    valid = np.load(args.valid, allow_pickle=False)
    cfg = SaeConfig(d_in=train.shape[1], n_latents=args.latents, k=args.k)
    tc_kwargs: dict[str, Any] = {"max_rows": args.rows, "batch_size": args.batch_size, "seed": args.seed}
    if args.lr is not None:
        tc_kwargs["lr"] = args.lr
    tc = SaeTrainConfig(**tc_kwargs)
    t0, c0 = time.perf_counter(), time.process_time()
    res = train_sae(train, cfg, tc, device="cpu")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    m = evaluate_sae(res.sae, valid)
    rows = sum(r["rows"] for r in res.history)
    print(json.dumps({
        "impl": "recsae",
        "rows": rows,
        "wall_s": wall,
        "cpu_s": cpu,
        "rows_per_s": rows / wall,
        "rows_per_cpu_s": rows / cpu,
        "valid_fvu": m.fvu,
        "silent_fraction": m.dead_fraction,
        "l0": m.l0,
        "train_dead_fraction": res.history[-1]["dead_fraction"],
        "sae_config": cfg.to_dict(),
        "train_config": tc.to_dict(),
    }))


def run_worker(cmd: list[str], timeout: float) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=cmd[cmd.index("--threads") + 1])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def load_avg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activations", type=Path, help="rows x d float32 .npy (default: synthetic)")
    ap.add_argument("--train-rows", type=int, default=1_000_000)
    ap.add_argument("--valid-rows", type=int, default=100_000)
    ap.add_argument("--rows", type=int, help="training budget in rows (default: one pass over the train rows)")
    ap.add_argument("--latents", type=int, default=2048)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, help="recsae Adam lr (default: SaeTrainConfig's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sparsify-python", default=DEFAULT_SPARSIFY_PY)
    ap.add_argument("--skip-sparsify", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_sae.json")
    # internal: run one implementation in this process
    ap.add_argument("--worker", choices=["recsae"], help=argparse.SUPPRESS)
    ap.add_argument("--train", help=argparse.SUPPRESS)
    ap.add_argument("--valid", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker == "recsae":
        recsae_worker(args)
        return

    n_total = args.train_rows + args.valid_rows
    if args.activations is not None:
        x = np.load(args.activations, mmap_mode="r", allow_pickle=False)
        if x.shape[0] < n_total:
            sys.exit(f"{args.activations}: {x.shape[0]} rows, need {n_total}")
        perm = np.random.default_rng(args.seed).permutation(x.shape[0])[:n_total]
        x = np.asarray(x[np.sort(perm)], dtype=np.float32)
        x = x[np.random.default_rng(args.seed + 1).permutation(n_total)]
        source = {"kind": "file", "path": str(args.activations)}
    else:
        x = synthetic_activations(n_total, seed=args.seed)
        source = {"kind": "synthetic", "generator": "bench_sae.synthetic_activations", "seed": args.seed}
    train, valid = x[: args.train_rows], x[args.train_rows :]
    rows = args.rows or args.train_rows

    results: dict[str, list[dict[str, Any]]] = {"recsae": [], "sparsify": []}
    with tempfile.TemporaryDirectory() as tmp:
        tr_path, va_path = Path(tmp) / "train.npy", Path(tmp) / "valid.npy"
        np.save(tr_path, train)
        np.save(va_path, valid)
        common = ["--train", str(tr_path), "--valid", str(va_path), "--rows", str(rows), "--latents",
                  str(args.latents), "--k", str(args.k), "--batch-size", str(args.batch_size), "--seed",
                  str(args.seed), "--threads", str(args.threads)]
        rec_cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "recsae", *common]
        if args.lr is not None:
            rec_cmd += ["--lr", str(args.lr)]
        spa_cmd = [args.sparsify_python, str(HERE / "sae_sparsify_worker.py"), *common]
        run_sparsify = not args.skip_sparsify and Path(args.sparsify_python).exists()
        for rep in range(args.repeats):
            order = ["recsae", "sparsify"] if rep % 2 == 0 else ["sparsify", "recsae"]
            for impl in order:
                if impl == "sparsify" and not run_sparsify:
                    continue
                before = load_avg()
                r = run_worker(rec_cmd if impl == "recsae" else spa_cmd, args.timeout)
                r["load_avg_before"], r["load_avg_after"] = before, load_avg()
                results[impl].append(r)
                print(impl, json.dumps({k: v for k, v in r.items() if not isinstance(v, dict)}), flush=True)

    def best(impl: str, key: str) -> float | None:
        vals = [r[key] for r in results[impl] if key in r]
        return max(vals) if vals else None

    summary: dict[str, Any] = {}
    for impl in results:
        ok = [r for r in results[impl] if "error" not in r]
        if ok:
            summary[impl] = {
                "rows_per_s_best": max(r["rows_per_s"] for r in ok),
                "rows_per_cpu_s_best": max(r["rows_per_cpu_s"] for r in ok),
                "valid_fvu": float(np.median([r["valid_fvu"] for r in ok])),
                "silent_fraction": float(np.median([r["silent_fraction"] for r in ok])),
            }
    if "recsae" in summary and "sparsify" in summary:
        summary["speedup_wall"] = summary["recsae"]["rows_per_s_best"] / summary["sparsify"]["rows_per_s_best"]
        summary["speedup_cpu"] = summary["recsae"]["rows_per_cpu_s_best"] / summary["sparsify"]["rows_per_cpu_s_best"]
    import torch

    import recsae
    from recsae.io import write_json

    out = {
        "benchmark": "bench_sae",
        "setting": {"d": int(x.shape[1]), "latents": args.latents, "k": args.k, "batch_size": args.batch_size,
                    "train_rows": args.train_rows, "valid_rows": args.valid_rows, "budget_rows": rows,
                    "threads": args.threads, "seed": args.seed, "repeats": args.repeats},
        "data": {**source, **data_stats(train)},
        "summary": summary,
        "runs": results,
        "sparsify_status": "ran" if run_sparsify else (
            "skipped (--skip-sparsify)" if args.skip_sparsify else f"not found: {args.sparsify_python}"),
        "note": ("CPU shared with other processes during the run (see load_avg_*); rows/s per "
                 "CPU-second is less sensitive to that load than wall-clock rows/s."),
        "versions": {"recsae": recsae.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "command": " ".join(sys.argv),
    }
    write_json(args.out, out)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
