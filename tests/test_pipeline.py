"""``recsae run`` end to end on a tiny synthetic dataset (``tiny_run``: one run per session, shared with
the report tests): documented summary keys, resume, errors."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsae.config import ModelOptions, RunConfig, SaeOptions
from recsae.data.registry import DatasetOptions
from recsae.errors import ConfigError
from recsae.io import read_json
from recsae.pipeline import (
    PRESETS,
    check_options,
    make_run_split,
    model_settings,
    preset,
    run_pipeline,
    stage_fingerprints,
)
from tiny_pipeline import TINY, tiny_config


@pytest.mark.slow
def test_run_writes_every_documented_summary_key(tiny_run: Path) -> None:
    s = read_json(tiny_run / "summary.json")
    assert {"name", "n_users", "n_items", "n_interactions"} <= set(s["dataset"])
    assert s["dataset"]["n_users"] == TINY["n_users"]
    assert {"name", "valid", "test", "train_seconds"} <= set(s["model"])
    assert isinstance(s["model"]["below_most_popular"], bool)
    for key in ("ndcg@10", "hr@10", "mrr@10", "recall@10"):
        assert 0.0 <= s["model"]["test"][key] <= 1.0
    sae = s["sae"]
    for key in ("fvu", "cosine", "l0", "dead_fraction", "dense_fraction", "retention", "top10_overlap", "kl"):
        assert isinstance(sae[key], float), key
    assert "ndcg@10" in sae["spliced"]["test"] and "ndcg@10" in sae["mean_ablated"]["test"]
    assert {"test", "top10_overlap"} <= set(sae["random_sae"])
    interp = s["interpret"]
    for key in ("n_alive", "n_interpretable", "share_interpretable", "coherence", "planted_recovered"):
        assert key in interp, key
    assert "share_interpretable" in interp["neurons"] and "share_interpretable" in interp["random_sae"]
    for unit, share in interp["explained_by_interpretable"].items():  # floats: every decoder bias reached it
        assert isinstance(share, float) and share <= 1.0, unit
    families = {"sae", "neurons", "random_sae", "random_model_sae"}
    assert set(interp["explained_by_interpretable"]) == families
    assert "planted_recovered" in interp["random_sae"] and "planted_recovered" in interp["random_model_sae"]
    assert set(interp["faithful"]) == families
    for family, faithful in interp["faithful"].items():
        assert faithful["n"] >= 0 and 0.0 <= faithful["share"] <= 1.0, family
    assert 0.0 <= interp["shuffled_control"]["median_confidence"] <= 1.0
    stability = interp["seed_stability"]
    assert 0.0 <= stability["trained"]["share"] <= 1.0 and 0.0 <= stability["floor"]["share"] <= 1.0
    assert (tiny_run / "controls" / "random_model" / "sae" / "cfg.json").is_file()
    assert (tiny_run / "controls" / "seed_sae" / "sae" / "cfg.json").is_file()
    probing = read_json(tiny_run / "interpret.json")["sparse_probing"]
    assert families | {"dense", "gap_k1"} <= set(probing)
    assert s["steer"], "the steering stage studied no concept"
    for concept in s["steer"].values():
        assert {"share_before", "share_after", "random_control_share_after", "ndcg_before", "ndcg_after"} <= set(concept)
    assert s["seed"] == 3 and "torch" in s["versions"]
    assert (tiny_run / "report" / "index.html").is_file()
    assert (tiny_run / "ground_truth" / "ground_truth.json").is_file()


@pytest.mark.slow
def test_rerun_resumes_without_redoing_finished_stages(tiny_run: Path) -> None:
    # the trainer confirms a finished training by rewriting the same checkpoint; later stages
    # are not touched at all
    weights = (tiny_run / "model/model.safetensors").read_bytes()
    outputs = ["sae/sae.safetensors", "activations/meta.json", "interpretation.parquet", "steer.json"]
    before = {p: (tiny_run / p).stat().st_mtime_ns for p in outputs}
    first = read_json(tiny_run / "summary.json")
    second = run_pipeline(tiny_run, tiny_config())
    assert (tiny_run / "model/model.safetensors").read_bytes() == weights
    assert {p: (tiny_run / p).stat().st_mtime_ns for p in outputs} == before
    assert second["model"]["test"] == first["model"]["test"]
    assert second["sae"]["fvu"] == first["sae"]["fvu"]


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its SHA-256 and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_refused_rerun_changes_nothing_on_disk(tiny_run: Path, tmp_path: Path) -> None:
    table = tmp_path / "log.csv"
    table.write_text("user_id,item_id,timestamp\n" + "".join(
        f"{u},{(u * 7 + j) % 30},{j}\n" for u in range(1, 21) for j in range(8)))
    before = _snapshot(tiny_run)
    reruns = {
        "seed": tiny_config(seed=4),
        "data": tiny_config(data_kwargs=TINY | {"n_users": 150}),
        "dataset": tiny_config(DatasetOptions(str(table)), data_kwargs={}),
    }
    for what, cfg in reruns.items():
        with pytest.raises(ConfigError, match="holds a different training run"):
            run_pipeline(tiny_run, cfg)
        assert _snapshot(tiny_run) == before, f"a rerun with another {what} wrote into the run folder"


def _mtimes(run: Path, paths: list[str]) -> dict[str, int]:
    return {p: (run / p).stat().st_mtime_ns for p in paths}


@pytest.mark.slow
def test_a_changed_sae_option_redoes_the_sae_and_every_later_stage_and_the_summary_matches_the_disk(
    tiny_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model_before = (run / "model/model.safetensors").read_bytes()
    store_before = _mtimes(run, ["activations/meta.json"])
    later = ["sae/sae.safetensors", "interpretation.parquet", "steer.json"]
    before = _mtimes(run, later)
    summary = run_pipeline(run, tiny_config(**{"sae.k": 4}))
    assert (run / "model/model.safetensors").read_bytes() == model_before
    assert _mtimes(run, ["activations/meta.json"]) == store_before  # the model did not change: same store
    after = _mtimes(run, later)
    assert all(after[p] != before[p] for p in later)
    assert read_json(run / "sae/cfg.json")["sae"]["k"] == 4 == summary["config"]["sae"]["k"]
    assert read_json(run / "controls/seed_sae/sae/cfg.json")["sae"]["k"] == 4
    assert summary["sae"]["l0"] <= 4
    assert read_json(run / "summary.json")["fingerprints"] == summary["fingerprints"]


@pytest.mark.slow
def test_the_prediction_aware_loss_trains_the_sae_and_both_sae_controls_with_their_own_models_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recsae.sae_stage
    from recsae.models.checkpoint import load_checkpoint

    tables = []
    real = recsae.sae_stage.loss_items

    def recorded(model, train_cfg):  # type: ignore[no-untyped-def]
        tables.append(real(model, train_cfg))
        return tables[-1]

    monkeypatch.setattr(recsae.sae_stage, "loss_items", recorded)
    monkeypatch.setattr("recsae.controls.loss_items", recorded)
    cfg = tiny_config(**{"sae.kl_weight": 0.5, "stages": ("model", "sae")})
    assert stage_fingerprints(cfg)["sae"] != stage_fingerprints(tiny_config())["sae"]
    run_pipeline(tmp_path / "run", cfg)
    run = tmp_path / "run"
    for folder in ("sae", "controls/random_model/sae", "controls/seed_sae/sae"):
        assert read_json(run / folder / "cfg.json")["train"]["kl_weight"] == 0.5, folder
        log = [json.loads(line) for line in (run / folder / "train_log.jsonl").read_text().splitlines()]
        assert all(rec["kl"] > 0 for rec in log if "kl" in rec) and any("kl" in rec for rec in log), folder
    trained = load_checkpoint(run / "model")[0].item_embeddings().detach().numpy()
    # the SAE, the untrained model's SAE (other items), the second-seed SAE (the model's items)
    assert len(tables) == 3 and tables[0] is not None and tables[1] is not None
    np.testing.assert_array_equal(tables[0], trained)
    np.testing.assert_array_equal(tables[2], trained)
    assert not np.array_equal(tables[1], trained)


@pytest.mark.slow
def test_a_changed_interpretation_option_redoes_only_interpretation_steering_and_report(
    tiny_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    kept = ["sae/sae.safetensors", "splice.json", "controls/random_model/sae/sae.safetensors"]
    redone = ["interpretation.parquet", "steer.json", "report/index.html"]
    before_kept, before_redone = _mtimes(run, kept), _mtimes(run, redone)
    summary = run_pipeline(run, tiny_config(**{"interpret.causal": False}))
    assert _mtimes(run, kept) == before_kept
    after = _mtimes(run, redone)
    assert all(after[p] != before_redone[p] for p in redone)
    assert "faithful" not in summary["interpret"]  # the summary describes the new interpretation
    assert "faith_effect" not in pd.read_parquet(run / "interpretation.parquet").columns


def test_a_stage_with_other_inputs_never_resumes_their_partial_outputs(tmp_path: Path) -> None:
    from recsae.pipeline import Run

    run = Run(tmp_path, tiny_config())
    (tmp_path / "sae").mkdir()
    (tmp_path / "sae" / "partial.bin").write_bytes(b"x")
    (tmp_path / "steer.json").write_text("{}")
    run.summary["started"] = {"sae": "another-fingerprint"}
    run.begin("sae")
    assert not (tmp_path / "sae").exists() and not (tmp_path / "steer.json").exists()
    (tmp_path / "sae").mkdir()
    (tmp_path / "sae" / "partial.bin").write_bytes(b"x")
    run.begin("sae")  # a killed attempt with the same inputs: its partial state is kept for the trainer
    assert (tmp_path / "sae" / "partial.bin").is_file()
    assert read_json(tmp_path / "summary.json")["started"]["sae"] == run.fingerprints["sae"]


def test_stages_stop_after_the_last_requested_one(tmp_path: Path) -> None:
    summary = run_pipeline(tmp_path, tiny_config(stages=["model"], **{"model.epochs": 1}))
    assert "model" in summary and "sae" not in summary
    assert not (tmp_path / "sae").exists()


def test_unknown_stage_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown stage"):
        run_pipeline(tmp_path, tiny_config(stages=["model", "dance"]))


def test_explicit_options_override_the_dataset_preset() -> None:
    preset_model, preset_train = model_settings(RunConfig())
    assert preset_model["max_len"] == 50 and preset_train["patience"] == 3
    model_opts, train_opts = model_settings(RunConfig(model=ModelOptions(max_len=30, lr=1e-4, patience=7)))
    assert model_opts["max_len"] == 30 and train_opts["lr"] == 1e-4 and train_opts["patience"] == 7
    assert model_settings(RunConfig(data=DatasetOptions("ml-1m"), model=ModelOptions("bpr"))) == ({}, {"epochs": 200})


def test_model_options_lie_over_the_preset_and_enter_the_model_fingerprint() -> None:
    base = RunConfig(data=DatasetOptions("ml-100k"))
    assert model_settings(base)[0]["dropout"] == 0.4  # the ml-100k preset's
    given = base.override({"model.options": {"dropout": 0.1, "n_blocks": 1}})
    model_opts = model_settings(given)[0]
    assert model_opts["dropout"] == 0.1 and model_opts["n_blocks"] == 1 and model_opts["label_smoothing"] == 0.2
    assert model_settings(given.override({"model.max_len": 20}))[0]["max_len"] == 20  # the named option wins
    assert stage_fingerprints(given)["model"] != stage_fingerprints(base)["model"]


@pytest.mark.parametrize(("options", "message"), [
    ({"dropuot": 0.1}, "model 'sasrec' has no option(s) dropuot; it takes dim, dropout"),
    ({"dropout": "high"}, "model 'sasrec': dropout: expected a number, got 'high'"),
    ({"loss": "bpr"}, "loss must be 'ce' or 'bce'"),
])
def test_a_bad_model_option_fails_before_any_data_is_loaded(options: dict, message: str) -> None:
    from recsae.pipeline import check_options

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_options(RunConfig(model=ModelOptions(options=options)))


def test_options_left_unset_are_chosen_from_the_data_in_one_line_and_recorded_and_given_ones_win(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = tiny_config(stages=["model"], **{"model.epochs": 1, "model.lr": 2e-3})
    cfg = dataclasses.replace(base, sae=dataclasses.replace(base.sae, expansion=None))  # k given, width not
    with caplog.at_level("INFO", logger="recsae"):
        summary = run_pipeline(tmp_path, cfg)
    chosen = summary["defaults"]["chosen"]
    assert set(chosen) == {"model.batch_size", "model.patience", "sae.expansion"}  # not lr, not k: given
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("defaults for ")]
    assert lines == summary["defaults"]["lines"] and len(lines) == 1
    assert f"defaults for {summary['dataset']['n_users']:,} users" in lines[0] and "patience" in lines[0]
    assert "lr" not in lines[0].split("(")[0]  # given options are not among the chosen ones
    trained = read_json(tmp_path / "model" / "config.json")["train"]
    assert trained["lr"] == 2e-3 and trained["batch_size"] == chosen["model.batch_size"]
    assert trained["patience"] == chosen["model.patience"]
    recorded = read_json(tmp_path / "config.json")
    assert recorded["defaults"]["chosen"] == chosen and recorded["config"]["model"]["batch_size"] is None


def test_an_sae_too_wide_for_the_data_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tiny_config(stages=["model"], **{"model.epochs": 1, "sae.expansion": 32, "sae.k": 32})
    with caplog.at_level("WARNING", logger="recsae"):
        summary = run_pipeline(tmp_path, cfg)
    assert "needs to be validated" in caplog.text
    assert summary["defaults"]["warnings"] and "sae.expansion" not in summary["defaults"]["chosen"]


def test_model_name_case_does_not_skip_the_preset() -> None:
    assert model_settings(RunConfig(model=ModelOptions("SASRec"))) == model_settings(RunConfig(model=ModelOptions("sasrec")))


def test_unknown_steering_concept_fails_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="concept=no-such-concept"):
        run_pipeline(tmp_path, tiny_config(**{"steer.concepts": ["concept=no-such-concept"]}))
    assert list(tmp_path.iterdir()) == []  # no config.json, summary.json or ground_truth/ either


def test_preset_lays_given_options_over_the_tuned_ones_and_leaves_presets_alone() -> None:
    tuned = copy.deepcopy(PRESETS)
    tuned_model, tuned_train = PRESETS["ml-100k", "sasrec"]
    assert {"max_len", "dropout"} <= tuned_model.keys() and "lr" in tuned_train
    model_opts, train_opts = preset("ml-100k", "sasrec", {"max_len": 20, "dropout": None}, {"lr": 1e-4})
    assert model_opts == tuned_model | {"max_len": 20}  # None means "not given": the preset's stays
    assert train_opts == tuned_train | {"lr": 1e-4}
    model_opts["max_len"] = 7
    assert tuned == PRESETS
    assert preset("no-such-dataset", "sasrec", {"dim": None}) == ({}, {})


@pytest.mark.slow
@pytest.mark.parametrize(("option", "message"), [("sae.k", "k and expansion"), ("sae.expansion", "k and expansion"),
                                                  ("sae.epochs", "epochs"), ("sae.balance", "balance_rate"),
                                                  ("sae.min_rows", "min_rows")])
def test_bad_sae_options_fail_before_any_stage_runs(tmp_path: Path, option: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_pipeline(tmp_path / "run", tiny_config(**{option: -1}))
    assert not (tmp_path / "run").exists()


def test_stage_commands_work_on_a_run_folder(tiny_run: Path) -> None:
    import subprocess
    import sys

    def recsae(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "recsae", *args], capture_output=True, text=True, timeout=300)

    shown = recsae("interpret", "--run", str(tiny_run), "--top", "3")
    assert shown.returncode == 0, shown.stderr
    assert "latent" in shown.stdout.lower()
    steered = recsae("steer", "--run", str(tiny_run), "--latent", "0", "--scale", "0")
    assert steered.returncode == 0, steered.stderr
    reported = recsae("report", "--run", str(tiny_run), "--out", str(tiny_run / "again.html"))
    assert reported.returncode == 0, reported.stderr
    assert (tiny_run / "again.html").stat().st_size > 1000


def test_a_later_stage_alone_also_runs_the_model_and_sae_it_needs(tmp_path: Path) -> None:
    summary = run_pipeline(tmp_path, tiny_config(stages=["interpret"], **{"model.epochs": 1, "sae.epochs": 1}))
    assert {"model", "sae", "interpret"} <= set(summary)
    assert "steer" not in summary and not (tmp_path / "report").exists()


@pytest.mark.slow
def test_steer_alone_reuses_the_finished_interpretation_and_runs(tmp_path: Path) -> None:
    run_pipeline(tmp_path, tiny_config(stages=["interpret"], **{"model.epochs": 1, "sae.epochs": 1}))
    table = (tmp_path / "interpretation.parquet").stat().st_mtime_ns
    # a named concept: which concepts qualify for the automatic choice depends on the tiny run
    summary = run_pipeline(tmp_path, tiny_config(stages=["steer"], **{"model.epochs": 1, "sae.epochs": 1,
                                                                     "steer.concepts": ["concept=jazz"]}))
    assert summary["steer"]["concept=jazz"]["share_before"] >= 0
    assert read_json(tmp_path / "steer.json")["accuracy_protocol"] == "per-user"  # said, whatever the run's
    assert (tmp_path / "interpretation.parquet").stat().st_mtime_ns == table


@pytest.mark.slow
def test_a_lightgcn_run_harvests_every_prefix_and_steers_through_the_sae_decoder(tmp_path: Path) -> None:
    from recsae.probe.store import ActivationStore

    cfg = tiny_config(stages=["steer"], **{"model.name": "lightgcn", "model.epochs": 1, "sae.epochs": 1,
                                           "sae.controls": False, "steer.concepts": ["concept=jazz"]})
    summary = run_pipeline(tmp_path, cfg)
    store = ActivationStore.open(tmp_path / "activations")
    history = make_run_split(cfg).history("test")
    # a row at every prefix of every user's history, not one per user
    assert store.n_rows == len(history.values) > 2 * int((history.lengths() > 0).sum())
    steered = summary["steer"]["concept=jazz"]
    assert steered["share_after"] != steered["share_before"] and (tmp_path / "steer.json").is_file()


def test_a_run_removes_temporaries_a_killed_run_left_in_its_folder(tmp_path: Path) -> None:
    (tmp_path / ".activations.partial-ab12cd34").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / ".model.safetensors.ab12cd34.tmp").touch()
    run_pipeline(tmp_path, tiny_config(stages=["model"], **{"model.epochs": 1}))
    assert not (tmp_path / ".activations.partial-ab12cd34").exists()
    assert not list((tmp_path / "model").glob(".*"))


@pytest.mark.parametrize(("options", "message"), [
    ({"model.epochs": 0}, "epochs must be >= 1"), ({"model.lr": float("nan")}, "lr must be a finite number"),
    ({"model.batch_size": 0}, "batch_size"), ({"model.name": "foo"}, "unknown model 'foo'"),
    ({"model.max_len": 0}, "max_len"), ({"sae.k": 65, "sae.expansion": 1}, r"k must be in \[1, 64\]"),
    ({"sae.balance": float("inf")}, "balance_rate"), ({"sae.kl_weight": -1.0}, "kl_weight"),
])
def test_bad_options_fail_the_option_check_before_any_work(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_options(RunConfig().override(options))



@pytest.mark.parametrize(("model", "protocol"), [("bpr", "random"),
                                                 ("sasrec", "leave-one-out (random order: no timestamps)")])
def test_data_without_timestamps_is_never_split_by_file_order(tmp_path: Path, model: str, protocol: str) -> None:
    # a play-count table: no time column, each user's items listed in increasing order
    lines = ["user_id,item_id,plays"] + [f"u{u},i{(u + t) % 20:02d},{t + 1}" for u in range(30) for t in range(6)]
    (tmp_path / "plays.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "plays.json").write_text('{"interactions": "plays.csv", "mapping": {"time": null}}')
    cfg = RunConfig(data=DatasetOptions(str(tmp_path / "plays.json")), model=ModelOptions(model), stages=())
    summary = run_pipeline(tmp_path / "run", cfg)
    assert summary["dataset"]["protocol"] == protocol
    assert summary["dataset"]["split"]["test_users"] == 30 and summary["dataset"]["split"]["order"] == "random"
    assert read_json(tmp_path / "run" / "summary.json")["dataset"]["protocol"] == protocol


def test_a_model_that_does_not_beat_most_popular_is_flagged_in_the_summary_and_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # every user holds the same five popular items: one BPR epoch cannot rank them as well as counting
    lines = ["user_id,item_id,timestamp"] + [f"u{u},i{k},{10 * u + k}" for u in range(60) for k in
                                             (0, 1, 2, 3, 4, 5 + u % 40, 45 + u % 30)]
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    cfg = RunConfig(data=DatasetOptions(str(tmp_path / "log.csv")), model=ModelOptions("bpr", epochs=1), protocol="random",
                    stages=("model",))
    with caplog.at_level("WARNING", logger="recsae"):
        summary = run_pipeline(tmp_path / "run", cfg)
    assert summary["model"]["test"]["ndcg@10"] <= summary["baseline"]["most_popular"]["test"]["ndcg@10"]
    assert read_json(tmp_path / "run" / "summary.json")["model"]["below_most_popular"] is True
    assert "bpr does not beat most-popular" in caplog.text


def test_the_reference_protocol_selects_tests_and_counts_rows_for_the_model_most_popular_and_splice(tmp_path: Path) -> None:
    from recsae.models.checkpoint import load_checkpoint
    from recsae.models.trainer import evaluate_model

    # 60 users, the t-th interaction of each on day t + u % 7: the global split by day holds out
    # the last days' rows, several of some users
    lines = ["user_id,item_id,timestamp"] + [f"u{u},i{(u + t) % 25},{86400 * (t + u % 7) + u}"
                                             for u in range(60) for t in range(8)]
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    cfg = RunConfig(data=DatasetOptions(str(tmp_path / "log.csv")), model=ModelOptions("bpr", epochs=2),
                    sae=SaeOptions(k=4, expansion=2, epochs=2, min_rows=0, controls=False),
                    protocol="global-time", eval_protocol="rechorus", stages=("model", "sae"))
    summary = run_pipeline(tmp_path / "run", cfg)
    rows = summary["dataset"]["evaluation"]
    assert summary["dataset"]["protocol"] == "global-time"
    assert rows["eval_protocol"] == "rechorus" and rows["n_rows"] > rows["n_users"] > 0
    assert summary["model"]["evaluation"]["n_rows"] == rows["n_rows"]
    model, _ = load_checkpoint(tmp_path / "run" / "model")
    split = make_run_split(cfg)
    assert summary["model"]["test"] == evaluate_model(model, split, "test", eval_protocol="rechorus").metrics
    # the splice table ranks in the same protocol: its original row is the model's test figure
    assert summary["sae"]["original"]["test"] == summary["model"]["test"]
    assert read_json(tmp_path / "run" / "config.json")["config"]["eval_protocol"] == "rechorus"
    assert stage_fingerprints(cfg)["model"] != stage_fingerprints(dataclasses.replace(cfg, eval_protocol="per-user"))["model"]
    # steering measures every held-out row too: before any edit, the model's test figure
    run_pipeline(tmp_path / "run", dataclasses.replace(cfg, stages=("model", "sae", "interpret", "steer")))
    steer = read_json(tmp_path / "run" / "steer.json")
    assert steer["accuracy_protocol"] == "rechorus" and steer["n_rows"] == rows["n_rows"] > steer["n_users"]
    assert steer["debias"]["before"]["ndcg"] == pytest.approx(summary["model"]["test"]["ndcg@10"])
