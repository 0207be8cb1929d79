"""``recsae run``: data → model → harvest → SAE → splice → interpret → steer → report.

Every stage writes its outputs atomically into the run folder and ``summary.json`` is
rewritten after each one, so a killed run keeps what it finished. Each stage has a fingerprint
(a hash of its options and of the previous stage's fingerprint, ``stage_fingerprints``): a
rerun with the same folder reuses a finished stage only when its fingerprint is unchanged,
resumes a killed stage only when it had the same inputs, and otherwise redoes it and every
later stage, removing their outputs first, so ``summary.json`` always describes what is on disk.
``force`` redoes everything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsae.data.dataset import SplitData
from recsae.data.registry import DatasetOptions
from recsae.errors import ConfigError
from recsae.io import FORMAT_VERSION, read_json, remove_stale_partials, write_json
from recsae.rundir import RunDir
from recsae.sae.config import RUN_EPOCHS, RUN_MIN_ROWS, SaeTrainConfig
from recsae.utils import default_device, environment_info, heartbeat, log, seed_everything

SUMMARY = RunDir.SUMMARY


@dataclass(frozen=True)
class RunConfig:
    """Options of a whole run."""

    data: DatasetOptions = field(default_factory=DatasetOptions)
    """Which dataset, with which filters."""
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra options of the dataset's loader (e.g. the synthetic generator's ``n_users``)."""
    protocol: str = "auto"
    """Split: auto (the source's own split, else leave-one-out; random for bpr and lightgcn on data
    without timestamps), leave-one-out, random, time or given."""
    model: str = "sasrec"
    """Recommender to train (sasrec, gru4rec, bpr, lightgcn)."""
    epochs: int = 200
    """Most training epochs of the recommender (early stopping usually ends sooner)."""
    patience: int | None = None
    """Early-stopping patience of the recommender, in epochs (None: the preset's, else 10)."""
    lr: float | None = None
    """Adam learning rate of the recommender (None: the preset's, else 1e-3)."""
    batch_size: int | None = None
    """Training batch size of the recommender (None: the preset's, else the model's)."""
    max_len: int | None = None
    """Longest history a sequential model reads (None: the preset's, else 200)."""
    sae_k: int = 32
    """Active latents per row."""
    sae_expansion: int = 32
    """Latents per input dimension."""
    sae_epochs: int = RUN_EPOCHS
    """Passes of the SAE over the training rows (the epoch with the best validation FVU is kept). On ML-1M
    (470k rows) 16 passes instead of 4 raised the share of interpretable latents from 52.9 % to
    56.7 % and cut the validation FVU from 0.046 to 0.040 (label-smoothed SASRec: 55.8 -> 61.6 %;
    64 passes gave no more, 60.4 %)."""
    sae_min_rows: int = RUN_MIN_ROWS
    """The SAE trains on at least this many rows in all, so a small activation store gets more
    passes (ML-1M's 470k training rows keep ``sae_epochs``; ml-latest-small's 27k get 55: FVU 0.143 -> 0.083
    with 4 -> 70 passes). 0: exactly ``sae_epochs``."""
    sae_balance: float = 0.0
    """Load balancing of latent usage (``SaeTrainConfig.balance_rate``; 0: plain TopK). On ML-1M
    (SASRec, 2,048 latents, k 32) a rate of 0.03 raised the rule-test share (60 % against 9 %)
    but an untrained SAE scores 54 % there; it cost fidelity (validation FVU 0.030 against 0.011,
    top-10 overlap 0.838 against 0.910) and 1-unit probing of the next item's concepts (mean AUC
    0.548 against 0.669; untrained SAE 0.598): benchmarks/bench_sae_defaults.py."""
    sae_balance_until: float = 1.0
    """Share of the SAE's training rows after which balancing stops and its selection bias decays
    to zero by the end (``SaeTrainConfig.balance_until``; 1.0: balanced throughout)."""
    sae_aux_relu: bool = False
    """AuxK reads the dead latents' pre-activations through the ReLU (``SaeConfig.aux_relu``).
    False (the default) lets it revive latents whose pre-activation is negative on every row: on
    ML-1M a plain TopK SAE then ends with 0.1 % dead latents instead of most of them."""
    controls: bool = True
    """Train the controls beside the SAE (an SAE on the untrained model's representations, and
    the SAE again with another seed) and interpret them through the same pipeline."""
    causal: bool = True
    """Test every validated unit's causal faithfulness (SAE, neurons and every control)."""
    steer_concepts: tuple[str, ...] = ()
    """Concepts to steer toward; empty: chosen automatically from the interpretation."""
    stages: tuple[str, ...] = ("model", "sae", "interpret", "steer", "report")
    """Stages to run. The model and SAE stages also run (or resume from disk) whenever a later
    stage is asked for, since every later stage needs them."""
    seed: int = 0
    """Seed of data generation, initialisations and samples."""
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda, ..."""

    def __post_init__(self) -> None:
        _check_options(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"] = self.data.to_dict()
        return d


STAGES = ("model", "sae", "interpret", "steer", "report")

STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    # what each stage writes into the run folder (the model stage resumes through its trainer)
    "model": (RunDir.ACTIVATIONS,),
    "sae": (RunDir.SAE, RunDir.SPLICE, RunDir.RANDOM_SAE, RunDir.CONTROLS),
    "interpret": (RunDir.INTERPRETATION, RunDir.INTERPRET_SUMMARY),
    "steer": (RunDir.STEER,),
    "report": (RunDir.REPORT, RunDir.REPORT_DATA),
}
"""Run-folder entries per stage; a stage redone for new inputs removes its own and every later
stage's entries first, so nothing stale is ever read back."""


