from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from interpret_toy import Toy

from recsae.interpret import InterpretConfig, interpret, write_interpretation
from recsae.interpret.baselines import (
    coherence,
    concept_selectivity,
    decoder_concepts,
    explained_variance,
    planted_recovery,
    top_decoder_items,
    top_rows,
)
from recsae.io import read_json


def test_known_rules_are_recovered_with_high_confidence_and_noise_is_not(toy: Toy) -> None:
    res = interpret(toy.ctx, toy.meta, toy.counts, toy.acts, reps=toy.reps)
    t = res.table.set_index("latent")
    assert t.loc[0, "rule"] == "last item has genre=Horror"
    assert t.loc[0, "kind"] == "input"
    assert t.loc[0, "confidence"] > 0.99 and t.loc[0, "val_f1"] > 0.99
    assert t.loc[0, "interpretable"]
    assert t.loc[2, "rule"] == "≥60% of top-10 recs have genre=Comedy"
    assert t.loc[2, "kind"] == "output" and t.loc[2, "interpretable"]
    assert not t.loc[1, "interpretable"] and t.loc[1, "confidence"] < 0.7
    assert not t.loc[3, "alive"] and not t.loc[3, "interpretable"]
    assert res.summary["n_alive"] == 3 and res.summary["n_interpretable"] == 2
    assert res.summary["n_testable"] == 3  # alive with >= 20 strongly firing held-out rows
    assert np.isclose(res.summary["share_interpretable"], 2 / 3)
    # the horror latent's example items are horror films
    assert all(title.startswith("Horror") for title in t.loc[0, "example_titles"])


def test_summary_has_baselines_coherence_and_is_written(toy: Toy, tmp_path) -> None:
    neurons = toy.reps  # dense units: top decile = active
    rand = sp.csr_matrix(np.where(np.random.default_rng(0).random((len(neurons), 4)) < 0.1, 1.0, 0.0))
    res = interpret(
        toy.ctx, toy.meta, toy.counts, toy.acts, neuron_acts=neurons, random_acts=rand, reps=toy.reps,
        sae_decoder=np.eye(4, 6), item_emb=np.random.default_rng(1).normal(size=(41, 6)),
    )
    s = res.summary
    for key in ("n_alive", "n_interpretable", "share_interpretable", "coherence"):
        assert key in s
    assert set(s["coherence"]) == {"sae", "neurons", "random_sae"}
    assert s["random_sae"]["share_interpretable"] == 0.0
    assert s["n_fit_users"] + s["n_val_users"] == len(np.unique(toy.ctx.users))
    assert len(res.table.loc[0, "top_items"]) == 5
    write_interpretation(res, tmp_path)
    back = pd.read_parquet(tmp_path / "interpretation.parquet")
    assert len(back) == 4 and list(back.loc[0, "top_users"]) == list(res.table.loc[0, "top_users"])
    js = read_json(tmp_path / "interpret.json")
    assert js["neurons"]["share_interpretable"] == s["neurons"]["share_interpretable"]
    assert js["config"]["min_confidence"] == InterpretConfig().min_confidence


def test_planted_concepts_are_matched_by_the_latent_whose_rule_names_them(toy: Toy) -> None:
    res = interpret(toy.ctx, toy.meta, toy.counts, toy.acts, cfg=InterpretConfig(planted_attribute="genre"))
    per = {p["concept"]: p for p in res.summary["planted"]}
    assert per["genre=Horror"]["best_latent"] == 0 and per["genre=Horror"]["recovered"]
    assert per["genre=Comedy"]["best_latent"] == 2
    assert per["genre=Western"]["best_latent"] is None and not per["genre=Western"]["recovered"]


def test_top_rows_are_sorted_and_padded() -> None:
    acts = sp.csr_matrix(np.array([[0.5, 0], [2.0, 0], [1.0, 3.0]], dtype=np.float32))
    top = top_rows(acts, 3)
    assert top.rows.tolist() == [[1, 2, 0], [2, -1, -1]]
    dense = top_rows(acts.toarray(), 2)
    assert dense.rows[0].tolist() == [1, 2] and dense.rows[1, 0] == 2  # row 0/1 tie for unit 1


