from __future__ import annotations

import json

import pytest

from recsae.errors import ConfigError
from recsae.steer.study import SteerConfig, run_steer, sample_users, steer_summary, write_steer

SMALL = SteerConfig(
    k=5, n_random=2, n_ablation=3, min_active_users=3, add_alphas=(0.0, 0.1, 0.3), mix_alphas=(0.0, 0.3),
    n_debias_latents=2, max_auto_share=0.5, ndcg_tolerance=0.2, refine_steps=1,
)  # fmt: skip


@pytest.mark.slow
def test_run_steer_results_are_json_and_summary_has_the_stable_keys(world, tmp_path) -> None:
    result = run_steer(world.model, world.sae, world.split, world.interpretation, world.items, SMALL)
    data = json.loads(write_steer(result, tmp_path).read_text())
    assert data["config"]["seed"] == 0 and data["n_users"] == 60
    assert data["format_version"] == 1 and data["environment"]["torch"]
    assert data["ablation"]["n_latents"] == 3
    concepts = [c["concept"] for c in data["concepts"]]
    assert concepts[0] == "genre=A" and len(concepts) == SMALL.n_auto_concepts  # most confident latents' concepts
    assert set(data["concepts"][0]["curves"]) == {"add", "mix"}
    assert [r["scale"] for r in data["debias"]["table"]] == [0.5, 0.0]

    summary = steer_summary(result)
    assert list(summary) == concepts
    entry = summary["genre=A"]
    for key in ("share_before", "share_after", "random_control_share_after", "ndcg_before", "ndcg_after"):
        assert isinstance(entry[key], float)
    assert entry["share_after"] > entry["share_before"]
    assert entry["ndcg_after"] >= (1 - SMALL.ndcg_tolerance) * entry["ndcg_before"]
    lo, hi = entry["ndcg_ratio_ci"]
    assert lo <= entry["ndcg_after"] / entry["ndcg_before"] <= hi


@pytest.mark.slow
def test_named_concepts_are_steered_and_unknown_ones_rejected(world) -> None:
    cfg = SteerConfig(**{**SMALL.__dict__, "concepts": ("genre=C",), "latent_source": "rules"})
    result = run_steer(world.model, world.sae, world.split, world.interpretation, world.items, cfg)
    assert [c["concept"] for c in result.concepts] == ["genre=C"] and result.concepts[0]["latents"] == [2]
    cfg = SteerConfig(**{**SMALL.__dict__, "concepts": ("genre=Z",)})
    with pytest.raises(ConfigError, match="genre=Z"):
        run_steer(world.model, world.sae, world.split, world.interpretation, world.items, cfg)


@pytest.mark.slow
def test_decoder_source_steers_through_the_most_selective_alive_latents_and_raises_the_share(world) -> None:
    from recsae.steer.study import make_context
    from recsae.steer.targets import decoder_selectivity

    cfg = SteerConfig(**{**SMALL.__dict__, "concepts": ("genre=C",), "latents_per_concept": 2})
    result = run_steer(world.model, world.sae, world.split, world.interpretation, world.items, cfg)
    ctx = make_context(world.model, world.sae, world.split, cfg)
    sel = decoder_selectivity(world.model, world.sae, world.items.mask("genre=C"))
    chosen = result.concepts[0]["latents"]
    assert len(chosen) == 2 and set(chosen) <= set(ctx.alive.tolist())
    assert min(sel[chosen]) >= max(sel[[j for j in ctx.alive if j not in chosen]])
    best = result.concepts[0]["chosen"]
    assert best is not None and best["share"] > best["share_before"]


def test_user_sample_is_seeded_and_bounded(world) -> None:
    a = sample_users(world.split, "test", 10, seed=1)
    assert len(a) == 10 and (a == sample_users(world.split, "test", 10, seed=1)).all()
    assert len(sample_users(world.split, "test", None, seed=1)) == 60


