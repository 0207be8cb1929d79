"""Latents explained in words by a language model, and the explanations scored on held-out users.

For each explained unit (an SAE latent, or a latent of a control):

1. **Explain** from the ``n_examples`` rows of *fit* users where it fires most (one row per user):
   the titles of the last ``n_titles`` items of each prefix and the model's top recommendation,
   with the activation on a 0-10 scale of the unit's own maximum, plus keywords of the items in
   the prefixes of its ``n_keyword_rows`` strongest rows: the title words and attribute values
   most over-represented there (activation-weighted) against fit users' histories in general.
2. **Score**: on rows of *held-out* users (never in an explanation), ``n_firing`` where the unit
   fires and ``n_silent`` where it does not (seeded draws), the model is asked, from the
   explanation alone, whether the unit fires. Score: balanced accuracy (the mean of the firing
   and the silent rows' accuracy; 0.5 is chance) with a 95 % bootstrap interval, and the AUC of
   P(yes) when the server returns log-probabilities.

Controls, scored the same way on the same kind of rows: **shuffled explanations** (each latent's
rows judged with another latent's explanation: chance by construction, unless explanations are
all alike), and the interpretation's unit families explained from their own rows: the model's
raw **neurons** (a neuron "fires" on the rows in its top decile on fit rows, as in the rule
test), the **untrained SAE**'s latents (random directions also fire on similar histories) and
the latents of the **SAE of the untrained model** (its own recommendations shown).

Units are a seeded draw among the eligible ones (enough firing fit rows, firing and silent
held-out rows), not the best-looking ones, so family means compare like with like.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from recsae.data.dataset import ItemMeta, Ragged
from recsae.errors import ConfigError, DataError
from recsae.interpret.llm import ChatClient, Completion, LlmConfig
from recsae.interpret.probing import mean_ci
from recsae.utils import progress

if TYPE_CHECKING:
    from recsae.runs import Run

log = logging.getLogger("recsae")

FORMAT_VERSION = 1
"""Version of the ``explain.json`` layout."""
FAMILY_LABELS = {"sae": "SAE latents", "neurons": "neurons", "random_sae": "untrained SAE",
                 "random_model_sae": "untrained-model SAE", "shuffled": "shuffled explanations"}
"""The families of ``explain.json``'s summary, as printed and reported."""

SYSTEM = (
    "You study one feature of a recommender system: a direction in the vector the model computes from a "
    "user's history of items, before it ranks the next items. Histories list items oldest first; the model's "
    "top recommendation follows the arrow. Activations run from 0 (silent) to 10 (the feature's strongest)."
)
EXPLAIN_ASK = "In one short sentence, say what the feature responds to. Answer with the sentence only."
SCORE_ASK = "Does the feature fire on this history? Answer yes or no."
KEYWORDS_LEAD = "Words and attributes most specific to the items of these histories:"
EXPLANATION_LEAD = "Explanation of the feature:"
HISTORY_LEAD = "History:"
_STOPWORDS = frozenset({
    "about", "after", "all", "and", "any", "are", "before", "but", "can", "das", "del", "der", "des", "die",
    "ein", "for", "from", "had", "has", "have", "her", "him", "his", "how", "into", "its", "les", "not",
    "one", "our", "out", "over", "she", "than", "that", "the", "their", "them", "then", "they", "this",
    "three", "two", "und", "under", "une", "was", "were", "what", "when", "where", "who", "why", "with",
    "you", "your"
})
"""Title words too common to be keywords (words under 3 letters are never keywords)."""
_WORD = re.compile(r"[^\W\d_][\w'-]{2,}")