def stage_fingerprints(cfg: RunConfig) -> dict[str, str]:
    """A fingerprint per stage: a hash of the options the stage reads and of the fingerprint of
    the stage before it, so a changed option changes its stage's and every later stage's."""
    import hashlib
    import json

    model_opts, train_opts = model_settings(cfg)
    parts: dict[str, Any] = {
        "model": {"data": cfg.data.to_dict(), "data_kwargs": cfg.data_kwargs, "protocol": cfg.protocol,
                  "model": cfg.model, "model_opts": model_opts, "train": train_opts, "seed": cfg.seed},
        "sae": {"k": cfg.sae_k, "expansion": cfg.sae_expansion, "aux_relu": cfg.sae_aux_relu,
                "train": _sae_train_config(cfg).to_dict(), "controls": cfg.controls},
        "interpret": {"causal": cfg.causal, "seed": cfg.seed},
        "steer": {"concepts": list(cfg.steer_concepts), "seed": cfg.seed},
    }
    out: dict[str, str] = {}
    previous = ""
    for stage, opts in parts.items():
        text = json.dumps({"after": previous, "options": opts}, sort_keys=True, default=str)
        previous = out[stage] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out

PRESETS: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {
    # (dataset, model) -> (model options, training options), measured to train well and fast.
    # The synthetic histories hold 30-60 items and 1,500 users give few steps per epoch: a
    # short window, one block, smaller batches and a higher learning rate.
    ("synthetic", "sasrec"): ({"max_len": 50, "n_blocks": 1}, {"lr": 5e-3, "batch_size": 64, "patience": 3}),
    ("synthetic", "gru4rec"): ({"max_len": 50}, {"lr": 5e-3, "batch_size": 64, "patience": 3}),
    # MovieLens: smaller batches and lr 3e-3 reached a better validation NDCG@10 sooner than
    # 1e-3 / 128 (benchmarks/bench_models.py). Label smoothing 0.2 is not used here: it raised
    # test NDCG@10 only within noise (seeds 0/1: 0.129/0.128 -> 0.133/0.130), and at the strength
    # chosen on the validation items genre steering moved the smoothed model's top-10 shares less
    # (x1.3-x3.2 against x1.8-x3.8 where NDCG@10 stayed within 5 %; bench_steer.py --sweep genre,
    # 3,000 users); its SAE passed the rule test more often (61.6 % against 56.7 % interpretable)
    ("ml-1m", "sasrec"): ({}, {"lr": 3e-3, "batch_size": 64}),
    # ml-100k (943 users) overfits. Test NDCG@10 over seeds 0-4: window 200 / dropout 0.2 0.092 +- 0.007;
    # window 50 / dropout 0.4 0.097 +- 0.003 (and 2x faster); plus label smoothing 0.2 0.101 +- 0.003
    # (validation 0.115 -> 0.124). Its validation NDCG@10 is noisy: patience 10 stopped some seeds early.
    ("ml-100k", "sasrec"): (
        {"max_len": 50, "dropout": 0.4, "label_smoothing": 0.2}, {"lr": 3e-3, "batch_size": 64, "patience": 20},
    ),
    # GRU4Rec likewise: validation NDCG@10 0.106 -> 0.112 on each of seeds 0-4 (test 0.094 -> 0.096)
    ("ml-100k", "gru4rec"): (
        {"max_len": 50, "dropout": 0.4, "label_smoothing": 0.2}, {"lr": 3e-3, "batch_size": 64, "patience": 20},
    ),
    # 601 users: the default lr and batch leave SASRec at most-popular level
    ("ml-latest-small", "sasrec"): ({"max_len": 100}, {"lr": 5e-3, "batch_size": 64, "patience": 5}),
}
"""Tuned defaults; options given explicitly in ``RunConfig`` override them."""