def test_refined_curve_bisects_at_the_edge_of_the_ndcg_tolerance(world) -> None:
    from functools import partial

    from recsae.steer.effects import dose_response
    from recsae.steer.study import make_context, refine_curve, steer_edit

    cfg = SteerConfig(k=5, n_random=1, ndcg_tolerance=0.05, refine_steps=2)
    ctx = make_context(world.model, world.sae, world.split, cfg)
    make_edit = partial(steer_edit, "add", (0,))
    mask = world.items.mask("genre=A")
    coarse = dose_response(ctx, make_edit, [0.0, 0.1, 0.3, 1.0], "genre=A", mask, 1)
    assert coarse[1]["ndcg"] >= 0.95 * coarse[1]["ndcg_before"] > coarse[2]["ndcg"]  # edge between 0.1 and 0.3
    fine = refine_curve(ctx, make_edit, coarse, "genre=A", mask, cfg)
    strengths = [r["strength"] for r in fine]
    assert strengths == sorted(strengths) and len(fine) == 6
    assert 0.2 in strengths and all(0.1 < s < 0.3 for s in set(strengths) - {0.0, 0.1, 0.3, 1.0})


@pytest.mark.slow
def test_strength_is_chosen_on_validation_items_and_reported_on_test_items(world) -> None:
    from dataclasses import replace
    from functools import partial

    from recsae.steer.effects import dose_response, measure
    from recsae.steer.study import make_context, steer_edit

    cfg = SteerConfig(**{**SMALL.__dict__, "concepts": ("genre=C",)})
    c = run_steer(world.model, world.sae, world.split, world.interpretation, world.items, cfg).concepts[0]
    valid_ctx = make_context(world.model, world.sae, world.split, cfg, which="valid")
    test_ctx = make_context(world.model, world.sae, world.split, cfg)
    assert c["curves_on"] == "valid" and c["chosen"]["measured_on"] == "test"
    assert c["curves"]["add"][0]["ndcg_before"] == pytest.approx(measure(valid_ctx, None, {}).ndcg)
    chosen, selection = c["chosen"], c["selection"]
    assert (chosen["method"], chosen["strength"]) == (selection["method"], selection["strength"])
    mask = world.items.mask("genre=C")
    edit = partial(steer_edit, chosen["method"], c["latents"])
    again = dose_response(test_ctx, edit, [chosen["strength"]], "genre=C", mask, cfg.n_random, cfg.seed)[0]
    assert chosen["share"] == again["share"] and chosen["ndcg"] == again["ndcg"]
    assert chosen["ndcg_before"] == pytest.approx(measure(test_ctx, None, {}).ndcg)
    assert chosen["within_tolerance"] == (chosen["ndcg"] >= (1 - cfg.ndcg_tolerance) * chosen["ndcg_before"])

    same = run_steer(world.model, world.sae, world.split, world.interpretation, world.items,
                     replace(cfg, select_on=None)).concepts[0]  # fmt: skip
    assert same["curves_on"] == "test" and "selection" not in same
    assert same["chosen"] in [{"method": m, **r, "within_tolerance": True} for m, curve in same["curves"].items()
                              for r in curve]  # fmt: skip


def test_select_on_must_be_a_held_out_split() -> None:
    with pytest.raises(ConfigError, match="select_on"):
        SteerConfig(select_on="train")


@pytest.mark.slow
def test_without_a_strength_inside_the_tolerance_the_weakest_add_step_is_reported_as_outside_it(world) -> None:
    from dataclasses import replace

    # strengths so large that every step wrecks NDCG on the selection items
    cfg = SteerConfig(**{**SMALL.__dict__, "concepts": ("genre=C",), "add_alphas": (0.0, 50.0, 100.0),
                         "mix_alphas": (0.0, 1.0), "ndcg_tolerance": 0.0, "refine_steps": 0, "select_on": None})  # fmt: skip
    result = run_steer(world.model, world.sae, world.split, world.interpretation, world.items, cfg)
    c = result.concepts[0]
    assert all(r["ndcg"] < r["ndcg_before"] for m in c["curves"].values() for r in m if r["strength"] > 0)
    assert (c["chosen"]["method"], c["chosen"]["strength"], c["chosen"]["within_tolerance"]) == ("add", 50.0, False)
    entry = steer_summary(result)["genre=C"]
    assert entry["within_tolerance"] is False and entry["alpha"] == 50.0 and entry["chosen_on"] == "test"
    reported = run_steer(world.model, world.sae, world.split, world.interpretation, world.items,
                         replace(cfg, select_on="valid")).concepts[0]["chosen"]  # fmt: skip
    assert reported["measured_on"] == "test" and reported["strength"] == 50.0