def test_coherence_is_one_for_identical_and_zero_for_orthogonal_rows() -> None:
    reps = np.array([[1.0, 0], [2.0, 0], [0, 1.0], [3.0, 0]])
    c = coherence(reps, np.array([[0, 1, 3], [0, 2, -1], [1, -1, -1]]))
    assert np.isclose(c[0], 1.0) and np.isclose(c[1], 0.0) and np.isnan(c[2])
    # centred on the common direction, rows spread around it are dissimilar
    spread = np.array([[1.0, 1.0], [1.0, -1.0], [1.0, 0.0]])
    assert coherence(spread, np.array([[0, 1]]))[0] == 0.0
    assert np.isclose(coherence(spread + np.array([10.0, 0.0]), np.array([[0, 1]]), center=np.array([11.0, 0.0]))[0], -1.0)


def test_top_decoder_items_rank_by_dot_product_and_skip_padding() -> None:
    emb = np.array([[9.0, 9.0], [1.0, 0], [0, 1.0], [2.0, 0]])
    top = top_decoder_items(np.array([[1.0, 0], [0, 1.0]]), emb, 2, chunk=1)
    assert top[0].tolist() == [3, 1] and top[1, 0] == 2  # item 0 (padding) never listed


def test_decoder_scores_of_a_large_catalogue_come_in_chunks_within_the_memory_budget_with_the_same_result() -> None:
    from recsae.eval import SCORE_BUDGET_BYTES
    from recsae.interpret.baselines import (
        SELECTIVITY_BYTES_PER_SCORE,
        TOP_BYTES_PER_SCORE,
        _directions_per_chunk,
    )

    for per_score in (TOP_BYTES_PER_SCORE, SELECTIVITY_BYTES_PER_SCORE):
        chunk = _directions_per_chunk(100_001, per_score, None)
        assert chunk >= 1 and chunk * 100_001 * per_score <= SCORE_BUDGET_BYTES
    rng = np.random.default_rng(0)
    decoder, emb = rng.standard_normal((30, 4)), rng.standard_normal((50, 4))
    member = sp.csr_matrix((rng.random((50, 3)) < 0.3).astype(float))
    assert (top_decoder_items(decoder, emb, 5) == top_decoder_items(decoder, emb, 5, chunk=7)).all()
    whole, chunked = decoder_concepts(decoder, emb, member, np.ones(3, bool)), decoder_concepts(
        decoder, emb, member, np.ones(3, bool), chunk=7)
    assert (whole[0] == chunked[0]).all() and np.allclose(whole[1], chunked[1])


def test_concept_selectivity_is_the_standardised_mean_gap_between_a_concepts_items_and_the_rest() -> None:
    scores = np.array([[1.0, 1.0, 0.0, 0.0], [3.0, 3.0, 3.0, 3.0]])
    member = np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 0, 1]], dtype=float)  # A = {0, 1}, B = {2}, all
    sel = concept_selectivity(scores, member)
    assert sel[0, 0] == pytest.approx(1.0 / 0.5) and sel[0, 1] == pytest.approx((0 - 2 / 3) / 0.5)
    assert sel[0, 2] == 0.0 and (sel[1] == 0.0).all()  # every item / a constant direction: no gap


