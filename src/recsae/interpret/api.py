"""Top-level interpretation: vocabulary + features once, then the dictionary, validation and
evidence for the SAE latents and the two baselines (raw neurons, a random-init SAE)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsae.data.dataset import ItemMeta
from recsae.errors import ConfigError, DataError
from recsae.interpret.baselines import (
    coherence,
    decoder_concepts,
    explained_variance,
    planted_recovery,
    top_decoder_items,
    top_rows,
)
from recsae.interpret.concepts import ConceptConfig, ConceptVocab, build_vocabulary
from recsae.interpret.dictionary import (
    OP_NAMES,
    SELECTIONS,
    FitConfig,
    LatentStates,
    Rules,
    fit_rules,
    neuron_states,
    sae_states,
)
from recsae.interpret.faithfulness import (
    FaithConfig,
    ScoreFn,
    UnitEdits,
    causal_faithfulness,
    faithful_summary,
)
from recsae.interpret.features import FeatureConfig, FeatureSpace, RowContext, row_features
from recsae.interpret.probing import ProbeConfig
from recsae.interpret.validate import Validation, shuffled_rules, split_users, validate_rules
from recsae.rundir import RunDir
from recsae.utils import log

if TYPE_CHECKING:
    from recsae.distributed import World


@dataclass(frozen=True)
class InterpretConfig:
    """Settings of the interpretation stage."""

    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    """Concept vocabulary."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    """Per-row concept features."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Rule scoring on the fit rows."""
    fit_fraction: float = 0.7
    """Share of users whose rows fit the rules; the others validate them."""
    seed: int = 0
    """Seed of the user split."""
    band_quantile: float = 0.5
    """SAE latents fire strongly at or above this quantile of their non-zero fit activations."""
    neuron_active_quantile: float = 0.9
    """Neurons are 'active' at or above this quantile (top decile); their band is the top
    ``band_quantile`` of those values (top 5 %), exactly as for SAE latents."""
    neuron_inactive_quantile: float | None = None
    """None: a neuron is inactive wherever it is not active. A quantile (e.g. 0.5) instead
    counts only the rows below it as inactive and leaves the rest out of the confidence."""
    min_confidence: float = 0.8
    """Interpretable: validated confidence at least this ..."""
    min_firing_rows: int = 20
    """... computed from at least this many strongly firing validation rows."""
    n_top_rows: int = 10
    """Top-activating rows stored per latent."""
    n_top_items: int = 5
    """Top items by decoder direction · item embedding stored per latent."""
    coherence_rows: int = 50
    """Top-activating rows whose representations define a latent's coherence."""
    center_coherence: bool = True
    """Coherence on mean-centred representations (raw cosines share the model's mean direction)."""
    planted_attribute: str = "concept"
    """Multi-valued attribute holding planted concepts (synthetic data)."""
    recovery_f1: float = 0.8
    """A planted concept is recovered when a latent whose rule names it has this validated F1."""
    causal: bool = True
    """Test every validated unit's causal faithfulness when the model's scores are given."""
    faith: FaithConfig = field(default_factory=FaithConfig)
    """How the causal tests run."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """k-sparse probing of the next item's concepts (every unit family, and a dense probe on the
    representations as the ceiling); its ``ks`` empty turns it off."""
    probe_kinds: tuple[str, ...] = ("value", "band")
    """Concept kinds probed: attribute values (genres, categories, decades) and popularity bands."""
    max_rows: int | None = 500_000
    """Rows interpreted from a run's activation store (``from_run.run_inputs``): every row when it
    holds at most this many (ML-1M: 482k), else every row of a seeded sample of the users holding
    at most this many, so that the stage's memory stays bounded (about 4 kB per row); None: all."""


class Prepared(NamedTuple):
    """Everything computed once and shared by the SAE and its baselines."""

    vocab: ConceptVocab
    space: FeatureSpace
    feats: sp.csr_matrix
    fit_mask: np.ndarray


class UnitResult(NamedTuple):
    """Interpretation of one set of units (SAE latents, neurons or random-SAE latents)."""

    table: pd.DataFrame
    summary: dict[str, Any]


