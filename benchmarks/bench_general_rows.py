"""Does a general model get an SAE whose latents are interpretable? Figures of finished
``recsae run`` folders side by side (issue 18, item 6).

For each run folder: the model's test NDCG@10 against most-popular, the SAE's fidelity, the
number of harvested rows, and the validated-interpretable and causally faithful shares of the
SAE, its neurons, the untrained SAE and the untrained model's SAE (``summary.json``'s
``interpret``), with the command that made the run (given as ``label=folder=command``; the
command is recorded, never run here):

    .venv/bin/python benchmarks/bench_general_rows.py \\
        --run "prefix=runs/lgcn=recsae run --dataset ml-100k --model lightgcn ..." [--run ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from recsae.io import read_json, write_json
from recsae.utils import environment_info

RESULTS = Path(__file__).resolve().parent / "results" / "bench_general_rows.json"
UNITS = ("sae", "neurons", "random_sae", "random_model_sae")


def figures(folder: Path) -> dict[str, Any]:
    """The figures of one finished run folder."""
    summary = read_json(folder / "summary.json")
    meta = read_json(folder / "activations" / "meta.json")
    interp = summary.get("interpret", {})
    shares = {"sae": interp.get("share_interpretable")} | {
        u: interp.get(u, {}).get("share_interpretable") for u in UNITS[1:]
    }
    faithful = {u: interp.get("faithful", {}).get(u, {}).get("share") for u in UNITS}
    beats = all(shares["sae"] is not None and v is not None and shares["sae"] > v for u, v in shares.items() if u != "sae")
    beats_faithful = all(faithful["sae"] is not None and v is not None and faithful["sae"] > v
                         for u, v in faithful.items() if u != "sae")
    splice = summary.get("sae", {})
    return {
        "model_test_ndcg@10": summary["model"]["test"]["ndcg@10"],
        "most_popular_test_ndcg@10": summary["baseline"]["most_popular"]["test"]["ndcg@10"],
        "harvested_rows": meta["n_rows"],
        "sae": {k: splice.get(k) for k in ("fvu", "retention", "top10_overlap", "dead_fraction")},
        "sae_shape": {k: v for k, v in read_json(folder / "sae" / "cfg.json")["sae"].items() if k in ("d_in", "expansion", "n_latents", "k")},
        "n_alive": interp.get("n_alive"),
        "share_interpretable": shares,
        "share_faithful": faithful,
        "sae_beats_every_control_interpretable": beats,
        "sae_beats_every_control_faithful": beats_faithful,
        "steer": {c: {k: v.get(k) for k in ("share_before", "share_after", "random_control_share_after", "ndcg_before",
                                             "ndcg_after")} for c, v in (summary.get("steer") or {}).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="label=folder=command")
    parser.add_argument("--note", default="", help="what the runs compare")
    args = parser.parse_args()
    runs = {}
    for spec in args.run:
        label, folder, command = spec.split("=", 2)
        runs[label] = {"command": command} | figures(Path(folder))
        print(label, runs[label]["share_interpretable"], runs[label]["share_faithful"])
    write_json(RESULTS, {"benchmark": "bench_general_rows", "command": " ".join(sys.argv[:1]) + " --run ...",
                         "note": args.note, "runs": runs, "environment": environment_info()})
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
