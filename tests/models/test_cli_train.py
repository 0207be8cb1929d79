"""`recsae train` and `recsae evaluate` end to end on the built-in synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsae.runs import Run


def write_log(path: Path) -> Path:
    """A tiny interaction table: 60 users walking a 25-item catalogue."""
    lines = ["user_id,item_id,timestamp"]
    for u in range(60):
        lines += [f"u{u},i{(u + t) % 25},{1000 * u + t}" for t in range(8)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_train_then_evaluate_reports_the_same_test_metrics(tmp_path: Path, run_cli) -> None:
    data = write_log(tmp_path / "log.csv")
    ck = tmp_path / "sasrec"
    code, out, err = run_cli(["train", "--model", "sasrec", "--dataset", str(data), "--out", str(ck), "--epochs", "2",
                          "--dim", "8", "--max-len", "10", "--layers", "1", "--device", "cpu"])
    assert code == 0, err
    trained = json.loads(out)
    assert trained["epochs"] == 2 and (ck / "config.json").is_file() and (ck / "model.safetensors").is_file()
    code, out, err = run_cli(["evaluate", str(ck)])
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["same_data"] and evaluated["metrics"] == trained["test"]


def test_evaluate_reloads_a_checkpoint_with_its_recorded_loader_options(
    tmp_path: Path, run_cli
) -> None:
    from recsae.data.registry import DatasetOptions
    from recsae.data.split import make_split
    from recsae.models.registry import model_config
    from recsae.models.trainer import TrainConfig, train_model

    options = {"n_users": 40, "n_items": 60}  # not the synthetic defaults: the data only loads with them
    split = make_split(DatasetOptions().load(0, **options), "auto")
    source = DatasetOptions().to_dict() | {"protocol": "auto", "seed": 0, "options": options}
    result = train_model("bpr", split, model_config("bpr", dim=4), tmp_path / "bpr", 0, "cpu",
                         TrainConfig(epochs=1), data_source=source)
    code, out, err = run_cli(["evaluate", str(tmp_path / "bpr"), "--device", "cpu"])
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["same_data"] and evaluated["metrics"] == result.test


def test_an_option_the_model_lacks_exits_2_with_one_line(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["train", "--model", "bpr", "--max-len", "50", "--out", str(tmp_path)])
    assert code == 2 and err.startswith("error:") and "max_len" in err and "Traceback" not in err


def test_a_model_option_the_model_lacks_exits_2_with_one_line_naming_those_it_takes(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["train", "--model", "bpr", "--model-option", "n_heads=2", "--out", str(tmp_path)])
    assert code == 2 and err.startswith("error:") and "n_heads" in err and "dim" in err and "Traceback" not in err


def test_evaluate_a_folder_without_checkpoint_exits_2(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["evaluate", str(tmp_path)])
    assert code == 2 and "config.json" in err


def test_unknown_model_exits_2(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["train", "--model", "nope", "--out", str(tmp_path)])
    assert code == 2 and "sasrec" in err


@pytest.mark.slow
def test_train_on_a_named_dataset_takes_its_preset_unless_an_option_is_given(
    tmp_path: Path, run_cli
) -> None:
    from recsae.io import read_json
    from recsae.pipeline import preset

    model_opts, train_opts = preset("synthetic", "sasrec")
    assert model_opts and train_opts, "the synthetic SASRec preset this test relies on is gone"
    code, _, err = run_cli(["train", "--dataset", "synthetic", "--out", str(tmp_path / "a"), "--epochs", "1",
                        "--dim", "8", "--device", "cpu"])
    assert code == 0, err
    cfg = read_json(tmp_path / "a" / "config.json")
    assert {k: cfg["model"]["config"][k] for k in model_opts} == model_opts
    assert {k: cfg["train"][k] for k in train_opts} == train_opts
    assert cfg["model"]["config"]["dim"] == 8
    # --model-option reaches any field of the model's config; a named flag wins over it
    code, _, err = run_cli(["train", "--dataset", "synthetic", "--out", str(tmp_path / "b"), "--epochs", "1",
                        "--dim", "8", "--lr", "0.0007", "--max-len", "20", "--label-smoothing", "0.1",
                        "--model-option", "n_heads=2", "--model-option", "label_smoothing=0.3", "--device", "cpu"])
    assert code == 0, err
    cfg = read_json(tmp_path / "b" / "config.json")
    assert cfg["train"]["lr"] == 0.0007 and cfg["model"]["config"]["max_len"] == 20
    assert cfg["model"]["config"]["label_smoothing"] == 0.1 and cfg["model"]["config"]["n_heads"] == 2


def test_help_shows_where_unset_options_take_their_values(run_cli) -> None:
    # bracketed text in a help string is rich markup and vanishes from the rendered help
    code, out, _ = run_cli(["train", "--help"])
    assert code == 0
    text = " ".join(out.replace("│", " ").split())
    assert "Adam learning rate. Default: the preset's, else from the data size." in text
    assert "Rows per step. Default: the preset's, else from the data size." in text


def test_train_in_the_reference_protocol_reports_its_rows_and_evaluate_and_the_sae_commands_reuse_it(tmp_path: Path, run_cli) -> None:
    # 60 users, the t-th interaction of each on day t + u % 7: a global split by day holds out
    # the last days' rows, several of some users
    lines = ["user_id,item_id,timestamp"]
    for u in range(60):
        lines += [f"u{u},i{(u + t) % 25},{86400 * (t + u % 7) + u}" for t in range(8)]
    data = tmp_path / "log.csv"
    data.write_text("\n".join(lines) + "\n")
    ck = tmp_path / "bpr"
    code, out, err = run_cli(["train", "--model", "bpr", "--dataset", str(data), "--out", str(ck), "--epochs", "2",
                              "--dim", "8", "--device", "cpu", "--protocol", "global-time", "--eval-protocol", "rechorus"])
    assert code == 0, err
    trained = json.loads(out)
    evaluation = trained["evaluation"]
    assert evaluation["eval_protocol"] == "rechorus" and evaluation["n_rows"] > evaluation["n_users"] > 0
    code, out, err = run_cli(["evaluate", str(ck), "--device", "cpu"])
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["protocol"]["n_rows"] == trained["evaluation"]["n_rows"]
    assert evaluated["metrics"] == trained["test"]
    # the SAE commands splice in the protocol the checkpoint was trained in
    code, _, err = run_cli(["sae", "train", "--checkpoint", str(ck), "--out", str(tmp_path / "sae"), "--k", "2",
                            "--expansion", "2", "--epochs", "1", "--min-rows", "0", "--device", "cpu"])
    assert code == 0, err
    splice = json.loads((tmp_path / "sae" / "splice.json").read_text())
    assert splice["protocol"]["eval_protocol"] == "rechorus"
    assert splice["conditions"]["original"]["metrics"] == trained["test"]
    code, _, err = run_cli(["sae", "eval", "--checkpoint", str(ck), "--sae", str(tmp_path / "sae" / "sae"),
                            "--out", str(tmp_path / "again.json"), "--device", "cpu"])
    assert code == 0, err
    assert json.loads((tmp_path / "again.json").read_text())["conditions"] == splice["conditions"]
    # so does a run from the checkpoint that names no protocol
    code, _, err = run_cli(["run", "--checkpoint", str(ck), "--out", str(tmp_path / "run"), "--stages", "model,sae",
                            "--k", "2", "--expansion", "2", "--sae-epochs", "1", "--sae-min-rows", "0", "--no-controls",
                            "--device", "cpu"])
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["eval_protocol"] == "rechorus"
    assert summary["model"]["test"] == trained["test"]
    spliced = json.loads((tmp_path / "run" / "splice.json").read_text())
    assert spliced["conditions"]["original"]["metrics"] == trained["test"]
    # and one that names per-user gets it, from the command line and when the run is opened again
    code, _, err = run_cli(["run", "--checkpoint", str(ck), "--out", str(tmp_path / "per-user"), "--stages", "model",
                            "--eval-protocol", "per-user", "--device", "cpu"])
    assert code == 0, err
    summary = json.loads((tmp_path / "per-user" / "summary.json").read_text())
    assert summary["config"]["eval_protocol"] == "per-user" and "evaluation" not in summary["model"]
    assert Run.open(tmp_path / "per-user").config.eval_protocol == "per-user"
    assert Run.open(tmp_path / "run").config.eval_protocol == "rechorus"