@dataclass(frozen=True)
class ExplainConfig:
    """How many units, rows and words the explanations use."""

    n_latents: int = 40
    """Units explained per family (a seeded draw among the eligible ones)."""
    n_examples: int = 10
    """Rows shown to explain a unit: its strongest, one per fit user."""
    n_titles: int = 9
    """Most recent items of each prefix shown (RecSAE shows at most 9)."""
    n_keywords: int = 10
    """Keywords shown with the examples (``keywords``)."""
    n_keyword_rows: int = 50
    """Strongest fit rows whose prefix items feed the keywords."""
    n_background_rows: int = 20_000
    """Fit rows (a seeded sample) whose recent items give the keywords' background shares."""
    n_firing: int = 20
    """Held-out rows where the unit fires, scored per unit."""
    n_silent: int = 20
    """Held-out rows where it is silent, scored per unit."""
    concurrency: int = 4
    """Requests in flight at once."""
    explanation_tokens: int = 200
    """Tokens the model may write for an explanation."""
    answer_tokens: int = 3
    """Tokens the model may write for a yes or no; a model that reasons before answering
    (``<think>...</think>``, dropped when read) needs hundreds."""
    shuffled: bool = True
    """Also score every SAE latent with another latent's explanation (the chance control)."""
    n_boot: int = 2000
    """Bootstrap resamples of the intervals."""
    seed: int = 0
    """Seeds the choice of units, scored rows and the bootstrap."""

    def __post_init__(self) -> None:
        small = {k: getattr(self, k) for k in ("n_latents", "n_examples", "n_titles", "n_keyword_rows", "n_background_rows", "n_firing",
                                               "n_silent", "concurrency", "explanation_tokens", "answer_tokens", "n_boot") if getattr(self, k) < 1}
        if small or self.n_keywords < 0:
            raise ConfigError(f"explain: counts must be at least 1 (n_keywords at least 0), got {small or self.n_keywords}")


class Sequences(NamedTuple):
    """What the prompts show of each row."""

    users: np.ndarray
    positions: np.ndarray
    """Prefix length t: the row's history is ``histories[user][:t]``."""
    histories: Ragged
    top_item: np.ndarray
    """(rows,) the model's top recommendation for the row."""
    item_text: Sequence[str]
    """Per item id: how an item is named in a prompt."""

    def window(self, row: int, n_titles: int) -> np.ndarray:
        """The row's last ``n_titles`` items, oldest first."""
        t = int(self.positions[row])
        return self.histories[int(self.users[row])][max(0, t - n_titles) : t]

    def text(self, row: int, n_titles: int) -> str:
        items = self.window(row, n_titles)
        return "; ".join(self.item_text[int(i)] for i in items) + f" -> {self.item_text[int(self.top_item[row])]}"


MAX_VALUES = 5
"""Values shown per multi-valued attribute of an item (a film can carry dozens of tags)."""


def item_texts(meta: ItemMeta) -> list[str]:
    """Each item's title with its categorical and multi-valued attributes (at most ``MAX_VALUES``
    values each), e.g. ``Heat (1995) (genre: Action, Crime)``."""
    out = []
    for i, title in enumerate(meta.title):
        attrs = [f"{name}: {values[i]}" for name, values in meta.categorical.items() if values[i]]
        attrs += [f"{name}: {', '.join(values[i][:MAX_VALUES])}" for name, values in meta.multi.items() if values[i]]
        name = title or f"item {i}"
        out.append(f"{name} ({'; '.join(attrs)})" if attrs else name)
    return out


def item_terms(meta: ItemMeta) -> list[list[str]]:
    """Each item's keyword candidates: its title's words (lower case, at least 3 letters, common
    words left out) and its attribute values."""
    terms = []
    for i, title in enumerate(meta.title):
        words = [w for w in _WORD.findall(title.lower()) if w not in _STOPWORDS]
        words += [v for values in meta.categorical.values() if (v := values[i])]
        words += [v for values in meta.multi.values() for v in values[i]]
        terms.append(list(dict.fromkeys(words)))
    return terms


def window_terms(seqs: Sequences, row: int, terms: list[list[str]], n_titles: int) -> set[str]:
    """The terms of the row's recent items (its last ``n_titles``)."""
    return {term for item in seqs.window(row, n_titles) for term in terms[int(item)]}


