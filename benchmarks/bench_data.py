"""Dataset-layer speed: load ML-1M positives (target < 10 s) and ml-100k with default filters.

Run: .venv/bin/python benchmarks/bench_data.py [--data-root ../shared/data] [--repeats 3]
Prints the figures and saves benchmarks/results/bench_data.json (with environment info).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from _common import default_data_root
from recsae.data import load_dataset
from recsae.io import write_json
from recsae.utils import environment_info

RESULTS = Path(__file__).resolve().parent / "results" / "bench_data.json"
TARGET_S = {"ml-1m": 10.0}


def _time_load(name: str, data_root: Path, repeats: int, **kwargs: Any) -> dict[str, object]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ds = load_dataset(name, data_root=data_root, **kwargs)
        times.append(time.perf_counter() - start)
    counts = ds.info["counts"]
    return {
        "dataset": name,
        "options": kwargs,
        "seconds_best": min(times),
        "seconds_all": times,
        "target_seconds": TARGET_S.get(name),
        "counts": counts,
        "interactions": ds.n_interactions,
        "users": ds.n_users,
        "items": ds.n_items,
    }


def _time_plain_read(data_root: Path, repeats: int) -> float:
    """Floor for comparison: pandas alone reading the ML-1M ratings CSV (no checks, no id maps)."""
    import pandas as pd

    from recsae.data.loaders.movielens import find_1m_ratings

    path = find_1m_ratings(data_root / "ml-1m")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if ".csv" in path.suffixes:
            pd.read_csv(path)
        else:
            pd.read_csv(path, sep="::", engine="python", header=None)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    runs = [
        # ML-1M positives before k-core: the acceptance figure (575,281 / 6,038 / 3,533).
        _time_load("ml-1m", args.data_root, args.repeats, min_rating=4.0, k_core=0),
        _time_load("ml-1m", args.data_root, args.repeats),
        _time_load("ml-100k", args.data_root, args.repeats),
    ]
    plain = _time_plain_read(args.data_root, args.repeats)
    print(f"reference: pandas.read_csv of the ML-1M ratings file alone: {plain:.3f} s")
    for r in runs:
        target = f" (target < {r['target_seconds']:g} s)" if r["target_seconds"] else ""
        print(
            f"{r['dataset']:<8} {r['options']!s:<36} {r['seconds_best']:.3f} s{target}  "
            f"{r['interactions']:,} interactions, {r['users']:,} users, {r['items']:,} items"
        )
    write_json(
        RESULTS,
        {"benchmark": "bench_data", "data_root": str(args.data_root), "repeats": args.repeats, "runs": runs, "pandas_read_csv_ml1m_seconds": plain, "environment": environment_info()},
    )
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
