"""``recsae.run`` and ``Run.open``: a run folder from Python, with what every stage left."""

from __future__ import annotations

from pathlib import Path

import pytest

import recsae
from recsae.errors import ConfigError, DataError
from recsae.io import read_json, write_json
from recsae.sources import weights_digest

TINY = {"n_users": 160, "n_items": 120, "n_concepts": 6, "min_seq_len": 12, "max_seq_len": 20}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> recsae.Run:
    out = tmp_path_factory.mktemp("api") / "run"
    return recsae.run(out, data_kwargs=TINY, model={"epochs": 3}, interpret={"causal": False}, seed=3,
                      sae={"k": 8, "expansion": 4, "epochs": 2, "min_rows": 0, "controls": False})


@pytest.mark.slow
def test_an_opened_run_gives_what_each_stage_left(run: recsae.Run) -> None:
    opened = recsae.Run.open(run.out)
    summary = read_json(run.out / "summary.json")
    assert opened.config == run.config and opened.config.sae.k == 8
    assert weights_digest(opened.model) == summary["model"]["weights_sha256"]
    assert opened.sae.cfg.k == 8 and opened.sae.cfg.d_in == opened.model.dim
    assert opened.store.n_rows > 0 and opened.store.d == opened.model.dim
    assert len(opened.interpretation) == summary["interpret"]["n_alive"] + opened.interpretation["alive"].eq(False).sum()
    assert opened.split.n_users == TINY["n_users"]
    assert opened.report() == run.out / "report" / "index.html"


@pytest.mark.slow
def test_steering_a_concept_raises_its_share_beyond_the_random_control(run: recsae.Run) -> None:
    result = run.steer("concept=jazz", alpha=0.1)
    share = next(r for r in result.table() if r["metric"] == "share@10[concept=jazz]")
    assert share["after"] > share["before"] and share["after"] > share["random_control"]
    assert "share@10[concept=jazz]" in result.text()


@pytest.mark.slow
def test_an_unknown_concept_is_refused_before_any_work(run: recsae.Run) -> None:
    with pytest.raises(ConfigError, match="concept"):
        run.steer("concept=no-such-thing", alpha=0.1)


@pytest.mark.slow
def test_a_model_that_changed_since_the_run_is_refused(run: recsae.Run, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run.out, copy)
    summary = read_json(copy / "summary.json")
    summary["model"]["weights_sha256"] = "0" * 64
    write_json(copy / "summary.json", summary)
    with pytest.raises(DataError, match="differs from the one this run used"):
        _ = recsae.Run.open(copy).model


def test_opening_what_is_not_a_run_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run folder not found"):
        recsae.Run.open(tmp_path / "missing")
    with pytest.raises(DataError, match="not a run folder"):
        recsae.Run.open(tmp_path)


def test_a_stage_the_run_has_not_finished_is_named(tmp_path: Path) -> None:
    out = tmp_path / "run"
    opened = recsae.run(out, data_kwargs=TINY, stages=[])  # the data stage only
    assert not opened.has("sae")
    with pytest.raises(DataError, match="no finished sae stage"):
        _ = opened.sae


def test_the_package_exposes_the_api_lazily() -> None:
    import subprocess
    import sys

    code = "import sys, recsae; assert 'torch' not in sys.modules; recsae.RunConfig; recsae.PRESETS; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
