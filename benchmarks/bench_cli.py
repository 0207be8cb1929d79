"""CLI start-up time: ``recsae --help`` and ``recsae data list`` (target < 1 s each).

Each command runs in a fresh interpreter (``python -m recsae``, the recsae this interpreter
imports), ``--repeats`` times; the median wall time is the figure. Commands that need no model
must start without importing torch, which alone takes seconds.

    .venv/bin/python benchmarks/bench_cli.py [--repeats 5]

Prints the figures and saves benchmarks/results/bench_cli.json (with the command, environment
info and the load average, since the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import recsae
from recsae.io import write_json
from recsae.utils import environment_info

RESULTS = Path(__file__).resolve().parent / "results" / "bench_cli.json"
TARGET_S = 1.0
COMMANDS = (["--help"], ["data", "list"])


def _time_command(args: list[str], repeats: int) -> dict[str, object]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "recsae", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return {"command": "recsae " + " ".join(args), "seconds_median": statistics.median(times),
            "seconds_all": times, "target_seconds": TARGET_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    load_before = os.getloadavg()
    runs = [_time_command(command, args.repeats) for command in COMMANDS]
    for r in runs:
        print(f"{r['command']:<20} median {r['seconds_median']:.3f} s over {args.repeats} runs "
              f"(target < {TARGET_S:g} s)")
    write_json(RESULTS, {
        "benchmark": "bench_cli", "command": " ".join(sys.argv), "repeats": args.repeats, "runs": runs,
        "recsae_path": str(Path(recsae.__file__).parent), "load_average_before": load_before,
        "load_average_after": os.getloadavg(), "environment": environment_info(),
    })
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
