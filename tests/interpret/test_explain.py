"""LLM explanations and their scores, with answers known in closed form: a keyword explainer
(``fake_llm``) explains a latent that fires exactly on histories with a planted word perfectly,
says nothing about a latent that fires at random, and a constant answer sits at chance."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fake_llm import fake_llm
from recsae.data.dataset import ItemMeta, Ragged
from recsae.errors import ConfigError
from recsae.interpret.explain import (
    ExplainConfig,
    Sequences,
    _ask_all,
    auc,
    background_share,
    balanced_accuracy_ci,
    eligible_units,
    explain_units,
    item_terms,
    item_texts,
    keywords,
    neuron_codes,
    read_yes,
    score,
    summarize,
    unit_rows,
)
from recsae.interpret.llm import ChatClient, Completion, LlmConfig, LlmError
from recsae.interpret.validate import split_users

WORDS = ("zebra", "yak", "gnu")
N_USERS = 400


def _planted() -> tuple[sp.csr_matrix, Sequences, ItemMeta, np.ndarray]:
    """Items 1-5 titled "Zebra ...", 6-10 "Yak ...", 11-15 "Gnu ...", 16-40 without words. Each
    user's 9-item history holds one item of each word with probability 1/2 (independently);
    latent w fires exactly on the histories with word w (activation 1 to 3), latent 3 on users
    with an even id, whatever they watched; one row per user, at the end of the history."""
    rng = np.random.default_rng(7)
    titles = [""] + [f"{w.title()} {k}" for w in WORDS for k in "abcde"] + [f"#{i}" for i in range(16, 41)]
    histories, acts = [[]], []
    for u in range(1, N_USERS + 1):
        has = rng.random(3) < 0.5
        items = [int(rng.integers(1 + 5 * w, 6 + 5 * w)) for w in range(3) if has[w]]
        items += rng.integers(16, 41, 9 - len(items)).tolist()
        rng.shuffle(items)
        histories.append(items)
        acts.append([float(has[w]) * rng.integers(1, 4) for w in range(3)] + [float(u % 2 == 0)])
    users = np.arange(1, N_USERS + 1)
    seqs = Sequences(users, np.full(N_USERS, 9), Ragged.from_lists(histories), np.full(N_USERS, 40),
                     item_texts(ItemMeta(title=titles)))
    return sp.csr_matrix(np.array(acts)), seqs, ItemMeta(title=titles), split_users(users, 0.5, 0)


CFG = ExplainConfig(n_latents=4, n_examples=10, n_firing=40, n_silent=40, concurrency=2, seed=1)


def _explain(cfg: ExplainConfig = CFG, **kwargs) -> tuple[list[dict], int]:
    acts, seqs, meta, fit = _planted()
    with fake_llm() as srv:
        records = explain_units(acts, seqs, meta, fit, ChatClient(LlmConfig(srv.url, "fake", logprobs=True)), cfg, **kwargs)
    return records, len(srv.requests)


def test_latent_of_a_planted_word_is_explained_by_it_and_predicted_perfectly() -> None:
    records, _ = _explain()
    by_unit = {r["unit"]: r for r in records}
    for j, word in enumerate(WORDS):
        r = by_unit[j]
        assert r["keywords"][0] == word and r["explanation"] == f"Histories with {word}."
        assert r["balanced_accuracy"] == 1.0 and r["ci_low"] == 1.0 and r["auc"] == 1.0
        assert r["n_unreadable"] == 0


def test_latent_that_fires_regardless_of_content_is_not_predicted() -> None:
    records, _ = _explain()
    random_latent = next(r for r in records if r["unit"] == 3)
    assert random_latent["ci_low"] < 0.5 < random_latent["ci_high"]


def test_shuffled_explanations_sit_at_chance() -> None:
    # the three word latents: each judged with another, independent word's explanation
    cfg = ExplainConfig(**{**CFG.__dict__, "n_firing": 80, "n_silent": 80})
    records, _ = _explain(cfg, units=[0, 1, 2])
    assert all(r["shuffled_from"] != r["unit"] for r in records)
    summary = summarize({"sae": records}, cfg)
    assert summary["shuffled"]["n"] == 3
    assert summary["shuffled"]["ci_low"] < 0.5 < summary["shuffled"]["ci_high"]
    assert summary["sae"]["mean_balanced_accuracy"] > summary["shuffled"]["ci_high"]


def test_token_budgets_reach_the_server() -> None:
    acts, seqs, meta, fit = _planted()
    cfg = ExplainConfig(**{**CFG.__dict__, "explanation_tokens": 77, "answer_tokens": 500, "shuffled": False})
    with fake_llm() as srv:
        explain_units(acts, seqs, meta, fit, ChatClient(LlmConfig(srv.url, "fake")), cfg, units=[0])
    budgets = [r["payload"]["max_tokens"] for r in srv.requests]
    assert budgets == [77] + [500] * (cfg.n_firing + cfg.n_silent)


def test_requests_are_one_explanation_and_every_scored_row_per_unit_and_judge() -> None:
    _, n_requests = _explain()
    assert n_requests == 4 + 2 * 4 * (40 + 40)  # explanations, own and shuffled scores
    _, without_shuffle = _explain(ExplainConfig(**{**CFG.__dict__, "shuffled": False}))
    assert without_shuffle == 4 + 4 * (40 + 40)


def test_examples_come_from_fit_users_and_scored_rows_from_held_out_users() -> None:
    acts, seqs, _, fit = _planted()
    csc = sp.csc_matrix(acts)
    ur = unit_rows(csc, 0, seqs.users, fit, CFG, np.random.default_rng(0))
    assert fit[ur.examples].all() and (~fit[ur.firing]).all() and (~fit[ur.silent]).all()
    dense = acts.toarray()[:, 0]
    assert (dense[ur.firing] > 0).all() and (dense[ur.silent] == 0).all()
    assert len(np.unique(seqs.users[ur.examples])) == len(ur.examples) == CFG.n_examples
    assert ur.levels[0] == 10 and np.all(np.diff(dense[ur.examples]) <= 0)  # strongest first, scaled to 10


def test_units_without_enough_rows_are_not_eligible_and_cannot_be_asked_for() -> None:
    acts, seqs, meta, fit = _planted()
    acts = sp.hstack([acts, sp.csr_matrix(np.eye(N_USERS)[:, :1])]).tocsr()  # unit 4 fires on one row
    assert eligible_units(sp.csc_matrix(acts), seqs.users, fit, CFG).tolist() == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match=r"latents \[4\] fire on too few rows"):
        explain_units(acts, seqs, meta, fit, ChatClient(LlmConfig("http://127.0.0.1:9/v1", "m")), CFG, units=[4])


def _answers(texts: list[str]) -> list[Completion]:
    return [Completion(t, None, False) for t in texts]


@pytest.mark.parametrize("answer", ["yes", "no", "maybe"])
def test_a_constant_answer_scores_exactly_chance(answer: str) -> None:
    s = score(_answers([answer] * 7), _answers([answer] * 5), 200, np.random.default_rng(0))
    assert s.balanced_accuracy == 0.5 and s.auc is None
    assert s.n_unreadable == (12 if answer == "maybe" else 0)


def test_balanced_accuracy_weighs_both_classes_equally() -> None:
    # 3 of 4 firing rows said yes, 1 of 2 silent rows said no: (0.75 + 0.5) / 2
    ba, lo, hi = balanced_accuracy_ci(np.array([1, 1, 1, 0]), np.array([1, 0]), 500, np.random.default_rng(0))
    assert ba == 0.625 and lo <= ba <= hi


def test_auc_counts_ties_half() -> None:
    assert auc(np.array([0.9, 0.5]), np.array([0.5, 0.1])) == (1 + 1 + 0.5 + 1) / 4


@pytest.mark.parametrize(("text", "said"), [("Yes.", True), (" no", False), ("NO, it does not", False),
                                            ("Maybe", None), ("", None), ("yesterday", None)])
def test_read_yes(text: str, said: bool | None) -> None:
    assert read_yes(text) is said


def test_item_text_and_terms_carry_attributes() -> None:
    meta = ItemMeta(title=["", "The Heat of Night (1995)"], categorical={"studio": ["", "Acme"]},
                    multi={"genre": [(), ("Crime", "Drama")]})
    assert item_texts(meta)[1] == "The Heat of Night (1995) (studio: Acme; genre: Crime, Drama)"
    tagged = ItemMeta(title=["", "X"], multi={"tag": [(), tuple(f"t{k}" for k in range(9))]})
    assert item_texts(tagged)[1] == "X (tag: t0, t1, t2, t3, t4)"  # at most MAX_VALUES values shown
    assert item_terms(meta)[1] == ["heat", "night", "Acme", "Crime", "Drama"]


def test_keywords_are_frequent_in_the_latents_rows_and_rare_in_other_histories() -> None:
    # item 1-2 dramas (every history holds one), 3 the only noir, 4 the only western; the
    # latent's two rows both hold a drama and the noir, one of them the western too
    meta = ItemMeta(title=["", "A", "B", "C", "D"], multi={"genre": [(), ("Drama",), ("Drama",), ("Noir",), ("Western",)]})
    histories = Ragged.from_lists([[], [1, 3, 4], [2, 3]] + [[1, 2]] * 6)
    seqs = Sequences(np.arange(1, 9), np.array([3, 2] + [2] * 6), histories, np.zeros(8, dtype=np.int64), item_texts(meta))
    terms = item_terms(meta)
    shares, unseen = background_share(seqs, np.arange(8), terms, 9)
    assert shares == {"Drama": 9 / 9, "Noir": 3 / 9, "Western": 2 / 9} and unseen == 1 / 9
    # Noir: 1 x log(3), Western: 0.5 x log(2.25), Drama: 1 x log(1) = 0, left out
    assert keywords(seqs, np.array([0, 1]), np.array([1.0, 1.0]), terms, (shares, unseen), 9, 5) == ["Noir", "Western"]
    # weighted by activation: the western's row ten times as strong makes it the first keyword
    assert keywords(seqs, np.array([0, 1]), np.array([10.0, 1.0]), terms, (shares, unseen), 9, 1) == ["Western"]


def test_a_failing_request_stops_the_others_not_yet_sent() -> None:
    prompts = [[{"role": "user", "content": f"question {k}"}] for k in range(300)]
    with fake_llm(fail_first=10_000) as srv:
        client = ChatClient(LlmConfig(srv.url, "fake", retries=0))
        with pytest.raises(LlmError, match="HTTP 503"):
            _ask_all(client, prompts, 3, CFG, "test")
    assert len(srv.requests) < len(prompts)  # the first failure dropped the requests not yet sent


def test_a_neuron_fires_above_its_top_decile_on_fit_rows() -> None:
    reps = np.array([[float(v), -float(v)] for v in range(1, 21)] + [[100.0, 100.0]])
    fit = np.array([True] * 20 + [False])  # the held-out row does not move the cut
    codes = neuron_codes(reps, fit, 0.9).toarray()
    cut = np.quantile(reps[:20], 0.9, axis=0)
    assert np.allclose(codes, np.maximum(reps - cut, 0))
    assert (codes[:, 0] > 0).sum() == 3 and codes[20, 1] == 100.0 - cut[1]  # rows 19, 20 and the held-out row