def background_share(seqs: Sequences, rows: np.ndarray, terms: list[list[str]], n_titles: int) -> tuple[dict[str, float], float]:
    """Per term, the smoothed share of ``rows`` whose recent items hold it, ``(1 + df) / (1 + N)``;
    and ``1 / (1 + N)``, the share of a term none holds."""
    df: Counter[str] = Counter()
    for row in rows:
        df.update(window_terms(seqs, int(row), terms, n_titles))
    n = len(rows) + 1
    return {term: (1 + count) / n for term, count in df.items()}, 1 / n


def keywords(seqs: Sequences, rows: np.ndarray, weights: np.ndarray, terms: list[list[str]],
             background: tuple[dict[str, float], float], n_titles: int, n: int) -> list[str]:
    """The ``n`` terms most over-represented in the rows' recent items against the background of
    histories: share p of the (activation-weighted) rows whose window holds the term, times
    ``log(p / q)`` with q its ``background_share``; only terms with p > q (ties: alphabetical).
    TF-IDF's idea with windows as documents: frequent here, rare elsewhere; a genre most
    histories hold scores near 0, and a term of a single row scores little."""
    held: dict[str, float] = {}
    for row, w in zip(rows, weights, strict=True):
        for term in window_terms(seqs, int(row), terms, n_titles):
            held[term] = held.get(term, 0.0) + float(w)
    total = float(np.sum(weights))
    shares, unseen = background
    score = {term: (p := count / total) * np.log(p / shares.get(term, unseen)) for term, count in held.items()}
    return sorted((term for term in held if score[term] > 0), key=lambda term: (-score[term], term))[:n]


class UnitRows(NamedTuple):
    """The rows behind one unit's explanation and its score."""

    unit: int
    examples: np.ndarray
    """Rows shown to explain it (strongest first)."""
    levels: np.ndarray
    """Their activations on the 0-10 scale."""
    keyword_rows: np.ndarray
    keyword_weights: np.ndarray
    firing: np.ndarray
    """Held-out rows where it fires (scored)."""
    silent: np.ndarray
    """Held-out rows where it is silent (scored)."""


def eligible_units(acts: sp.csc_matrix, users: np.ndarray, fit_mask: np.ndarray, cfg: ExplainConfig) -> np.ndarray:
    """Units with at least ``n_examples`` fit users where they fire, and ``n_firing`` firing and
    ``n_silent`` silent held-out rows."""
    fires = acts > 0
    n_fit_firing = np.asarray(fires[fit_mask].sum(axis=0)).ravel()
    n_val_firing = np.asarray(fires[~fit_mask].sum(axis=0)).ravel()
    n_val = int((~fit_mask).sum())
    ok = (n_fit_firing >= cfg.n_examples) & (n_val_firing >= cfg.n_firing) & (n_val - n_val_firing >= cfg.n_silent)
    # the examples need distinct users: count them only for the units that pass the row counts
    for j in np.flatnonzero(ok):
        lo, hi = acts.indptr[j], acts.indptr[j + 1]
        col = acts.indices[lo:hi][acts.data[lo:hi] > 0]
        ok[j] = len(np.unique(users[col[fit_mask[col]]])) >= cfg.n_examples
    return np.flatnonzero(ok)


