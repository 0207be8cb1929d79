"""bench_scale.py at a tiny size (two sizes of a few hundred interactions): every stage of a run
measured at both, the growth exponents computed from them, and the worker process's protocol."""

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # as when run as a script: its helpers import from the folder
SPEC = importlib.util.spec_from_file_location("bench_scale", BENCHMARKS / "bench_scale.py")
assert SPEC is not None and SPEC.loader is not None
bench_scale = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench_scale)


def test_every_stage_is_measured_at_every_size_and_the_largest_gets_the_large_catalogue_and_a_splice_sample(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    # splice: 121 users x 72 columns within the budget, 242 x 301 above it (a sample of 100 users);
    bench_scale.main(["--scales", "0.02", "0.04", "--large-items", "300", "--seq-len", "8", "30", "--in-process",
                      "--splice-budget", "30000", "--causal-budget", "100", "--work", str(tmp_path / "work"),
                      "--out", str(out)])
    result = json.loads(out.read_text())
    small, large = result["sizes"]
    assert small["users"] == round(6038 * 0.02) and large["users"] == round(6038 * 0.04)
    assert small["items"] == 71 and large["items"] == 300  # scaled, then at least --large-items
    assert 8 * small["users"] <= small["interactions"] <= 30 * small["users"]
    for size in (small, large):
        assert set(size["stages"]) == set(bench_scale.STAGES)
        for figures in size["stages"].values():
            assert figures["seconds"] > 0 and figures["peak_rss_mb"] >= figures["peak_anon_mb"] > 0
        assert size["stages"]["harvest"]["rows"] > size["users"]  # every position of every history
        assert size["stages"]["model"]["fraction_measured"] == 1.0
    assert small["stages"]["splice"]["fraction_measured"] == 1.0
    # causal tests: every tested unit at 72 columns, a third of them at 301 (budget 100), extrapolated
    assert small["stages"]["interpret"]["fraction_measured"] == 1.0
    inter = large["stages"]["interpret"]
    assert 0 < inter["causal_units_measured"] < inter["causal_units"] and inter["seconds"] > inter["seconds_measured"]
    assert large["stages"]["splice"]["users_measured"] == 100 and large["stages"]["splice"]["users"] > 200
    for stage in bench_scale.STAGES:
        assert set(result["exponents"][stage]) == {"0.02x-0.04x"}
    table = bench_scale.markdown_table(result).splitlines()
    assert len(table) == 2 + len(bench_scale.STAGES) + 2 and table[2].startswith("| data |")
    assert "*" in next(line for line in table if line.startswith("| splice |"))  # the sampled splice is marked
    assert result["largest_peak_rss_mb_harvest_sae_interpret"] == max(
        large["stages"][s]["peak_rss_mb"] for s in ("harvest", "sae", "interpret"))

    # --update reruns one stage of one size on the data left in --work, the rest as it was
    bench_scale.main(["--update", str(out), "--scales", "0.04", "--stages", "sae", "--in-process",
                      "--work", str(tmp_path / "work")])
    updated = json.loads(out.read_text())
    assert updated["sizes"][0] == small and updated["sizes"][1]["rerun"] == ["sae"]
    assert updated["sizes"][1]["stages"]["sae"] != large["stages"]["sae"]
    assert {k: v for k, v in updated["sizes"][1]["stages"].items() if k != "sae"} == \
        {k: v for k, v in large["stages"].items() if k != "sae"}
    assert updated["stages"] == result["stages"] and "reruns" in updated["load_average"]


def test_a_stage_runs_in_its_own_process_and_reports_one_json_line(tmp_path: Path) -> None:
    opts = {"synthetic": bench_scale.size_options(0.01, seq_len=(8, 30)), "model_seconds": 1.0, "steer_users": 100}
    figures = bench_scale.run_stage("data", tmp_path, opts, in_process=False)
    assert figures["users"] == 60 and figures["seconds"] > 0 and figures["peak_rss_mb"] > figures["base_rss_mb"] > 0
    assert (tmp_path / "data" / "item.npy").is_file()


def test_exponents_are_log_log_slopes_of_seconds_against_interactions() -> None:
    sizes = [{"scale": s, "interactions": n, "stages": {"a": {"seconds": t}}}
             for s, n, t in ((1, 100, 2.0), (4, 400, 8.0), (16, 1600, 64.0))]
    slopes = bench_scale.exponents(sizes, ["a"])["a"]
    assert slopes["1x-4x"] == 1.0 and abs(slopes["4x-16x"] - 1.5) < 1e-12 and abs(slopes["1x-16x"] - 1.25) < 1e-12