class ControlModel(NamedTuple):
    """The untrained-model control: an SAE trained with the same recipe on the representations
    of the same architecture with random, untrained weights, read through that model."""

    ctx: RowContext
    """Rows as in the trained model's store, with the untrained model's own top-K recommendations."""
    acts: sp.spmatrix
    """rows x m top-k activations of the control SAE."""
    reps: np.ndarray
    """rows x d representations of the untrained model."""
    decoder: np.ndarray
    decoder_bias: np.ndarray
    item_emb: np.ndarray
    """The untrained model's item embeddings."""
    score_fn: ScoreFn | None
    """The untrained model's scoring (for the causal tests)."""


class UnitCounts(NamedTuple):
    """The counted part of interpreting one family of units: the units' states, their rules
    fitted on the fit rows, validated on the validation rows, and the shuffled-rule control."""

    states: LatentStates
    rules: Rules
    val: Validation
    """The rules' validation."""
    shuffled: Validation
    """The validation of the shuffled rules (each unit of ``with_rule`` given another's)."""
    with_rule: np.ndarray
    """Alive units with a rule."""


class Counted(NamedTuple):
    """What ``count_interpretation`` computed for ``interpret``: the shared preparation and each
    family's counts (``sae``, ``neurons``, ``random_sae``, ``random_model_sae``)."""

    prep: Prepared
    units: dict[str, UnitCounts]
    random_model_prep: Prepared | None
    """The untrained-model control's preparation (its own recommendations), when it is given."""


class InterpretationResult(NamedTuple):
    """The SAE's table (one row per latent), the summary (``interpret.json``) and baselines."""

    table: pd.DataFrame
    summary: dict[str, Any]
    baselines: dict[str, pd.DataFrame]