def unit_rows(acts: sp.csc_matrix, unit: int, users: np.ndarray, fit_mask: np.ndarray, cfg: ExplainConfig,
              rng: np.random.Generator) -> UnitRows:
    """Pick the example, keyword and scored rows of ``unit`` (an eligible one)."""
    lo, hi = acts.indptr[unit], acts.indptr[unit + 1]
    rows, vals = acts.indices[lo:hi], acts.data[lo:hi]
    keep = vals > 0
    rows, vals = rows[keep], vals[keep]
    fit = fit_mask[rows]
    fit_rows, fit_vals = rows[fit], vals[fit]
    order = np.lexsort((fit_rows, -fit_vals))  # strongest first, ties by row
    _, first = np.unique(users[fit_rows[order]], return_index=True)
    examples = order[np.sort(first)][: cfg.n_examples]  # one row per user, strongest users first
    top = float(fit_vals.max())
    levels = np.clip(np.rint(10.0 * fit_vals[examples] / top), 0, 10).astype(np.int64)
    strongest = order[: cfg.n_keyword_rows]
    val_firing = np.sort(rows[~fit])
    silent_pool = np.setdiff1d(np.flatnonzero(~fit_mask), val_firing, assume_unique=True)
    firing = np.sort(rng.choice(val_firing, cfg.n_firing, replace=False))
    silent = np.sort(rng.choice(silent_pool, cfg.n_silent, replace=False))
    return UnitRows(unit, fit_rows[examples], levels, fit_rows[strongest], fit_vals[strongest], firing, silent)


def explain_prompt(seqs: Sequences, ur: UnitRows, words: list[str], n_titles: int) -> list[dict[str, str]]:
    lines = ["Histories where the feature fires most:"]
    lines += [f"{n}. [activation {lv}] {seqs.text(int(r), n_titles)}" for n, (r, lv) in enumerate(zip(ur.examples, ur.levels, strict=True), 1)]
    if words:
        lines += ["", f"{KEYWORDS_LEAD} {', '.join(words)}"]
    lines += ["", EXPLAIN_ASK]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def score_prompt(explanation: str, history: str) -> list[dict[str, str]]:
    text = f"{EXPLANATION_LEAD} {explanation}\n\n{HISTORY_LEAD} {history}\n\n{SCORE_ASK}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def read_yes(answer: str) -> bool | None:
    """True for an answer starting with "yes", False for "no", None for anything else."""
    word = re.match(r"\W*([a-z]+)", answer.lower())
    if word is None:
        return None
    return True if word.group(1) == "yes" else False if word.group(1) == "no" else None


class Score(NamedTuple):
    """How well predictions from an explanation match where the unit fires."""

    balanced_accuracy: float
    ci_low: float
    ci_high: float
    auc: float | None
    """From P(yes), when every answer carried one; else None."""
    n_unreadable: int
    """Answers that were neither yes nor no (counted as no)."""


def balanced_accuracy_ci(hits_firing: np.ndarray, hits_silent: np.ndarray, n_boot: int,
                         rng: np.random.Generator) -> tuple[float, float, float]:
    """Balanced accuracy of per-row correctness (firing rows answered yes, silent rows no) with a
    95 % stratified bootstrap interval (each class resampled on its own)."""
    tpr, tnr = float(np.mean(hits_firing)), float(np.mean(hits_silent))
    boot = (rng.binomial(len(hits_firing), tpr, n_boot) / len(hits_firing)
            + rng.binomial(len(hits_silent), tnr, n_boot) / len(hits_silent)) / 2
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return (tpr + tnr) / 2, float(lo), float(hi)


