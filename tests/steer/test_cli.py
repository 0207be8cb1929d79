from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from recsae.cli import app


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder on the built-in synthetic data: untrained BPR, random SAE, a hand-made
    interpretation table (enough for the command's plumbing)."""
    from fake_run_folder import write_untrained_run

    out = write_untrained_run(tmp_path_factory.mktemp("run"))
    pd.DataFrame(
        {
            "latent": [3, 5, 9],
            "rule": ["concept=noir in top-10 recs", "last item has concept=noir", "concept=jazz in top-10 recs"],
            "rule_concepts": [["concept=noir"], ["concept=noir"], ["concept=jazz"]],
            "op": ["", "", ""],
            "confidence": [0.9, 0.85, 0.8],
            "interpretable": [True, True, True],
        }
    ).to_parquet(out / "interpretation.parquet")
    return out


@pytest.mark.slow
def test_steer_concept_prints_lists_and_effect_table_and_writes_json(run_dir: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "steer.json"
    res = CliRunner().invoke(
        app,
        ["steer", "--run", str(run_dir), "--concept", "concept=noir", "--latents-from", "rules", "--alpha", "0.5",
         "--max-users", "100", "--n-random", "2", "--users", "2", "--curve", "--json", str(out_json)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "AddDirection(latents=(3, 5), alpha=0.5)" in res.output
    assert "share@10[concept=noir]" in res.output and "ndcg@10" in res.output
    assert res.output.count("user ") >= 2 and "dose-response" in res.output
    data = json.loads(out_json.read_text())
    assert data["edit"]["latents"] == [3, 5] and len(data["comparison"]["random_latents"]) == 2
    assert [r["strength"] for r in data["dose_response"]][:2] == [0.0, 0.005]


@pytest.mark.slow
def test_steer_concept_by_default_edits_the_latents_whose_decoders_raise_its_items(run_dir: Path) -> None:
    from recsae.runs import Run
    from recsae.steer.targets import decoder_selectivity, selective_latents

    inputs = Run.open(run_dir, None, "cpu")
    expected = selective_latents(decoder_selectivity(inputs.model, inputs.sae, inputs.items.mask("concept=noir")), 4)
    res = CliRunner().invoke(
        app, ["steer", "--run", str(run_dir), "--concept", "concept=noir", "--n-latents", "4", "--alpha", "0.1",
              "--max-users", "50", "--n-random", "1", "--users", "0"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"AddDirection(latents={expected}, alpha=0.1)" in res.output


@pytest.mark.slow
def test_steer_latent_scale_zero_ablates_and_measures_its_rule_concept(run_dir: Path) -> None:
    res = CliRunner().invoke(
        app, ["steer", "--run", str(run_dir), "--latent", "9", "--scale", "0", "--max-users", "100", "--n-random", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "Scale(latents=(9,), factor=0.0)" in res.output and "share@10[concept=jazz]" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concept", "concept=horror", "--latents-from", "rules", "--alpha", "0.3"], "no interpretable latent has a rule naming it"),
        (["--concept", "concept=western-noir", "--alpha", "0.3"], "no item has 'concept=western-noir'; closest: concept=western"),
        (["--concept", "concept=Horor", "--alpha", "0.3"], "closest: concept=horror"),
        (["--concept", "genre=Film-Noir", "--alpha", "0.3"], "no concepts genre=... (it has concept, item, pop); closest: concept=noir"),
        (["--concept", "concept=noir", "--latents-from", "vibes", "--alpha", "0.3"], "--latents-from must be one of"),
        (["--latent", "64", "--scale", "0"], "0..63"),
        (["--latent", "1"], "exactly one of"),
        (["--latent", "1", "--alpha", "0.2", "--scale", "0"], "exactly one of"),
        (["--latent", "1", "--concept", "mood=dark", "--scale", "0"], "no concepts mood=..."),
    ],
)
def test_bad_targets_exit_2_with_one_line_naming_the_problem(
    run_dir: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from recsae.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["steer", "--run", str(run_dir), *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_a_damaged_interpretation_table_exits_2_naming_the_file(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from recsae.cli import main

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "interpretation.parquet").write_bytes(b"PAR1 damaged")
    with pytest.raises(SystemExit) as exit_info:
        main(["steer", "--run", str(run), "--latent", "3", "--scale", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {run / 'interpretation.parquet'}: not a readable Parquet file")


def test_help_says_which_options_go_together() -> None:
    res = CliRunner().invoke(app, ["steer", "--help"], env={"COLUMNS": "400", "TERM": "dumb"})
    text = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 0
    assert "only applies with --concept" in text
    assert text.count("Give exactly one of --alpha, --scale and --clamp.") == 3


@pytest.mark.parametrize("option", ["--alpha", "--scale", "--clamp"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_strength_exits_2_with_one_line_before_the_run_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    from recsae.cli import main

    # the run folder does not exist: the strength is checked first
    with pytest.raises(SystemExit) as exit_info:
        main(["steer", "--run", str(tmp_path / "none"), "--latent", "0", option, value])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {option} must be a finite number, got {float(value)}\n"


@pytest.mark.parametrize("where", ["folder", "below a file", "read-only folder"])
def test_an_unwritable_json_path_exits_2_before_the_run_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    import os

    from recsae.cli import main

    if where == "folder":
        json_out, named = tmp_path, tmp_path
    elif where == "below a file":
        (tmp_path / "f").write_text("")
        json_out, named = tmp_path / "f" / "steer.json", tmp_path / "f"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "ro").mkdir(mode=0o555)
        json_out, named = tmp_path / "ro" / "steer.json", tmp_path / "ro"
    # the run folder does not exist: the --json path is checked first
    with pytest.raises(SystemExit) as exit_info:
        main(["steer", "--run", str(tmp_path / "none"), "--latent", "0", "--scale", "0", "--json", str(json_out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {named}: ") and err.count("\n") == 1