def test_decoder_concepts_name_the_eligible_concept_each_direction_raises() -> None:
    emb = np.array([[0, 0], [1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0], [0, 0]])  # row 0: padding
    member = sp.csr_matrix(np.array([[0, 0, 0], [1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=float))
    best, value = decoder_concepts(np.array([[1.0, 0], [0, 1.0], [1.0, 0]]), emb, member,
                                   eligible=np.array([True, True, False]), chunk=2)
    assert best.tolist() == [0, 1, 0] and (value > 1).all()
    none, _ = decoder_concepts(np.eye(2), emb, member, eligible=np.zeros(3, dtype=bool))
    assert none.tolist() == [-1, -1]


def test_decoder_concepts_prefer_a_solid_large_concept_to_a_tiny_one_with_a_chance_gap() -> None:
    scores = np.r_[np.ones(20), np.zeros(19), 3.0]  # items 1-40 along one direction
    emb = np.r_[[[0.0]], scores[:, None]]  # row 0: padding
    member = np.zeros((41, 2))
    member[1:21, 0] = 1  # big: the 20 items the direction raises
    member[[21, 40], 1] = 1  # tiny: one high item and one low one
    sel = concept_selectivity(scores[None, :], member[1:])[0]
    assert sel[1] > sel[0], "the tiny concept must have the larger raw gap for this test to mean anything"
    eligible = np.ones(2, dtype=bool)
    raw, raw_value = decoder_concepts(np.ones((1, 1)), emb, sp.csr_matrix(member), eligible, z=0.0)
    bounded, value = decoder_concepts(np.ones((1, 1)), emb, sp.csr_matrix(member), eligible)
    assert raw.tolist() == [1] and bounded.tolist() == [0]
    assert value[0] == pytest.approx(sel[0]) and raw_value[0] == pytest.approx(sel[1])


def test_planted_recovery_counts_concepts_whose_best_latent_reaches_the_threshold() -> None:
    share, table = planted_recovery([[0], [0, 1], [2]], np.array([0.5, 0.9, 0.95]), [0, 1, 3], ["a", "b", "c", "d"], 0.8)
    assert share == 2 / 3
    assert [r["best_latent"] for r in table] == [1, 1, None]


def test_cli_prints_the_most_confident_latents_with_titles(toy: Toy, tmp_path) -> None:
    from typer.testing import CliRunner

    from recsae.cli import app

    res = interpret(toy.ctx, toy.meta, toy.counts, toy.acts, neuron_acts=toy.reps, reps=toy.reps)
    write_interpretation(res, tmp_path)
    out = CliRunner().invoke(app, ["interpret", "--run", str(tmp_path), "--top", "5"])
    assert out.exit_code == 0, out.output
    assert "last item has genre=Horror" in out.output and "Horror film" in out.output
    assert "interpretable latents: 2/3 alive" in out.output
    # without decoders only the neurons' share is known, and only it is printed
    neurons = res.summary["explained_by_interpretable"]["neurons"]
    assert f"interpretable units alone: neurons {neurons:.1%}\n" in out.output


def test_cli_without_an_interpretation_is_a_user_error(tmp_path) -> None:
    import pytest

    from recsae.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["interpret", "--run", str(tmp_path)])
    assert exc.value.code == 2


def test_read_interpretation_returns_the_written_table(toy: Toy, tmp_path) -> None:
    from recsae.interpret.api import read_interpretation

    res = interpret(toy.ctx, toy.meta, toy.counts, toy.acts)
    write_interpretation(res, tmp_path)
    pd.testing.assert_frame_equal(read_interpretation(tmp_path), res.table)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no interpretation.parquet in this run folder; run `recsae run --out"),
        (b"not parquet", r"interpretation\.parquet: not a readable Parquet file"),
        ("no latent column", r"interpretation\.parquet, field 'latent': expected a 'latent' column"),
    ],
)
def test_read_interpretation_names_a_missing_or_damaged_table(tmp_path, content: object, message: str) -> None:
    from recsae.errors import DataError
    from recsae.interpret.api import read_interpretation
    from recsae.rundir import RunDir

    if isinstance(content, bytes):
        RunDir(tmp_path).interpretation.write_bytes(content)
    elif content is not None:
        pd.DataFrame({"rule": ["x"]}).to_parquet(RunDir(tmp_path).interpretation)
    with pytest.raises(DataError, match=message):
        read_interpretation(tmp_path)


def test_cli_names_a_corrupt_summary_in_one_line_with_exit_code_2(tmp_path, capsys) -> None:
    from recsae.cli import main

    pd.DataFrame({"latent": [0], "interpretable": [True]}).to_parquet(tmp_path / "interpretation.parquet")
    (tmp_path / "interpret.json").write_text('{"n_alive": 3,\n oops}')
    with pytest.raises(SystemExit) as exc:
        main(["interpret", "--run", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'interpret.json'}, line 2: not valid JSON")


def test_invalid_options_are_config_errors(toy: Toy) -> None:
    import pytest

    from recsae.errors import ConfigError
    from recsae.interpret import FitConfig

    with pytest.raises(ConfigError, match=r"fit_fraction.*fit_target"):
        interpret(toy.ctx, toy.meta, toy.counts, toy.acts,
                  cfg=InterpretConfig(fit_fraction=1.0, fit=FitConfig(fit_target="median")))


def test_explained_variance_is_one_for_an_exact_dictionary_and_zero_for_none() -> None:
    rng = np.random.default_rng(0)
    acts = sp.random(200, 8, density=0.3, random_state=1, format="csr")
    decoder, bias = rng.normal(size=(8, 5)), rng.normal(size=5)
    reps = acts @ decoder + bias
    assert np.isclose(explained_variance(reps, acts, decoder, bias, np.ones(8, bool)), 1.0)
    assert np.isclose(explained_variance(reps, acts, decoder, reps.mean(0), np.zeros(8, bool)), 0.0)
    some = np.arange(8) < 3
    by_hand = 1 - ((reps - (acts[:, some] @ decoder[some] + bias)) ** 2).sum() / ((reps - reps.mean(0)) ** 2).sum()
    assert np.isclose(explained_variance(reps, acts, decoder, bias, some), by_hand)
    # the chunk size never changes it, and dense acts give the same as sparse
    assert np.isclose(explained_variance(reps, acts, decoder, bias, some, chunk=7), by_hand)
    assert np.isclose(explained_variance(reps, acts.toarray(), decoder, bias, some), by_hand)


def test_neurons_explain_their_share_of_the_variance_and_latents_what_they_rebuild(toy: Toy) -> None:
    rng = np.random.default_rng(2)
    decoder, bias = rng.normal(size=(4, 6)), rng.normal(size=6)
    reps = np.asarray(toy.acts @ decoder + bias)
    res = interpret(toy.ctx, toy.meta, toy.counts, toy.acts, neuron_acts=reps, reps=reps,
                    sae_decoder=decoder, sae_decoder_bias=bias)
    keep = res.table["interpretable"].to_numpy()
    assert keep.tolist() == [True, False, True, False]
    expected = explained_variance(reps, toy.acts, decoder, bias, keep)
    assert np.isclose(res.summary["explained_by_interpretable"]["sae"], expected) and 0 < expected < 1
    neurons = res.baselines["neurons"]["interpretable"].to_numpy()
    var = reps.var(axis=0)
    assert np.isclose(res.summary["explained_by_interpretable"]["neurons"], var[neurons].sum() / var.sum())
    # without the decoder bias the SAE's share cannot be computed
    assert interpret(toy.ctx, toy.meta, toy.counts, toy.acts, reps=reps, sae_decoder=decoder).summary[
        "explained_by_interpretable"]["sae"] is None


def test_the_shuffled_explanation_control_sits_at_chance_while_the_real_rules_pass(toy: Toy) -> None:
    res = interpret(toy.ctx, toy.meta, toy.counts, toy.acts, reps=toy.reps)
    shuffled = res.summary["shuffled_control"]
    assert shuffled["n_units"] == 3  # the alive latents with a rule; the dead one has none
    # each latent validated with another's rule: Horror-last, Comedy-recs and noise are independent
    assert abs(shuffled["median_confidence"] - 0.5) < 0.05
    assert shuffled["share_interpretable"] == 0.0
    assert res.summary["n_interpretable"] == 2


def test_neuron_edits_move_a_neuron_to_its_mean_on_its_active_rows_only() -> None:
    from recsae.interpret.api import _unit_edits
    from recsae.interpret.dictionary import neuron_states

    x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    states = neuron_states(x, np.arange(200))
    edits = _unit_edits(x, states, None, dense=True)
    ablated = x - edits.coef.toarray() * 1.0  # h' = h - coef * e_j, one neuron at a time
    active = states.active.toarray().astype(bool)
    np.testing.assert_allclose(ablated[active[:, 1], 1], x[:, 1].mean(), rtol=1e-5)
    assert (edits.coef.toarray()[~active] == 0).all()
    np.testing.assert_array_equal(edits.directions, np.eye(3, dtype=np.float32))
