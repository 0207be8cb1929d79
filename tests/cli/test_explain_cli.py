"""``recsae explain`` end to end on the tiny run, against a local OpenAI-compatible server."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest

from fake_llm import fake_llm
from recsae.interpret.explain import ExplainConfig
from recsae.interpret.llm import LlmConfig
from recsae.io import read_json
from recsae.runs import Run

ARGS = ["--llm-model", "fake", "--n-latents", "3", "--examples", "3", "--probes", "5", "--concurrency", "1"]

SMALL = ExplainConfig(n_latents=3, n_examples=3, n_firing=5, n_silent=5)


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    return out


def test_explain_writes_scores_beside_its_controls_and_a_rerun_asks_nothing(run_cli, run_copy: Path) -> None:
    with fake_llm() as srv:
        code, out, err = run_cli(["explain", "--run", str(run_copy), "--llm-url", srv.url, *ARGS])
        assert code == 0, err
        first = (run_copy / "explain.json").read_bytes()
        n_first = len(srv.requests)
        code, out_again, _ = run_cli(["explain", "--run", str(run_copy), "--llm-url", srv.url, *ARGS])
        assert code == 0 and len(srv.requests) == n_first  # every answer from the cache
    assert (run_copy / "explain.json").read_bytes() == first and out_again == out
    result = read_json(run_copy / "explain.json")
    # every control of the interpretation, from the same run, and the shuffled explanations
    assert set(result["summary"]) == {"sae", "neurons", "random_sae", "random_model_sae", "shuffled"}
    assert all(result["summary"][f]["n"] == 3 for f in ("sae", "neurons", "random_sae", "random_model_sae"))
    # explanations of four families; own, shuffled and control scores; each distinct prompt asked once
    distinct = {json.dumps(r["payload"], sort_keys=True) for r in srv.requests}
    assert len(distinct) == n_first <= 4 * 3 + 5 * 3 * (5 + 5)
    assert result["sae_fingerprint"] == read_json(run_copy / "summary.json")["fingerprints"]["sae"]
    assert result["llm"] == {"base_url": srv.url, "model": "fake", "logprobs": False}
    for label in ("SAE latents: balanced accuracy", "neurons:", "untrained SAE:", "untrained-model SAE:",
                  "shuffled explanations:"):
        assert label in out
    assert not list(run_copy.rglob("*.tmp"))


def test_explain_of_named_latents_from_python(run_copy: Path) -> None:
    with fake_llm() as srv:
        first = Run.open(run_copy).explain(LlmConfig(srv.url, "fake"), SMALL, controls=False)
    units = [r["unit"] for r in first["latents"]]
    assert set(first["summary"]) == {"sae", "shuffled"} and len(units) == 3
    with fake_llm() as srv:
        chosen = units[:2]
        again = Run.open(run_copy).explain(LlmConfig(srv.url, "fake"), SMALL, latents=chosen, controls=False)
    assert [r["unit"] for r in again["latents"]] == chosen


def test_unreachable_server_is_a_one_line_error_and_writes_no_result(run_cli, run_copy: Path) -> None:
    code, _, err = run_cli(["explain", "--run", str(run_copy), "--llm-url", "http://127.0.0.1:9/v1", *ARGS])
    assert code == 2 and "cannot reach the LLM server at http://127.0.0.1:9/v1/chat/completions" in err
    assert "Traceback" not in err and not (run_copy / "explain.json").exists()


def test_run_without_an_sae_stage_is_refused(run_cli, tmp_path: Path, tiny_run: Path) -> None:
    out = tmp_path / "bare"
    out.mkdir()
    shutil.copy(tiny_run / "config.json", out / "config.json")
    code, _, err = run_cli(["explain", "--run", str(out), "--llm-url", "http://127.0.0.1:9/v1", *ARGS])
    assert code == 2 and "no finished sae stage" in err


def test_report_shows_the_explanations_and_notes_them_stale_after_the_sae_changed(run_cli, run_copy: Path) -> None:
    with fake_llm() as srv:
        code, out, err = run_cli(["explain", "--run", str(run_copy), "--llm-url", srv.url, *ARGS])
    assert code == 0, err
    assert "report:" in out
    page = (run_copy / "report" / "index.html").read_text()
    result = read_json(run_copy / "explain.json")
    first = next(r for r in result["latents"] if r["family"] == "sae")
    assert "Explanations in words (LLM)" in page and "shuffled explanations" in page
    assert json.dumps(first["explanation"])[1:-1] in page  # in the latent view's data
    assert f"LLM: {html.escape(first['explanation'])} (" in page  # and under the rule in the latent table
    summary = read_json(run_copy / "summary.json")
    summary["fingerprints"]["sae"] = "another-sae"
    (run_copy / "summary.json").write_text(json.dumps(summary))
    code, _, err = run_cli(["report", "--run", str(run_copy)])
    page = (run_copy / "report" / "index.html").read_text()
    assert code == 0, err
    assert "explain.json was made for an earlier SAE" in page and json.dumps(first["explanation"])[1:-1] not in page


def test_no_latent_with_enough_rows_says_so(run_cli, run_copy: Path) -> None:
    with fake_llm() as srv:
        code, out, err = run_cli(["explain", "--run", str(run_copy), "--llm-url", srv.url, *ARGS, "--probes", "100000"])
    assert code == 0, err
    assert "no SAE latent fires on enough rows" in out and not srv.requests
    assert read_json(run_copy / "explain.json")["summary"]["sae"]["n"] == 0


def test_report_skips_explanation_records_it_cannot_read(run_cli, run_copy: Path) -> None:
    # a hand-edited explain.json for the current SAE: a record without its latent id, and a list
    good = {"family": "sae", "unit": 1, "explanation": "Histories with noir.", "balanced_accuracy": 0.75}
    (run_copy / "explain.json").write_text(json.dumps({
        "sae_fingerprint": read_json(run_copy / "summary.json")["fingerprints"]["sae"],
        "summary": {}, "latents": [good, {"family": "sae", "explanation": "no id"}, ["not", "a", "record"]]}))
    code, _, err = run_cli(["report", "--run", str(run_copy)])
    page = (run_copy / "report" / "index.html").read_text()
    assert code == 0, err
    assert "latent 1 (0.75): Histories with noir." in page and "no id" not in page