def check_config(cfg: InterpretConfig) -> None:
    """Raise ``ConfigError`` naming every invalid option."""
    problems = []
    if not 0.0 < cfg.fit_fraction < 1.0:
        problems.append(f"fit_fraction must be in (0, 1), got {cfg.fit_fraction}")
    if cfg.fit.fit_target not in ("band", "active"):
        problems.append(f"fit.fit_target must be 'band' or 'active', got {cfg.fit.fit_target!r}")
    if cfg.fit.max_terms not in (1, 2):
        problems.append(f"fit.max_terms must be 1 or 2, got {cfg.fit.max_terms}")
    if cfg.fit.select not in SELECTIONS:
        problems.append(f"fit.select must be one of {SELECTIONS}, got {cfg.fit.select!r}")
    for name in ("band_quantile", "neuron_active_quantile", "neuron_inactive_quantile", "min_confidence"):
        if getattr(cfg, name) is not None and not 0.0 <= getattr(cfg, name) <= 1.0:
            problems.append(f"{name} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.max_rows is not None and cfg.max_rows < 1:
        problems.append(f"max_rows must be >= 1 (or None), got {cfg.max_rows}")
    if cfg.features.window < 1 or not cfg.features.share_thresholds:
        problems.append("features.window must be >= 1 and features.share_thresholds non-empty")
    if problems:
        raise ConfigError("invalid interpretation config: " + "; ".join(problems))


def prepare(ctx: RowContext, item_meta: ItemMeta, item_counts: np.ndarray, cfg: InterpretConfig,
            vocab: ConceptVocab | None = None) -> Prepared:
    """Vocabulary (built from ``cfg.concepts`` unless given), per-row features and the
    fit/validation user split."""
    check_config(cfg)
    if vocab is None:
        vocab = build_vocabulary(item_meta, item_counts, cfg.concepts, ctx.histories)
    feats, space = row_features(ctx, vocab, cfg.features)
    fit_mask = split_users(np.asarray(ctx.users), cfg.fit_fraction, cfg.seed)
    return Prepared(vocab, space, feats, fit_mask)


def _rule_text(rules: Rules, space: FeatureSpace, vocab: ConceptVocab, j: int) -> str:
    a, b, op = int(rules.feature_a[j]), int(rules.feature_b[j]), int(rules.op[j])
    if a < 0:
        return ""
    text = space.describe(a, vocab)
    return f"{text} {OP_NAMES[op]} {space.describe(b, vocab)}" if op else text


def _rule_kind(rules: Rules, space: FeatureSpace, j: int) -> str:
    sides = {"output" if space.side[f] == "output" else "input" for f in (rules.feature_a[j], rules.feature_b[j]) if f >= 0}
    return "mixed" if len(sides) > 1 else (sides.pop() if sides else "")


def interpret_units(
    acts: sp.spmatrix | np.ndarray,
    prep: Prepared,
    ctx: RowContext,
    cfg: InterpretConfig,
    *,
    dense: bool = False,
    reps: np.ndarray | None = None,
    decoder: np.ndarray | None = None,
    decoder_bias: np.ndarray | None = None,
    item_emb: np.ndarray | None = None,
    titles: list[str] | None = None,
    score_fn: ScoreFn | None = None,
    counts: UnitCounts | None = None,
) -> UnitResult:
    """Fit, validate and describe every unit of ``acts`` (rows x units).

    ``dense=True`` treats the units as raw neurons (top decile = active), else as sparse SAE
    latents (``acts`` a CSR matrix of non-zero activations). With ``reps`` (the rows'
    representations), ``decoder`` and ``decoder_bias`` (SAE latents; neurons need neither), the
    summary also says how much of the representations the interpretable units reconstruct.
    Every family gets the shuffled-explanation control; with ``score_fn`` (the model's scores of
    representations) and ``reps`` (and ``decoder`` for SAE latents), each validated unit's
    causal faithfulness is tested too. ``counts``: the units' ``count_units``, when counted
    already (under torchrun, by every rank together).
    """
    counts = counts or count_units(acts, prep, cfg, dense=dense)
    states, rules, val, shuffled, with_rule = counts
    fit_stats = rules.stats()
    n_rows = prep.feats.shape[0]
    m = acts.shape[1]
    freq = np.asarray(states.active.sum(axis=0)).ravel() / max(n_rows, 1)
    alive = _alive(acts, dense)
    interpretable = alive & (val.confidence >= cfg.min_confidence) & (val.n_band >= cfg.min_firing_rows)
    n_keep = max(cfg.n_top_rows, cfg.coherence_rows if reps is not None else 0)
    top = top_rows(acts, n_keep)
    coh = np.full(m, np.nan)
    if reps is not None:
        center = np.asarray(reps, dtype=np.float64).mean(axis=0) if cfg.center_coherence else None
        coh = coherence(reps, top.rows[:, : cfg.coherence_rows], center)
    users = np.asarray(ctx.users)
    positions = np.asarray(ctx.positions)
    tr = top.rows[:, : cfg.n_top_rows]
    last = np.where(
        (tr >= 0) & (positions[np.maximum(tr, 0)] > 0),
        ctx.histories.values[ctx.histories.indptr[users[np.maximum(tr, 0)]] + np.maximum(positions[np.maximum(tr, 0)], 1) - 1],
        0,
    )
    dec_items = (
        top_decoder_items(decoder, item_emb, cfg.n_top_items)
        if decoder is not None and item_emb is not None
        else np.zeros((m, 0), dtype=np.int64)
    )
    if decoder is not None and item_emb is not None:
        # what turning the latent up does to the ranking: the concept its decoder raises most selectively
        eligible = np.array([k != "item" for k in prep.vocab.kind], dtype=bool)
        pushes, pushes_sel = decoder_concepts(decoder, item_emb, prep.vocab.matrix, eligible)
    else:
        pushes, pushes_sel = np.full(m, -1, dtype=np.int64), np.full(m, np.nan)
    titles = titles or []

    def title_list(items: np.ndarray) -> list[list[str]]:
        return [[titles[i] if i < len(titles) else str(i) for i in row if i > 0] for row in items.tolist()]

    rule_concepts = [
        [int(prep.space.concept[f]) for f in (rules.feature_a[j], rules.feature_b[j]) if f >= 0] for j in range(m)
    ]
    anonymous = prep.vocab.anonymous or [False] * prep.vocab.n_concepts
    faith = None
    if cfg.causal and score_fn is not None and reps is not None and (dense or decoder is not None):
        faith = causal_faithfulness(
            score_fn, reps, _unit_edits(acts, states, decoder, dense),
            np.array([cs[0] if cs else -1 for cs in rule_concepts], dtype=np.int64), interpretable,
            ~prep.fit_mask, users, positions, ctx.histories, prep.vocab.matrix, prep.vocab.attribute,
            prep.vocab.kind, cfg.faith,
        )
    table = pd.DataFrame(
        {
            "latent": np.arange(m, dtype=np.int64),
            "alive": alive,
            "frequency": freq,
            "rule": [_rule_text(rules, prep.space, prep.vocab, j) for j in range(m)],
            "kind": [_rule_kind(rules, prep.space, j) for j in range(m)],
            "rule_concepts": [[prep.vocab.names[c] for c in cs] for cs in rule_concepts],
            "anonymous": [any(anonymous[c] for c in cs) for cs in rule_concepts],
            "op": [OP_NAMES[int(o)] for o in rules.op],
            "fit_support": rules.support,
            "fit_precision": fit_stats["precision"],
            "fit_recall": fit_stats["recall"],
            "fit_f1": fit_stats["f1"],
            "fit_lift": fit_stats["lift"],
            "val_rows": np.full(m, val.n_rows, dtype=np.int64),
            "val_firing": val.n_band.astype(np.int64),
            "val_inactive": val.n_inactive.astype(np.int64),
            "val_support": val.support.astype(np.int64),
            "val_precision": val.precision,
            "val_recall": val.recall,
            "val_f1": val.f1,
            "confidence": val.confidence,
            "confidence_low": val.ci_low,
            "confidence_high": val.ci_high,
            "interpretable": interpretable,
            "coherence": coh,
            "top_users": [[int(users[r]) for r in row if r >= 0] for row in tr.tolist()],
            "top_positions": [[int(positions[r]) for r in row if r >= 0] for row in tr.tolist()],
            "top_activations": [[float(v) for v in row if v == v] for row in top.values[:, : cfg.n_top_rows].tolist()],
            "example_items": [[int(i) for i in row if i > 0] for row in last.tolist()],
            "example_titles": title_list(last),
            "pushes": [prep.vocab.names[c] if c >= 0 else "" for c in pushes.tolist()],
            "pushes_selectivity": pushes_sel,
            "top_items": [[int(i) for i in row] for row in dec_items.tolist()],
            "top_item_titles": title_list(dec_items),
        }
    )
    if faith is not None:
        table = table.assign(
            faithful=faith.faithful, faith_rows=faith.n_rows, faith_effect=faith.effect,
            faith_low=faith.ci_low, faith_high=faith.ci_high, faith_p=faith.p_value, faith_q=faith.q_value,
            faith_swing=faith.swing, faith_control_swing=faith.control_swing, faith_selectivity=faith.selectivity,
            ablate_share_drop=faith.ablate_share_drop, amplify_share_rise=faith.amplify_share_rise,
        )
    summary = _summary(table, cfg)
    summary["shuffled_control"] = _shuffled_summary(shuffled, with_rule, cfg)
    if faith is not None:
        summary["faithful"] = faithful_summary(faith, alive, interpretable)
    summary["explained_by_interpretable"] = _explained_by(acts, reps, decoder, decoder_bias, interpretable, dense)
    if cfg.planted_attribute:
        planted = [c for c, a in enumerate(prep.vocab.attribute) if a == cfg.planted_attribute and prep.vocab.kind[c] == "value"]
        if planted:
            share, per = planted_recovery(rule_concepts, val.f1, planted, prep.vocab.names, cfg.recovery_f1)
            summary["planted_recovered"] = share
            summary["planted"] = per
    return UnitResult(table, summary)


def _alive(acts: sp.spmatrix | np.ndarray, dense: bool) -> np.ndarray:
    """Units that fire on some row (every neuron)."""
    if dense:
        return np.full(acts.shape[1], acts.shape[0] > 0)
    return np.asarray((sp.csr_matrix(acts) != 0).sum(axis=0)).ravel() > 0


def count_units(acts: sp.spmatrix | np.ndarray, prep: Prepared, cfg: InterpretConfig, *, dense: bool = False,
                world: World | None = None) -> UnitCounts:
    """The counted part of ``interpret_units``: the units' states, their rules fitted on the fit
    rows and validated (with the shuffled-rule control) on the validation rows. ``world``
    (torchrun, every rank with the same arguments): the rows x concepts count products are
    shared out, each rank counting its block of the rows, and summed over the ranks: every rank
    returns one process's counts."""
    n_rows = prep.feats.shape[0]
    if acts.shape[0] != n_rows:
        raise ValueError(f"acts has {acts.shape[0]} rows, the features {n_rows}")
    fit_idx = np.flatnonzero(prep.fit_mask)
    val_idx = np.flatnonzero(~prep.fit_mask)
    states: LatentStates = (
        neuron_states(np.asarray(acts), fit_idx, cfg.neuron_active_quantile, cfg.band_quantile,
                      cfg.neuron_inactive_quantile)
        if dense
        else sae_states(sp.csr_matrix(acts), fit_idx, cfg.band_quantile)
    )
    fit_states = states.subset(fit_idx)
    fit_target = fit_states.band if cfg.fit.fit_target == "band" else fit_states.active
    rules = fit_rules(prep.feats[fit_idx], fit_target, cfg.fit, engaged=fit_states.engaged, world=world)
    val_states = states.subset(val_idx)
    val_feats = prep.feats[val_idx]
    val = validate_rules(val_feats, val_states, rules, world)
    with_rule = np.flatnonzero(_alive(acts, dense) & (rules.feature_a >= 0))
    shuffled = validate_rules(val_feats, val_states, shuffled_rules(rules, with_rule, cfg.seed), world)
    return UnitCounts(states, rules, val, shuffled, with_rule)


def _sparse_probing(ctx: RowContext, prep: Prepared, acts: dict[str, Any], reps: np.ndarray | None,
                    cfg: InterpretConfig) -> dict[str, Any]:
    """k-sparse probing (docs/method.md §7.5): per concept of ``cfg.probe_kinds``, does the row's next
    item carry it? Every family's top-k units by mean difference on the fit users feed a logistic
    probe scored on the validation users; the dense probe on the representations is the
    ceiling; ``gap_k1`` is the SAE's mean AUC minus each control's at k = 1, over the concepts
    both probed, with a 95 % bootstrap interval."""
    import torch

    from recsae.interpret.probing import (
        MAX_PROBE_ENTRIES,
        auc_gap,
        dense_probe,
        next_item_labels,
        probe_summary,
        sparse_probe,
    )

    labels = next_item_labels(np.asarray(ctx.users), np.asarray(ctx.positions), ctx.histories, prep.vocab.matrix)
    concepts = np.flatnonzero(np.isin(np.asarray(prep.vocab.kind, dtype=object), list(cfg.probe_kinds)))
    # The families' probes are independent and mostly single-threaded NumPy, which releases the
    # GIL: they run side by side, one per thread torch may use (the same numbers in any order),
    # sharing the memory one probe at a time would hold.
    workers = max(1, min(torch.get_num_threads(), len(acts) + (reps is not None)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = {}
        for name, a in acts.items():  # a family probes only the ks it has units for
            ks = tuple(k for k in cfg.probe.ks if k <= a.shape[1])
            if ks:
                jobs[name] = pool.submit(sparse_probe, a, labels.matrix, prep.fit_mask, concepts,
                                         replace(cfg.probe, ks=ks), keep=labels.has_next,
                                         max_entries=MAX_PROBE_ENTRIES / workers)
        if reps is not None:
            jobs["dense"] = pool.submit(dense_probe, reps, labels.matrix, prep.fit_mask, concepts, cfg.probe,
                                        keep=labels.has_next)
        probes = {name: job.result() for name, job in jobs.items()}
    out: dict[str, Any] = {name: probe_summary(r, prep.vocab.names, cfg.seed) for name, r in probes.items()}
    results = {name: r for name, r in probes.items() if name != "dense"}
    k = min(cfg.probe.ks)
    if "sae" in results:
        out["gap_k1"] = {name: auc_gap(results["sae"], r, k, cfg.seed) for name, r in results.items()
                         if name != "sae" and k in r.auc}
    return out


def _unit_edits(acts: sp.spmatrix | np.ndarray, states: LatentStates, decoder: np.ndarray | None, dense: bool) -> UnitEdits:
    """What an edit of each unit changes: SAE latents their activation along the decoder row;
    neurons their deviation from the mean along their axis, on the rows where they are active
    (ablation sets them to the mean)."""
    if not dense:
        assert decoder is not None
        return UnitEdits(sp.csr_matrix(acts), np.asarray(decoder, dtype=np.float32))
    x = np.asarray(acts, dtype=np.float32)
    active = sp.csr_matrix(states.active)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(active.indptr))
    values = x[rows, active.indices] - x.mean(axis=0)[active.indices]
    coef = sp.csr_matrix((values, active.indices, active.indptr), shape=x.shape)
    return UnitEdits(coef, np.eye(x.shape[1], dtype=np.float32))


def _shuffled_summary(val: Any, units: np.ndarray, cfg: InterpretConfig) -> dict[str, Any]:
    """The shuffled-explanation control: confidences of units validated with another unit's rule."""
    conf = val.confidence[units]
    conf = conf[np.isfinite(conf)]
    passing = (val.confidence[units] >= cfg.min_confidence) & (val.n_band[units] >= cfg.min_firing_rows)
    return {
        "n_units": len(units),
        "median_confidence": float(np.median(conf)) if len(conf) else None,
        "share_interpretable": float(passing.mean()) if len(units) else 0.0,
    }


def _explained_by(
    acts: sp.spmatrix | np.ndarray, reps: np.ndarray | None, decoder: np.ndarray | None,
    decoder_bias: np.ndarray | None, keep: np.ndarray, dense: bool,
) -> float | None:
    """1 - FVU of the representations rebuilt from the ``keep`` units alone (None without the
    inputs it needs); neurons: the kept dimensions' share of the variance."""
    if reps is None:
        return None
    if dense:
        x = np.asarray(acts, dtype=np.float64)
        mean = x.mean(axis=0)
        return _nan_to_none(explained_variance(reps, x - mean, np.eye(x.shape[1]), mean, keep))
    if decoder is None or decoder_bias is None:
        return None
    return _nan_to_none(explained_variance(reps, acts, decoder, decoder_bias, keep))


def _nan_to_none(x: float) -> float | None:
    return None if x != x else float(x)


def _summary(table: pd.DataFrame, cfg: InterpretConfig) -> dict[str, Any]:
    alive = table["alive"].to_numpy()
    interp = table["interpretable"].to_numpy()
    conf = table.loc[alive, "confidence"].dropna().to_numpy()
    coh = table["coherence"].to_numpy()
    n_alive = int(alive.sum())
    testable = alive & (table["val_firing"].to_numpy() >= cfg.min_firing_rows)
    n_testable = int(testable.sum())
    return {
        "n_units": len(table),
        "n_alive": n_alive,
        "n_interpretable": int(interp.sum()),
        "share_interpretable": float(interp.sum() / n_alive) if n_alive else 0.0,
        "n_testable": n_testable,
        "share_interpretable_of_testable": float(interp.sum() / n_testable) if n_testable else 0.0,
        "confidence_quantiles": {
            str(q): _nan_to_none(float(np.quantile(conf, q))) if len(conf) else None for q in (0.1, 0.25, 0.5, 0.75, 0.9)
        },
        "confidence_histogram": np.histogram(conf, bins=10, range=(0.0, 1.0))[0].tolist(),
        "median_val_f1": _nan_to_none(float(np.median(table.loc[alive, "val_f1"]))) if n_alive else None,
        "coherence": _nan_to_none(float(np.nanmean(coh[interp]))) if np.isfinite(coh[interp]).any() else None,
        "coherence_all": _nan_to_none(float(np.nanmean(coh[alive]))) if np.isfinite(coh[alive]).any() else None,
        "rule_kinds": table.loc[interp, "kind"].value_counts().to_dict(),
    }


def count_interpretation(
    ctx: RowContext,
    item_meta: ItemMeta,
    item_counts: np.ndarray,
    sae_acts: sp.spmatrix,
    *,
    neuron_acts: np.ndarray | None = None,
    random_acts: sp.spmatrix | None = None,
    random_model: ControlModel | None = None,
    cfg: InterpretConfig | None = None,
    vocab: ConceptVocab | None = None,
    world: World | None = None,
) -> Counted:
    """The counted part of ``interpret`` (the arguments as there): the vocabulary and features,
    and every family's rules fitted and validated. Under torchrun every rank calls it with the
    same arguments (``world``): the rows x concepts count products are shared out among the
    ranks and summed, and every rank returns one process's counts; rank 0 then passes them to
    ``interpret`` (``counted``), which does the rest alone."""
    cfg = cfg or InterpretConfig()
    prep = prepare(ctx, item_meta, item_counts, cfg, vocab)
    log.info("interpret: %d rows, %d concepts, %d features", len(ctx.users), prep.vocab.n_concepts, prep.space.n_features)
    units = {"sae": count_units(sae_acts, prep, cfg, world=world)}
    if neuron_acts is not None:
        units["neurons"] = count_units(neuron_acts, prep, cfg, dense=True, world=world)
    if random_acts is not None:
        units["random_sae"] = count_units(random_acts, prep, cfg, world=world)
    rm_prep = None
    if random_model is not None:
        # the same users, concepts and fit/validation split; the output side from its own recommendations
        feats, space = row_features(random_model.ctx, prep.vocab, cfg.features)
        rm_prep = Prepared(prep.vocab, space, feats, prep.fit_mask)
        units["random_model_sae"] = count_units(random_model.acts, rm_prep, cfg, world=world)
    return Counted(prep, units, rm_prep)


def interpret(
    ctx: RowContext,
    item_meta: ItemMeta,
    item_counts: np.ndarray,
    sae_acts: sp.spmatrix,
    *,
    neuron_acts: np.ndarray | None = None,
    random_acts: sp.spmatrix | None = None,
    reps: np.ndarray | None = None,
    sae_decoder: np.ndarray | None = None,
    random_decoder: np.ndarray | None = None,
    sae_decoder_bias: np.ndarray | None = None,
    random_decoder_bias: np.ndarray | None = None,
    item_emb: np.ndarray | None = None,
    score_fn: ScoreFn | None = None,
    random_model: ControlModel | None = None,
    cfg: InterpretConfig | None = None,
    vocab: ConceptVocab | None = None,
    counted: Counted | None = None,
) -> InterpretationResult:
    """Interpret an SAE's latents and, when given, the controls through the same pipeline.

    ``sae_acts``/``random_acts``: rows x m sparse activations (the SAE's top-k per row);
    ``neuron_acts``: rows x d dense (usually the representations themselves); ``reps``: rows x d
    representations for coherence; decoders (m x d) and ``item_emb`` ((n_items + 1) x d) give
    each latent's top items; with the decoder biases (d) as well, ``explained_by_interpretable``
    is the share of the representations' variance the interpretable latents rebuild. With
    ``score_fn`` (the model's item scores of representations) every validated unit's causal
    faithfulness is tested. ``random_model``: the untrained-model control, interpreted with its
    own recommendations and tested through its own model. Rows follow ``ctx`` (users, prefix
    positions, top-K recs). ``counted``: ``count_interpretation`` of the same arguments, when
    done already (under torchrun, by every rank together).
    """
    from recsae.io import FORMAT_VERSION
    from recsae.utils import environment_info

    cfg = cfg or InterpretConfig()
    if counted is None:
        counted = count_interpretation(ctx, item_meta, item_counts, sae_acts, neuron_acts=neuron_acts,
                                       random_acts=random_acts, random_model=random_model, cfg=cfg, vocab=vocab)
    prep, counts = counted.prep, counted.units
    kw = {"reps": reps, "item_emb": item_emb, "titles": item_meta.title, "score_fn": score_fn}
    sae = interpret_units(sae_acts, prep, ctx, cfg, decoder=sae_decoder, decoder_bias=sae_decoder_bias,
                          counts=counts["sae"], **kw)  # type: ignore[arg-type]
    users = np.asarray(ctx.users)
    summary: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "config": asdict(cfg),
        "seed": cfg.seed,
        "versions": environment_info(),
        "n_rows": len(users),
        "n_fit_rows": int(prep.fit_mask.sum()),
        "n_val_rows": int((~prep.fit_mask).sum()),
        "n_fit_users": len(np.unique(users[prep.fit_mask])),
        "n_val_users": len(np.unique(users[~prep.fit_mask])),
        "n_concepts": prep.vocab.n_concepts,
        "n_features": prep.space.n_features,
        **sae.summary,
    }
    if any(prep.vocab.anonymous or ()):  # concepts whose names carry their top items instead of a meaning
        summary["anonymous_concepts"] = {
            "n": int(sum(prep.vocab.anonymous or ())),
            "attributes": sorted({a for a, anon in zip(prep.vocab.attribute, prep.vocab.anonymous or (), strict=True) if anon}),
            "n_interpretable_latents": int((sae.table["interpretable"] & sae.table["anonymous"]).sum()),
        }
    baselines: dict[str, pd.DataFrame] = {}
    results: dict[str, UnitResult] = {"sae": sae}
    if neuron_acts is not None:
        d = np.asarray(neuron_acts).shape[1]
        log.info("interpret: neurons")
        results["neurons"] = interpret_units(neuron_acts, prep, ctx, cfg, dense=True, decoder=np.eye(d, dtype=np.float32),
                                             counts=counts["neurons"], **kw)  # type: ignore[arg-type]
    if random_acts is not None:
        log.info("interpret: untrained SAE")
        results["random_sae"] = interpret_units(random_acts, prep, ctx, cfg, decoder=random_decoder, decoder_bias=random_decoder_bias,
                                                counts=counts["random_sae"], **kw)  # type: ignore[arg-type]
    if random_model is not None:
        log.info("interpret: SAE of the untrained model")
        rm = random_model
        assert counted.random_model_prep is not None  # counted with the control
        results["random_model_sae"] = interpret_units(
            rm.acts, counted.random_model_prep, rm.ctx, cfg, reps=rm.reps, decoder=rm.decoder,
            decoder_bias=rm.decoder_bias, item_emb=rm.item_emb, titles=item_meta.title, score_fn=rm.score_fn,
            counts=counts["random_model_sae"],
        )
    for name, res in results.items():
        if name != "sae":
            baselines[name] = res.table
            summary[name] = {k: v for k, v in res.summary.items() if k not in ("planted",)}
            if "planted_recovered" in res.summary:
                summary[name]["planted_recovered"] = res.summary["planted_recovered"]
    for key in ("coherence", "coherence_all", "explained_by_interpretable"):
        summary[key] = {name: res.summary[key] for name, res in results.items()}
    if cfg.probe.ks:
        acts = {"sae": sae_acts, "neurons": neuron_acts, "random_sae": random_acts,
                "random_model_sae": random_model.acts if random_model is not None else None}
        summary["sparse_probing"] = _sparse_probing(ctx, prep, {k: v for k, v in acts.items() if v is not None}, reps, cfg)
    controls = {name: res.summary["shuffled_control"] for name, res in results.items()}
    summary["shuffled_control"] = controls["sae"] | {"by_family": controls}
    if "faithful" in sae.summary:
        summary["faithful"] = {name: res.summary["faithful"] for name, res in results.items() if "faithful" in res.summary}
    return InterpretationResult(sae.table, summary, baselines)


def write_interpretation(result: InterpretationResult, out_dir: str | Path) -> None:
    """Write ``interpretation.parquet`` (SAE latents) and ``interpret.json`` atomically."""
    from recsae.io import write_json, write_parquet

    out = RunDir(out_dir)
    write_parquet(out.interpretation, result.table)
    write_json(out.interpret_summary, result.summary)


def read_interpretation(run_dir: str | Path) -> pd.DataFrame:
    """The interpretation table (one row per latent) that ``write_interpretation`` wrote to
    ``run_dir``; DataError naming the file if it is missing, damaged or has no ``latent`` column."""
    import pyarrow as pa

    path = RunDir(run_dir).interpretation
    if not path.is_file():
        raise DataError(
            f"no {RunDir.INTERPRETATION} in this run folder; run `recsae run --out {run_dir}` (which interprets the "
            "SAE) or call recsae.interpret.interpret(...) and write_interpretation(...)",
            path=run_dir,
        )
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise DataError(f"not a readable Parquet file ({err}); expected the interpretation table", path=path) from err
    if "latent" not in table.columns:
        raise DataError("expected a 'latent' column (one row per latent)", path=path, field="latent")
    return table