def preset(
    dataset: str, model: str, model_opts: dict[str, Any] | None = None, train_opts: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tuned (model options, ``TrainConfig`` options) for a named dataset and a registry model
    name (empty where none was tuned), with the given options that are not None laid over them."""
    tuned_model, tuned_train = PRESETS.get((dataset, model), ({}, {}))
    given_model = {k: v for k, v in (model_opts or {}).items() if v is not None}
    given_train = {k: v for k, v in (train_opts or {}).items() if v is not None}
    return tuned_model | given_model, tuned_train | given_train


def model_settings(cfg: RunConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model config overrides and ``TrainConfig`` options for a run: preset, then explicit."""
    from recsae.models.registry import model_class

    model_opts, train_opts = preset(
        cfg.data.dataset, model_class(cfg.model).name, {"max_len": cfg.max_len},
        {"lr": cfg.lr, "batch_size": cfg.batch_size, "patience": cfg.patience},
    )
    return model_opts, {"epochs": cfg.epochs} | train_opts


class Run:
    """A run folder and its summary, rewritten after every stage."""

    def __init__(self, out: Path, cfg: RunConfig) -> None:
        self.out = out
        self.cfg = cfg
        prior = out / SUMMARY
        self.summary: dict[str, Any] = read_json(prior) if prior.is_file() else {}
        self.summary.update(format_version=FORMAT_VERSION, seed=cfg.seed, config=cfg.to_dict(), versions=environment_info())
        self.summary.setdefault("seconds", {})
        self.fingerprints = stage_fingerprints(cfg)

    def save(self) -> None:
        write_json(self.out / SUMMARY, self.summary)

    def reusable(self, stage: str, *files: str) -> bool:
        """True when ``stage`` finished for exactly the current inputs (same fingerprint) and its
        ``files`` are on disk."""
        done = self.summary.get("fingerprints", {}).get(stage)
        return done == self.fingerprints[stage] and all((self.out / f).exists() for f in files)

    def _forget(self, stages: tuple[str, ...], files: bool = True) -> None:
        import shutil

        for name in stages:
            for entry in STAGE_OUTPUTS.get(name, ()) if files else ():
                path = self.out / entry
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            self.summary.pop(name, None)
            for marks in ("fingerprints", "started"):
                self.summary.get(marks, {}).pop(name, None)

    def begin(self, stage: str) -> None:
        """Prepare to compute ``stage``: every later stage's outputs and summary parts go (they
        would be stale); the stage's own partial outputs are kept only when a killed attempt
        had the same inputs, so that its trainer resumes them, and removed otherwise."""
        i = STAGES.index(stage)
        resumable = self.summary.get("started", {}).get(stage) == self.fingerprints[stage]
        self._forget(STAGES[i + 1:])
        self._forget((stage,), files=not resumable)
        self.summary.setdefault("started", {})[stage] = self.fingerprints[stage]
        self.save()

    def done(self, stage: str) -> None:
        """Record that ``stage`` now holds the results of the current inputs."""
        self.summary.setdefault("fingerprints", {})[stage] = self.fingerprints[stage]

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("== %s", name)
        t0 = time.perf_counter()
        with heartbeat(name):  # off a terminal, a line every 30 s in steps without progress lines
            yield
        self.summary["seconds"][name] = round(time.perf_counter() - t0, 2)
        self.save()


def _sae_train_config(cfg: RunConfig) -> SaeTrainConfig:
    return SaeTrainConfig(epochs=cfg.sae_epochs, min_rows=cfg.sae_min_rows, seed=cfg.seed, balance_rate=cfg.sae_balance,
                          balance_until=cfg.sae_balance_until)


def _check_options(cfg: RunConfig) -> None:
    """Build every config the run will build, so that a bad option fails before any data is
    loaded or file written. The built-in models' width d comes from their config, which bounds k."""
    from recsae.models.registry import model_config
    from recsae.models.trainer import TrainConfig
    from recsae.sae.config import SaeConfig

    if cfg.sae_k < 1 or cfg.sae_expansion < 1:
        raise ConfigError(f"sae: k and expansion must be >= 1, got k={cfg.sae_k}, expansion={cfg.sae_expansion}")
    _sae_train_config(cfg)
    model_opts, train_opts = model_settings(cfg)
    TrainConfig(**train_opts)
    SaeConfig(d_in=model_config(cfg.model, **model_opts).dim, expansion=cfg.sae_expansion, k=cfg.sae_k)


def run_pipeline(out: str | Path, cfg: RunConfig = RunConfig(), force: bool = False) -> dict[str, Any]:
    """Run the whole job into ``out`` and return the summary (also in ``out/summary.json``)."""
    unknown = set(cfg.stages) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown stage(s) {sorted(unknown)}: expected some of {', '.join(STAGES)}")
    out = Path(out)
    remove_stale_partials(out)  # temporaries of a killed earlier run in this folder
    seed_everything(cfg.seed)
    device = default_device(cfg.device)
    run = Run(out, cfg)
    if force:  # nothing of an earlier attempt is resumed
        run.summary.pop("started", None)
    # the model and the SAE are needed by every later stage: they run (or resume) whenever a
    # stage at or after them is asked for
    last = max((STAGES.index(s) for s in cfg.stages), default=-1)

    with run.stage("data"):
        split = _data_stage(run, force)
    # written once the data loaded, so a bad dataset leaves no run folder behind
    write_json(out / RunDir.CONFIG, {"format_version": FORMAT_VERSION, "config": cfg.to_dict(),
                                     "seed": cfg.seed, "versions": environment_info()})
    if "steer" in cfg.stages and cfg.steer_concepts:  # a typo fails now, not after the training
        from recsae.steer.targets import concept_items

        items = concept_items(split)
        for concept in cfg.steer_concepts:
            items.mask(concept)
    if last < STAGES.index("model"):
        return run.summary
    with run.stage("model"):
        if force or not run.reusable("model"):
            run.begin("model")  # the trainer itself resumes the model, or refuses other options
        model = _model_stage(run, split, device, force)
        run.done("model")
    if last < STAGES.index("sae"):
        return run.summary
    with run.stage("sae"):
        sae, store = _sae_stage(run, model, split, device, force)
        controls = _controls(run, split, store, sae, device) if run.cfg.controls else None
        run.done("sae")
    table, codes = None, None
    if last >= STAGES.index("interpret"):
        with run.stage("interpret"):
            table, codes = _interpret_stage(run, model, sae, store, split, force, controls)
            run.done("interpret")
    if "steer" in cfg.stages and table is not None:
        with run.stage("steer"):
            _steer_stage(run, model, sae, split, table, force)
            run.done("steer")
    if "report" in cfg.stages:
        with run.stage("report"):
            _report_stage(run, split, table, codes, sae, store)
    return run.summary


def _check_compatible(out: Path, cfg: RunConfig, split: SplitData) -> None:
    """ConfigError when OUT holds a model trained with another seed, data or options, raised
    before the data stage writes anything: the trainer refuses it too, but later."""
    from recsae.models.registry import model_config
    from recsae.models.trainer import TrainConfig, check_resumable, training_record

    model_opts, train_opts = model_settings(cfg)
    record = training_record(cfg.model, model_config(cfg.model, **model_opts), split, cfg.seed, TrainConfig(**train_opts))
    check_resumable(out / RunDir.MODEL, record)


def _data_stage(run: Run, force: bool) -> SplitData:
    from recsae.data.split import make_split
    from recsae.models.pop import MostPopular
    from recsae.models.registry import model_class
    from recsae.models.trainer import evaluate_model

    ds = run.cfg.data.load(run.cfg.seed, **run.cfg.data_kwargs)
    sequential = model_class(run.cfg.model).sequential  # 'auto' holds out at random for general models without time
    split = make_split(ds, run.cfg.protocol, seed=run.cfg.seed, sequential=sequential)  # type: ignore[arg-type]
    if not force:  # --force deletes the model folder instead
        _check_compatible(run.out, run.cfg, split)
    log.info("dataset %s: %d users, %d items, %d interactions (%s)", ds.name, ds.n_users, ds.n_items,
             ds.n_interactions, split.protocol)
    run.summary["dataset"] = {
        "name": ds.name,
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "n_interactions": ds.n_interactions,
        "protocol": split.protocol,
        "split": split.info,
        "filters": ds.info.get("defaults"),
    }
    pop = evaluate_model(MostPopular.fit(split), split, "test")
    run.summary["baseline"] = {"most_popular": {"test": pop.metrics}}
    if ds.info.get("format") == "synthetic":
        from recsae.data.synthetic import SyntheticConfig, generate_synthetic, write_ground_truth

        truth = run.out / RunDir.GROUND_TRUTH
        if not (truth / "ground_truth.json").is_file():
            write_ground_truth(generate_synthetic(SyntheticConfig(**ds.info["config"])), truth)  # type: ignore[arg-type]
    return split


def _model_stage(run: Run, split: SplitData, device: torch.device, force: bool) -> Any:
    """Train the recommender into OUT/model; a finished or interrupted training there resumes
    (and returns at once when it had finished)."""
    import shutil

    from recsae.models.registry import model_class, model_config
    from recsae.models.trainer import TrainConfig, train_model

    model_dir = run.out / RunDir.MODEL
    if force and model_dir.exists():
        shutil.rmtree(model_dir)
    model_opts, train_opts = model_settings(run.cfg)
    source = run.cfg.data.to_dict() | {"protocol": run.cfg.protocol, "seed": run.cfg.seed,
                                       "options": run.cfg.data_kwargs}
    result = train_model(run.cfg.model, split, model_config(run.cfg.model, **model_opts), model_dir, run.cfg.seed,
                         device, TrainConfig(**train_opts), data_source=source)
    run.summary["model"] = {
        "name": model_class(run.cfg.model).name,
        "valid": result.valid,
        "test": result.test,
        "train_seconds": round(result.seconds, 2),
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
    }
    pop = run.summary["baseline"]["most_popular"]["test"]["ndcg@10"]
    run.summary["model"]["below_most_popular"] = below = bool(result.test["ndcg@10"] <= pop)
    if below:  # its latents would explain a model that ranks worse than counting
        log.warning("%s does not beat most-popular: test NDCG@10 %.4f <= %.4f; check the split, the options "
                    "(--epochs, --lr) and the data", run.summary["model"]["name"], result.test["ndcg@10"], pop)
    return result.model


def _sae_stage(run: Run, model: Any, split: SplitData, device: torch.device, force: bool) -> tuple[Any, Any]:
    from recsae.probe.store import ActivationStore
    from recsae.sae.config import SaeConfig
    from recsae.sae.model import CFG_FILE, TopKSAE
    from recsae.sae_stage import run_sae_stage
    from recsae.splice import splice_summary

    if not force and run.reusable("sae", RunDir.SPLICE, f"{RunDir.SAE}/{CFG_FILE}", f"{RunDir.ACTIVATIONS}/meta.json"):
        log.info("sae: reusing %s", run.out / RunDir.SAE)
        return TopKSAE.load(run.out / RunDir.SAE, device), ActivationStore.open(run.out / RunDir.ACTIVATIONS)
    run.begin("sae")
    sae_cfg = SaeConfig(d_in=model.dim, expansion=run.cfg.sae_expansion, k=run.cfg.sae_k, aux_relu=run.cfg.sae_aux_relu)
    result = run_sae_stage(model, split, run.out, sae_cfg, _sae_train_config(run.cfg), checkpoint=run.out / RunDir.MODEL,
                           device=device, force=force)
    run.summary["sae"] = splice_summary(result.splice)
    return result.trained.sae, result.store


def _controls(run: Run, split: SplitData, store: Any, sae: Any, device: torch.device) -> Any:
    """The trained controls (reused when trained from the same inputs)."""
    from recsae.controls import train_controls

    model_opts, _ = model_settings(run.cfg)
    return train_controls(run.out, run.cfg.model, model_opts, split, store, sae.cfg, _sae_train_config(run.cfg), device)


def _interpret_stage(
    run: Run, model: Any, sae: Any, store: Any, split: SplitData, force: bool, controls: Any = None,
) -> tuple[Any, Any]:
    """The interpretation table, and the SAE's codes of every row when they were computed."""
    from recsae.interpret.api import (
        InterpretConfig,
        interpret,
        read_interpretation,
        write_interpretation,
    )
    from recsae.interpret.from_run import run_inputs, seed_stability
    from recsae.sae.model import CFG_FILE, TopKSAE

    table_path = run.out / RunDir.INTERPRETATION
    if not force and run.reusable("interpret", RunDir.INTERPRETATION):
        log.info("interpret: reusing %s", table_path)
        return read_interpretation(run.out), None
    run.begin("interpret")
    baseline = run.out / RunDir.RANDOM_SAE
    random_sae = TopKSAE.load(baseline, sae.device) if (baseline / CFG_FILE).is_file() else None
    random_model = None
    if controls is not None and controls.random_model_sae is not None:
        random_model = (controls.random_model, controls.random_model_store, controls.random_model_sae)
    inputs = run_inputs(model, sae, store, split, seed=run.cfg.seed, random_sae=random_sae,
                        random_model=random_model, causal=run.cfg.causal)
    cfg = InterpretConfig(seed=run.cfg.seed)
    result = interpret(**inputs, cfg=cfg)
    if controls is not None and controls.seed_sae is not None:
        result.summary["seed_stability"] = seed_stability(sae, controls.seed_sae, inputs["reps"], run.cfg.seed)
    write_interpretation(result, run.out)
    keys = ("n_alive", "n_interpretable", "share_interpretable", "coherence", "explained_by_interpretable",
            "planted_recovered", "faithful", "shuffled_control", "seed_stability")
    summary = {k: result.summary[k] for k in keys if k in result.summary}
    if "faithful" in summary:
        summary["faithful"] = {k: {"n": v["n"], "share": v["share"]} for k, v in summary["faithful"].items()}
    summary["shuffled_control"] = {k: v for k, v in summary.get("shuffled_control", {}).items() if k != "by_family"}
    probing = result.summary.get("sparse_probing")
    if probing:
        summary["sparse_probing"] = {
            name: {str(b["k"]): b["mean_auc"] for b in v["by_k"]} for name, v in probing.items() if name != "gap_k1"
        } | {"gap_k1": probing.get("gap_k1", {}), "n_concepts": probing.get("sae", {}).get("n_concepts")}
    for base in ("neurons", "random_sae", "random_model_sae"):
        if base in result.summary:
            summary[base] = {k: result.summary[base][k] for k in ("share_interpretable", "planted_recovered")
                             if k in result.summary[base]}
    run.summary["interpret"] = summary
    return result.table, inputs["sae_acts"]


def _steer_stage(run: Run, model: Any, sae: Any, split: SplitData, table: Any, force: bool) -> None:
    from recsae.data.dataset import item_popularity
    from recsae.interpret import build_vocabulary
    from recsae.steer import ConceptItems
    from recsae.steer.study import SteerConfig, run_steer, steer_summary

    path = run.out / RunDir.STEER
    if not force and run.reusable("steer", RunDir.STEER):
        log.info("steer: reusing %s", path)
        return
    run.begin("steer")
    meta = split.dataset.item_meta
    items = ConceptItems.from_vocabulary(meta, build_vocabulary(meta, item_popularity(split.train.values, split.n_items)))
    cfg = SteerConfig(concepts=run.cfg.steer_concepts, seed=run.cfg.seed)
    result = run_steer(model, sae, split, table, items, cfg)
    write_json(path, result.to_dict() | {"versions": environment_info(), "seed": run.cfg.seed})
    run.summary["steer"] = steer_summary(result)


def _report_stage(run: Run, split: SplitData, table: Any, codes: Any, sae: Any, store: Any) -> None:
    from recsae.interpret.from_run import sparse_codes
    from recsae.report import write_report
    from recsae.report.examples import write_latent_examples

    if table is not None:
        # every harvested row's codes give each latent view its activation histogram
        if codes is None:  # the interpretation was reused from disk
            codes = sparse_codes(sae, np.asarray(store.load(), dtype=np.float32))
        write_latent_examples(run.out, table, split.history("test"), split.dataset.item_meta.title, codes)
    path = write_report(run.out)
    log.info("report: %s", path)
