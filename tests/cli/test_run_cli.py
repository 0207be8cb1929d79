"""The ``recsae run`` command: help, and user errors as one line with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def recsae(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recsae", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_the_run_options() -> None:
    result = recsae("run", "--help")
    assert result.returncode == 0
    for option in ("--dataset", "--data-root", "--out", "--seed"):
        assert option in result.stdout


def test_unknown_dataset_fails_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    result = recsae("run", "--dataset", "no-such-set", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "unknown dataset 'no-such-set'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists(), "a failed run must leave no run folder behind"


def test_run_of_the_model_stage_writes_summary_json_and_trains_with_the_given_model_options(tmp_path: Path) -> None:
    import json

    out = tmp_path / "out"
    result = recsae("run", "--out", str(out), "--stages", "model", "--epochs", "1", "--seed", "1",
                    "--model-option", "n_blocks=1", "--model-option", "loss=bce")
    assert result.returncode == 0, result.stderr
    assert (out / "summary.json").is_file()
    assert "test NDCG@10" in result.stdout
    trained = json.loads((out / "model" / "config.json").read_text())["model"]["config"]
    assert (trained["n_blocks"], trained["loss"]) == (1, "bce")
    assert json.loads((out / "config.json").read_text())["config"]["model"]["options"] == {"n_blocks": 1, "loss": "bce"}


def test_key_values_read_json_values_and_keep_other_text() -> None:
    from recsae.cli.train import key_values

    assert key_values(["a=0.2", "b=3", "c=bce", "d=[1, 2]", "e=true", "f="], "--x") == {
        "a": 0.2, "b": 3, "c": "bce", "d": [1, 2], "e": True, "f": ""}


def test_headline_reports_each_interpretation_figure_the_summary_has() -> None:
    from recsae.cli.run import _headline

    interp = {"n_interpretable": 5, "n_alive": 10, "share_interpretable": 0.5,
              "neurons": {"share_interpretable": 0.25}, "random_sae": {"share_interpretable": 0.4},
              "explained_by_interpretable": {"sae": 0.8, "neurons": 0.125, "random_sae": None}}
    text = _headline({"interpret": interp})
    assert "interpretable latents: 5/10 alive (50.0%; neurons 25.0%, untrained SAE 40.0%)" in text
    assert "variance rebuilt from the interpretable units alone: SAE 80.0%, neurons 12.5%" in text
    assert "untrained SAE" not in text.splitlines()[-1]  # a figure that could not be computed is left out
    del interp["explained_by_interpretable"]  # summaries written before the key existed
    assert "variance rebuilt" not in _headline({"interpret": interp})


def test_headline_and_interpret_command_print_the_same_interpretation_lines() -> None:
    from recsae.cli.interpret import summary_lines
    from recsae.cli.run import _headline

    interp = {"n_interpretable": 5, "n_alive": 10, "share_interpretable": 0.5,
              "neurons": {"share_interpretable": 0.25}, "random_sae": {"share_interpretable": 0.4},
              "coherence": {"sae": 0.7, "neurons": 0.6, "random_sae": 0.5},
              "explained_by_interpretable": {"sae": 0.8, "neurons": 0.125, "random_sae": 0.3},
              "planted_recovered": 1.0}
    shared = summary_lines(interp)
    assert shared == [ln for ln in summary_lines(interp, coherence=True) if not ln.startswith("coherence")]
    assert _headline({"interpret": interp}).splitlines() == shared
    assert "coherence: SAE 0.70, neurons 0.60, untrained SAE 0.50" in summary_lines(interp, coherence=True)
    # a summary missing figures prints placeholders instead of failing
    assert summary_lines({}) == ["interpretable latents: ?/? alive (?; neurons ?, untrained SAE ?)"]


def test_headline_prints_a_dash_for_figures_stored_as_null() -> None:
    from recsae.cli.run import _headline

    # NaN figures (e.g. an NDCG retention with a zero baseline) read back from strict JSON as null
    summary = {"model": {"name": "sasrec", "test": {"ndcg@10": None}},
               "sae": {"fvu": 0.1, "retention": None, "top10_overlap": float("nan"), "random_sae": {"top10_overlap": 0.2}},
               "steer": {"genre=X": {"share_before": 0.1, "share_after": None, "random_control_share_after": 0.1,
                                     "ndcg_before": 0.2, "ndcg_after": 0.2, "ndcg_ratio_ci": [None, 1.0]}}}
    lines = _headline(summary).splitlines()
    assert lines[0] == "sasrec: test NDCG@10 - (most popular -)"
    assert lines[1] == "SAE: FVU 0.1000, NDCG@10 retention -, top-10 overlap - (random SAE 0.200)"
    assert "0.100 -> - " in lines[2] and lines[2].endswith("(ratio 95 % interval --1.000)")


def _exit_code_and_stderr(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    from recsae.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


BAD_RUN_OPTIONS = [
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--lr", "-1"], "lr must be a finite number > 0"),
    (["--lr", "nan"], "lr must be a finite number > 0"),
    (["--lr", "inf"], "lr must be a finite number > 0"),
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--model", "foo"], "unknown model 'foo'"),
    (["--k", "0"], "k and expansion must be >= 1"),
    (["--k", "5000", "--expansion", "1"], "k must be in [1, 64]"),  # the default model has d = 64
    (["--sae-balance", "nan"], "balance_rate must be a finite number"),
    (["--model-option", "dropout"], "--model-option 'dropout': expected KEY=VALUE"),
    (["--model-option", "=0.1"], "expected KEY=VALUE"),
    (["--model-option", "dropuot=0.1"], "has no option(s) dropuot"),
    (["--model-option", "label_smoothing=2"], "label_smoothing must be in [0, 1)"),
]


@pytest.mark.parametrize(("options", "message"), BAD_RUN_OPTIONS)
def test_bad_run_options_fail_in_one_line_before_the_run_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    code, err = _exit_code_and_stderr(["run", "--out", str(tmp_path / "out"), *options], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_unknown_concept_fails_in_one_line_naming_the_closest_before_the_run_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # MovieLens's genre on the synthetic data, whose items carry concept=noir
    code, err = _exit_code_and_stderr(["run", "--out", str(tmp_path / "out"), "--concept", "genre=Film-Noir"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert "'genre=Film-Noir'" in errors[0] and "closest: concept=noir" in errors[0]
    assert "recsae data stats --concepts" in errors[0]
    assert not (tmp_path / "out").exists()


def test_bad_run_options_leave_a_finished_run_folder_byte_for_byte_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    for name in ("summary.json", "config.json", "model/model.safetensors", "sae/cfg.json", ".x.json.ab12cd34.tmp"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(f"content of {name}")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()}
    for options, _ in BAD_RUN_OPTIONS:
        code, _ = _exit_code_and_stderr(["run", "--out", str(run), *options], capsys)
        assert code == 2, options
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()} == before


def test_an_out_that_is_a_file_or_lies_below_one_fails_in_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    code, err = _exit_code_and_stderr(["run", "--out", str(file), "--stages", "model"], capsys)
    assert (code, err) == (2, f"error: {file}: exists and is not a folder\n")
    code, err = _exit_code_and_stderr(["run", "--out", str(file / "run"), "--stages", "model"], capsys)
    assert (code, err) == (2, f"error: {file}: exists and is not a folder (so {file / 'run'} cannot be made)\n")
    assert file.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_out_in_a_read_only_folder_fails_in_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        code, err = _exit_code_and_stderr(["run", "--out", str(locked / "run"), "--stages", "model"], capsys)
    finally:
        locked.chmod(0o700)
    assert (code, err) == (2, f"error: {locked}: permission denied: cannot write into this folder\n")


def test_headline_puts_faithful_shares_shuffled_explanations_and_stability_beside_the_controls() -> None:
    from recsae.cli.interpret import summary_lines

    interp = {"n_interpretable": 5, "n_alive": 10, "share_interpretable": 0.5,
              "neurons": {"share_interpretable": 0.25}, "random_sae": {"share_interpretable": 0.4},
              "random_model_sae": {"share_interpretable": 0.1},
              "faithful": {"sae": {"n": 4, "share": 0.4}, "neurons": {"n": 1, "share": 0.1},
                           "random_sae": {"n": 1, "share": 0.1}, "random_model_sae": {"n": 0, "share": 0.0}},
              "shuffled_control": {"median_confidence": 0.51},
              "seed_stability": {"trained": {"share": 0.6}, "floor": {"share": 0.0}}}
    lines = summary_lines(interp)
    assert lines[0].endswith("untrained SAE 40.0%, untrained-model SAE 10.0%)")
    assert ("causally faithful latents: 4 (40.0%; neurons 10.0%, untrained SAE 10.0%, untrained-model SAE 0.0%)"
            in lines)
    assert "shuffled explanations: median confidence 0.51 (chance 0.50)" in lines
    assert "latents found again with another seed: 60.0% (two untrained SAEs 0.0%)" in lines


@pytest.mark.parametrize("command", [("run",), ("train",), ("sae", "train", "--checkpoint", "nowhere")])
def test_threads_below_one_fail_in_one_line_before_any_write(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = recsae(*command, "--threads", "0", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.strip() == "error: --threads must be >= 1, got 0"
    assert not (tmp_path / "out").exists()


def test_headline_warns_when_the_model_is_not_above_most_popular() -> None:
    from recsae.cli.run import _headline

    summary = {"model": {"name": "bpr", "test": {"ndcg@10": 0.1}, "below_most_popular": True},
               "baseline": {"most_popular": {"test": {"ndcg@10": 0.3}}}}
    assert _headline(summary) == "bpr: test NDCG@10 0.1000 (most popular 0.3000) - warning: not above most popular"
    summary["model"]["below_most_popular"] = False
    assert "warning" not in _headline(summary)


_LOG = "user_id,item_id,timestamp\n"
_TRAIN = "user_id\titem_id\ttime\n"


@pytest.mark.parametrize(
    ("files", "dataset", "expected"),
    [
        ({"log.csv": _LOG + "".join(f"{u},{u},{u}\n" for u in range(1, 9))}, "log.csv",
         "gives no valid interactions (leave-one-out split)"),
        ({"log.csv": _LOG + "".join(f"1,{i},{i}\n" for i in range(1, 9))}, "log.csv", "has a single user"),
        ({"log.csv": _LOG + "1,2,3\n1,3,nan\n"}, "log.csv", "line 3, field 'timestamp'"),
        ({"log.csv.gz": b"\x1f\x8b\x08\x00" + bytes(40)}, "log.csv.gz", "cannot read (damaged or truncated archive?)"),
        ({"train.csv": _TRAIN + "".join(f"{u}\t{i}\t{i}\n" for u in (1, 2) for i in (1, 2, 3))}, ".",
         "no validation part (missing"),
        ({"train.csv": _TRAIN + "1\t2\t3\n99999999999999999999\t3\t4\n"}, ".", "line 3, field 'user_id'"),
    ],
    ids=["one-interaction-each", "single-user", "nan-timestamp", "corrupt-gz", "rechorus-train-only", "id-beyond-int64"],
)
def test_unusable_data_fails_with_one_line_before_the_run_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str | bytes], dataset: str, expected: str
) -> None:
    from recsae.cli import main

    data = tmp_path / "data"
    data.mkdir()
    for name, content in files.items():
        path = data / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--dataset", str(data / dataset), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err
    assert not out.exists()


def test_run_options_have_no_defaults_of_their_own_so_the_run_config_supplies_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer.main

    import recsae.pipeline
    from recsae.cli import app
    from recsae.cli.run import run
    from recsae.config import RunConfig

    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    own = {p.name: p.default for p in command.params if p.default not in (None, False)}
    assert own == {"out": Path("runs/latest")}  # where to write, and --force, are not run options
    # and a run given no option runs RunConfig() exactly
    seen: list[RunConfig] = []
    monkeypatch.setattr(recsae.pipeline, "run_pipeline", lambda out, cfg, force=False, world=None: seen.append(cfg) or {})
    run(out=tmp_path / "out")
    assert seen == [RunConfig()]