def auc(p_firing: np.ndarray, p_silent: np.ndarray) -> float:
    """P(a firing row gets a higher P(yes) than a silent row), ties counting half."""
    diff = np.asarray(p_firing, dtype=np.float64)[:, None] - np.asarray(p_silent, dtype=np.float64)[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def score(answers_firing: Sequence[Completion], answers_silent: Sequence[Completion], n_boot: int,
          rng: np.random.Generator) -> Score:
    said = [read_yes(a.text) for a in answers_firing], [read_yes(a.text) for a in answers_silent]
    hits_firing = np.array([s is True for s in said[0]])
    hits_silent = np.array([s is not True for s in said[1]])
    ba, lo, hi = balanced_accuracy_ci(hits_firing, hits_silent, n_boot, rng)
    probs = [a.yes_probability for a in (*answers_firing, *answers_silent)]
    area = None
    if all(p is not None for p in probs):
        p = np.array(probs, dtype=np.float64)
        area = auc(p[: len(answers_firing)], p[len(answers_firing) :])
    return Score(ba, lo, hi, area, sum(s is None for s in said[0] + said[1]))


def neuron_codes(reps: np.ndarray, fit_mask: np.ndarray, active_quantile: float) -> sp.csr_matrix:
    """Neurons as sparse units: on each row, how far each neuron lies above its ``active_quantile``
    over the fit rows (the rule test's "active"), 0 elsewhere."""
    cut = np.quantile(reps[fit_mask], active_quantile, axis=0)
    return sp.csr_matrix(np.maximum(reps - cut, 0.0))


def _ask_all(client: ChatClient, prompts: list[list[dict[str, str]]], max_tokens: int, cfg: ExplainConfig,
             desc: str) -> list[Completion]:
    pool = ThreadPoolExecutor(max_workers=cfg.concurrency)
    futures = [pool.submit(client.complete, p, max_tokens) for p in prompts]
    try:
        return [f.result() for f in progress(futures, desc, total=len(futures))]
    finally:
        # on an error or Ctrl-C, drop the requests not yet sent instead of waiting for them all
        pool.shutdown(wait=False, cancel_futures=True)


def explain_units(
    acts: sp.spmatrix, seqs: Sequences, meta: ItemMeta, fit_mask: np.ndarray, client: ChatClient,
    cfg: ExplainConfig, units: np.ndarray | None = None, shuffled: bool | None = None, family: str = "sae",
) -> list[dict[str, Any]]:
    """Explain and score ``units`` (default: a seeded draw of ``cfg.n_latents`` eligible ones) of
    ``acts`` (rows x units). One record per unit; with ``shuffled`` (default ``cfg.shuffled``)
    each record also holds the score of its rows under another unit's explanation (the units
    shifted cyclically by a seeded amount, so no unit keeps its own)."""
    acts = sp.csc_matrix(acts)
    fit_mask = np.asarray(fit_mask, dtype=bool)
    rng = np.random.default_rng([cfg.seed, 0xE4])
    eligible = eligible_units(acts, seqs.users, fit_mask, cfg)
    if units is None:
        units = np.sort(rng.choice(eligible, min(cfg.n_latents, len(eligible)), replace=False))
    else:
        units = np.asarray(units, dtype=np.int64)
        bad = np.setdiff1d(units, eligible)
        if len(bad):
            raise ConfigError(f"explain: latents {bad[:10].tolist()} fire on too few rows to be explained and scored "
                              f"(need {cfg.n_examples} fit users, {cfg.n_firing} firing and {cfg.n_silent} silent held-out rows)")
    if len(units) == 0:
        return []
    picked = [unit_rows(acts, int(j), seqs.users, fit_mask, cfg, rng) for j in units]
    terms = item_terms(meta)
    background = np.flatnonzero(fit_mask)
    if len(background) > cfg.n_background_rows:
        background = np.sort(rng.choice(background, cfg.n_background_rows, replace=False))
    shares = background_share(seqs, background, terms, cfg.n_titles)
    words = [keywords(seqs, ur.keyword_rows, ur.keyword_weights, terms, shares, cfg.n_titles, cfg.n_keywords)
             for ur in picked]
    asked = [explain_prompt(seqs, ur, w, cfg.n_titles) for ur, w in zip(picked, words, strict=True)]
    explained = _ask_all(client, asked, cfg.explanation_tokens, cfg, f"explain {family}")
    texts = [c.text.strip() for c in explained]
    shuffle = cfg.shuffled if shuffled is None else shuffled
    shift = int(rng.integers(1, len(units))) if shuffle and len(units) > 1 else 0
    judged = [(i, i) for i in range(len(units))] + ([(i, (i + shift) % len(units)) for i in range(len(units))] if shift else [])
    prompts = []
    for i, e in judged:
        rows = np.concatenate([picked[i].firing, picked[i].silent])
        prompts += [score_prompt(texts[e], seqs.text(int(r), cfg.n_titles)) for r in rows]
    answers = _ask_all(client, prompts, cfg.answer_tokens, cfg, f"score {family}")
    per = cfg.n_firing + cfg.n_silent
    records = []
    boot = np.random.default_rng([cfg.seed, 0xB007])
    for i, ur in enumerate(picked):
        own = _scored(answers[i * per : (i + 1) * per], cfg, boot)
        record: dict[str, Any] = {
            "family": family, "unit": int(ur.unit), "explanation": texts[i], "keywords": words[i],
            "examples": [{"user": int(seqs.users[r]), "position": int(seqs.positions[r]), "level": int(lv)}
                         for r, lv in zip(ur.examples, ur.levels, strict=True)],
            "n_firing": cfg.n_firing, "n_silent": cfg.n_silent, **own,
        }
        if shift:
            j = len(units) + i
            record["shuffled_from"] = int(units[(i + shift) % len(units)])
            record["shuffled"] = _scored(answers[j * per : (j + 1) * per], cfg, boot)
        records.append(record)
    return records


def _scored(answers: Sequence[Completion], cfg: ExplainConfig, rng: np.random.Generator) -> dict[str, Any]:
    s = score(answers[: cfg.n_firing], answers[cfg.n_firing :], cfg.n_boot, rng)
    return {"balanced_accuracy": s.balanced_accuracy, "ci_low": s.ci_low, "ci_high": s.ci_high, "auc": s.auc,
            "n_unreadable": s.n_unreadable}


def family_summary(scores: list[dict[str, Any]], n_boot: int, seed: int) -> dict[str, Any]:
    """Mean balanced accuracy over units with its interval, the share of units whose own interval
    lies above chance, and the mean AUC where every unit has one."""
    ba = np.array([s["balanced_accuracy"] for s in scores], dtype=np.float64)
    mean, lo, hi = mean_ci(ba, seed, n_boot)
    aucs = [s["auc"] for s in scores]
    return {
        "n": len(scores), "mean_balanced_accuracy": mean, "ci_low": lo, "ci_high": hi,
        "median_balanced_accuracy": float(np.median(ba)) if len(ba) else None,
        "share_above_chance": float(np.mean([s["ci_low"] > 0.5 for s in scores])) if scores else None,
        "mean_auc": float(np.mean(aucs)) if scores and all(a is not None for a in aucs) else None,
    }


def summarize(records: dict[str, list[dict[str, Any]]], cfg: ExplainConfig) -> dict[str, Any]:
    """Per family (``sae``, ``random_sae``, ...) and for the shuffled control, ``family_summary``."""
    out = {name: family_summary(recs, cfg.n_boot, cfg.seed) for name, recs in records.items()}
    shuffled = [r["shuffled"] for r in records.get("sae", []) if "shuffled" in r]
    if shuffled:
        out["shuffled"] = family_summary(shuffled, cfg.n_boot, cfg.seed)
    return out


def explain_run(run_dir: str | Path | Run, llm: LlmConfig, cfg: ExplainConfig = ExplainConfig(),
                latents: Sequence[int] | None = None, data_root: str | Path | None = None,
                controls: bool = True) -> dict[str, Any]:
    """Explain and score latents of the run folder ``run_dir`` (its path or an opened ``Run``,
    with a finished SAE stage) through the server of ``llm``, and write ``explain.json`` there.
    ``latents``: which SAE latents (None or empty: a seeded draw); ``controls``: also the neurons,
    the untrained SAE's latents and, when the run trained it, the untrained-model SAE's. Rows, the
    fit/held-out users and the controls are the interpretation stage's."""
    import torch

    from recsae.interpret.from_run import (
        control_model_inputs,
        interpreted_rows,
        representations,
        row_index,
        sparse_codes,
        top_recommendations,
    )
    from recsae.interpret.validate import split_users
    from recsae.io import write_json
    from recsae.probe.store import ActivationStore
    from recsae.rundir import RunDir
    from recsae.runs import Run
    from recsae.sae.model import CFG_FILE, TopKSAE, untrained_baseline
    from recsae.sources import model_source
    from recsae.utils import environment_info

    run = run_dir if isinstance(run_dir, Run) else Run.open(run_dir, data_root=data_root)
    icfg = run.config.interpret
    store, sae, split = run.store, run.sae, run.split
    rows = interpreted_rows(store, icfg.max_rows, run.config.seed)
    users, positions = row_index(store, rows)
    reps = representations(store, rows)
    histories = split.history("test")
    model = run.model
    model.eval()
    with torch.no_grad():
        top = top_recommendations(model, reps, users, positions, histories, k=1)[:, 0]
    meta = split.dataset.item_meta
    seqs = Sequences(users, positions, histories, top, item_texts(meta))
    fit_mask = split_users(users, icfg.fit_fraction, icfg.seed)
    client = ChatClient(llm, run.paths.llm_cache)
    chosen = None if latents is None or not len(latents) else np.unique(np.asarray(latents, dtype=np.int64))
    if chosen is not None and (chosen.min() < 0 or chosen.max() >= sae.cfg.m):
        raise ConfigError(f"explain: latents must be in [0, {sae.cfg.m}), got {chosen.tolist()[:10]}")
    records = {"sae": explain_units(sparse_codes(sae, reps), seqs, meta, fit_mask, client, cfg, units=chosen)}
    if controls:
        baseline = run.paths.random_sae
        random_sae = (TopKSAE.load(baseline, sae.device) if (baseline / CFG_FILE).is_file()
                      else untrained_baseline(sae.cfg, reps, run.config.seed, sae.device))
        families = {"neurons": (neuron_codes(reps, fit_mask, icfg.neuron_active_quantile), seqs),
                    "random_sae": (sparse_codes(random_sae, reps), seqs)}
        folder = run.paths.random_model_control
        untrained = (model_source(run.config).untrained(model, split, run.config.seed, run.device)
                     if (folder / RunDir.SAE / CFG_FILE).is_file() else None)
        if untrained is not None:  # as the interpretation reads it: its own codes and recommendations
            control = control_model_inputs(untrained, ActivationStore.open(folder / RunDir.ACTIVATIONS),
                                           TopKSAE.load(folder / RunDir.SAE, sae.device), split, rows=rows)
            recs = control.ctx.recs
            if recs is None or not (np.array_equal(control.ctx.users, users)
                                    and np.array_equal(control.ctx.positions, positions)):
                raise DataError("the untrained-model control's activation store does not hold the run's rows; rerun "
                                "its SAE stage", path=folder)
            families["random_model_sae"] = (control.acts, seqs._replace(top_item=recs[:, 0]))
        rcfg = dataclasses.replace(cfg, n_latents=len(records["sae"]) or cfg.n_latents)
        for name, (acts, family_seqs) in families.items():
            records[name] = explain_units(acts, family_seqs, meta, fit_mask, client, rcfg, shuffled=False, family=name)
    result = {
        "format_version": FORMAT_VERSION, "config": dataclasses.asdict(cfg), "seed": cfg.seed, "versions": environment_info(),
        "llm": {"base_url": llm.base_url, "model": llm.model, "logprobs": llm.logprobs},
        "sae_fingerprint": run.summary.get("fingerprints", {}).get("sae"),
        "n_rows": len(users), "n_fit_users": len(np.unique(users[fit_mask])), "n_val_users": len(np.unique(users[~fit_mask])),
        "summary": summarize(records, cfg),
        "latents": [r for recs in records.values() for r in recs],
    }
    write_json(run.paths.explain, result)
    log.info("explain: %d requests sent to %s, the rest read from %s", client.requests_sent, llm.endpoint, run.paths.llm_cache)
    return result
