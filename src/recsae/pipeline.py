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
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from recsae.config import STAGES, RunConfig
from recsae.data.dataset import SplitData
from recsae.data.registry import DatasetOptions
from recsae.distributed import World, barrier, leave_together, single
from recsae.errors import ConfigError
from recsae.io import FORMAT_VERSION, read_json, remove_stale_partials, write_json
from recsae.rundir import RunDir
from recsae.sae.config import SaeTrainConfig
from recsae.sources import ModelSource, model_source, weights_digest
from recsae.utils import environment_info, heartbeat, log, seed_everything

SUMMARY = RunDir.SUMMARY


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


def _named_protocol(cfg: RunConfig) -> dict[str, str]:
    """``{"eval_protocol": ...}`` for a run in the reference's protocol, else nothing: per-user is
    the default records leave out (earlier runs' fingerprints stay valid), and so is auto, which
    is per-user for a model trained here and is settled before any stage otherwise."""
    return {"eval_protocol": cfg.eval_protocol} if cfg.eval_protocol not in ("auto", "per-user") else {}


def stage_fingerprints(cfg: RunConfig, weights: str | None = None) -> dict[str, str]:
    """A fingerprint per stage: a hash of the options the stage reads and of the fingerprint of
    the stage before it, so a changed option changes its stage's and every later stage's.
    ``weights`` (the built model's digest) enters every stage after the model, so a model that
    changed without its options changing (the user's own code, exported files) redoes them."""
    import hashlib
    import json

    sae = {"train": _sae_train_config(cfg).to_dict(), "controls": cfg.sae.controls}
    if cfg.sae.path is None:
        sae |= {"k": cfg.sae.k, "expansion": cfg.sae.expansion, "aux_relu": cfg.sae.aux_relu}
    else:
        sae["sae_sha256"] = _sae_digest(Path(cfg.sae.path))
    parts: dict[str, Any] = {
        "model": {"data": cfg.data.to_dict(), "data_kwargs": cfg.data_kwargs, "protocol": cfg.protocol,
                  "split_seed": cfg.split_seed, "source": model_source(cfg).identity(), "seed": cfg.seed}
        | _named_protocol(cfg),
        "sae": sae | {"weights": weights},
        "interpret": {"config": cfg.interpret},
        "steer": {"config": cfg.steer},
    }
    out: dict[str, str] = {}
    previous = ""
    for stage, opts in parts.items():
        text = json.dumps({"after": previous, "options": opts}, sort_keys=True, default=_jsonable)
        previous = out[stage] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def _jsonable(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


def _sae_digest(path: Path) -> str:
    from recsae.sae.model import WEIGHTS_FILE as SAE_WEIGHTS
    from recsae.sources import _file_digest

    weights = path / SAE_WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"--sae {path}: not a trained SAE folder (no sae.safetensors)")
    return str(_file_digest(str(weights)))


PRESETS: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {
    # (dataset, model) -> (model options, training options), measured to train well and fast.
    # Training options left out here come from recsae.defaults.train_defaults, which gives the
    # synthetic data lr 5e-3 and batch 64 and ML-1M lr 3e-3 and batch 64 (tests/test_defaults.py).
    # The synthetic histories hold 30-60 items: a short window and one block; their planted
    # signal gives a smooth validation curve, where patience 3 stops training as well as the
    # rule's 20 for so few users, and sooner.
    ("synthetic", "sasrec"): ({"max_len": 50, "n_blocks": 1}, {"patience": 3}),
    ("synthetic", "gru4rec"): ({"max_len": 50}, {"patience": 3}),
    # ml-100k (943 users) overfits. Test NDCG@10 over seeds 0-4: window 200 / dropout 0.2 0.092 +- 0.007;
    # window 50 / dropout 0.4 0.097 +- 0.003 (and 2x faster); plus label smoothing 0.2 0.101 +- 0.003
    # (validation 0.115 -> 0.124). Its validation NDCG@10 is noisy: patience 10 stopped some seeds
    # early (20 is also the rule's, for fewer than 2,000 users; kept here for bench_models.py, which
    # reads the presets, on ml-100k with every rating). lr 3e-3: on the default positives (seed 0)
    # SASRec reached test NDCG@10 0.0815 with it, 0.0797 with the rule's 5e-3.
    ("ml-100k", "sasrec"): (
        {"max_len": 50, "dropout": 0.4, "label_smoothing": 0.2}, {"lr": 3e-3, "patience": 20},
    ),
    # GRU4Rec likewise: validation NDCG@10 0.106 -> 0.112 on each of seeds 0-4 (test 0.094 -> 0.096)
    ("ml-100k", "gru4rec"): (
        {"max_len": 50, "dropout": 0.4, "label_smoothing": 0.2}, {"lr": 3e-3, "patience": 20},
    ),
    # 601 users: lr 5e-3 and batch 64 (the rule's), where 1e-3 / 128 left SASRec at most-popular level
    ("ml-latest-small", "sasrec"): ({"max_len": 100}, {}),
}
"""Tuned options of named datasets, over the defaults that scale with the data
(``recsae.defaults``); options given explicitly in ``RunConfig`` override both."""


def preset(
    dataset: str, model: str, model_opts: dict[str, Any] | None = None, train_opts: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tuned (model options, ``TrainConfig`` options) for a named dataset and a registry model
    name (empty where none was tuned), with the given options that are not None laid over them."""
    tuned_model, tuned_train = PRESETS.get((dataset, model), ({}, {}))
    given_model = {k: v for k, v in (model_opts or {}).items() if v is not None}
    given_train = {k: v for k, v in (train_opts or {}).items() if v is not None}
    return tuned_model | given_model, tuned_train | given_train


def scaled_preset(dataset: str, model: str, split: SplitData) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``recsae run`` trains registry model ``model`` with on ``split`` of named ``dataset``
    when no option is given: the dataset's preset over the rule for the data's size (the
    benchmarks measure what the pipeline trains)."""
    from recsae.models.registry import model_class

    chosen = train_choice(RunConfig().override({"data.dataset": dataset, "model.name": model}), split).chosen
    return preset(dataset, model_class(model).name)[0], {key.split(".", 1)[1]: value for key, value in chosen.items()}


def model_settings(cfg: RunConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model config overrides and ``TrainConfig`` options for a run: preset, then explicit
    (a run's config holds, once its data is loaded, the options chosen from the data too:
    ``run_defaults``)."""
    from recsae.models.registry import model_class

    m = cfg.model
    model_opts, train_opts = preset(
        cfg.data.dataset, model_class(m.name).name, m.options | ({} if m.max_len is None else {"max_len": m.max_len}),
        {"lr": m.lr, "batch_size": m.batch_size, "patience": m.patience},
    )
    return model_opts, {"epochs": m.epochs} | train_opts | _named_protocol(cfg)


TRAIN_CHOICES = ("lr", "batch_size", "patience")
"""``ModelOptions`` fields chosen from the data where the user left them unset."""


class Defaults(NamedTuple):
    """What ``resolve_defaults`` chose for the options left unset, and why."""

    chosen: dict[str, Any]
    """Dotted option -> value (``{"model.lr": 5e-3, "sae.expansion": 16}``)."""
    by: dict[str, str]
    """Dotted option -> what chose it: ``rule`` (``recsae.defaults``) or ``preset`` (``PRESETS``)."""
    reasons: dict[str, str]
    """Dotted option -> why the rule chose that value."""
    warnings: tuple[str, ...] = ()

    def line(self, n_users: int, n_interactions: int) -> str:
        """One line saying what was chosen and why."""
        from recsae.defaults import lr_text

        shown = {"model.lr": lambda v: f"lr {lr_text(v)}", "model.batch_size": lambda v: f"batch {v:,}",
                 "model.patience": lambda v: f"patience {v}", "sae.expansion": lambda v: f"SAE expansion {v}",
                 "sae.k": lambda v: f"SAE k {v}"}
        values = ", ".join(shown[key](value) for key, value in self.chosen.items())
        label = {"model.lr": "lr", "model.batch_size": "batch", "model.patience": "patience"}
        why = {label.get(key, "SAE"): reason for key, reason in self.reasons.items()}
        return (f"defaults for {n_users:,} users, {n_interactions:,} interactions: {values} ("
                + "; ".join(f"{name}: {reason}" for name, reason in why.items()) + ")")

    def __or__(self, other: Defaults) -> Defaults:
        return Defaults(self.chosen | other.chosen, self.by | other.by, self.reasons | other.reasons,
                        self.warnings + other.warnings)

    def record(self) -> dict[str, Any]:
        """JSON-ready record (the run's ``config.json`` and ``summary.json``)."""
        return {"chosen": self.chosen, "by": self.by, "reasons": self.reasons, "warnings": list(self.warnings)}


def train_choice(cfg: RunConfig, split: SplitData) -> Defaults:
    """The training options a run trains its model with where ``cfg`` leaves them unset: the
    dataset's tuned preset, else the rule of ``recsae.defaults.train_defaults`` for the split's
    dataset size. Nothing for a model the run does not train."""
    from recsae.defaults import train_defaults
    from recsae.models.registry import model_class

    if cfg.model.source != "train":
        return Defaults({}, {}, {})
    cls = model_class(cfg.model.name)
    ds = split.dataset
    rule = train_defaults(cls.name, cls.sequential, ds.n_users, ds.n_interactions)
    tuned = PRESETS.get((cfg.data.dataset, cls.name), ({}, {}))[1]
    chosen, by, reasons = {}, {}, {}
    for name in TRAIN_CHOICES:
        if getattr(cfg.model, name) is not None:
            continue
        key = f"model.{name}"
        chosen[key], by[key] = (tuned[name], "preset") if name in tuned else (getattr(rule, name), "rule")
        if by[key] == "rule":
            reasons[key] = rule.why[name]
        else:
            reasons[key] = f"{cfg.data.dataset} preset"
    return Defaults(chosen, by, reasons)


def sae_choice(cfg: RunConfig, split: SplitData, d: int, every_prefix: bool, sequential: bool,
               max_len: int) -> Defaults:
    """The SAE's k and expansion where ``cfg`` leaves them unset, from the rows the harvest will
    take (``recsae.defaults.sae_defaults``), and a warning when the SAE is too wide for them."""
    from recsae.defaults import sae_defaults, width_warning
    from recsae.probe.harvest import harvest_shape

    if cfg.sae.path is not None:
        return Defaults({}, {}, {})
    n_rows, n_users = harvest_shape(split, every_prefix, sequential, max_len)
    rule = sae_defaults(n_rows, n_users, d, k=cfg.sae.k, expansion=cfg.sae.expansion)
    chosen = {key: value for key, value, given in (("sae.expansion", rule.expansion, cfg.sae.expansion),
                                                   ("sae.k", rule.k, cfg.sae.k)) if given is None}
    warning = width_warning(n_rows, n_users, d, rule.k, rule.expansion)
    return Defaults(chosen, dict.fromkeys(chosen, "rule"), dict.fromkeys(chosen, rule.reasons),
                    (warning,) if warning else ())


def run_defaults(cfg: RunConfig, split: SplitData) -> Defaults:
    """What a run chooses once its data is loaded: the training options, and the SAE's shape
    where the run trains its model (whose width d and harvest follow from its options; other
    models' SAE is chosen once they are built, ``_model_stage``)."""
    from recsae.models.registry import model_class, model_config
    from recsae.probe.harvest import all_positions

    chosen = train_choice(cfg, split)
    if cfg.model.source != "train":
        return chosen
    cls = model_class(cfg.model.name)
    built = model_config(cfg.model.name, **model_settings(apply_defaults(cfg, chosen))[0])
    every_prefix = all_positions(cls)  # the class says it: sequential, or a history_states route
    return chosen | sae_choice(cfg, split, built.dim, every_prefix, cls.sequential, getattr(built, "max_len", 1))


def apply_defaults(cfg: RunConfig, defaults: Defaults) -> RunConfig:
    """``cfg`` with the chosen options filled in."""
    return cfg.override(defaults.chosen) if defaults.chosen else cfg


class Run:
    """A run folder and its summary, rewritten after every stage."""

    def __init__(self, out: Path, cfg: RunConfig, world: World | None = None) -> None:
        self.out = out
        self.cfg = cfg
        self.world = world if world is not None else single("cpu")
        """Under torchrun every rank keeps the summary; rank 0 alone writes and deletes files."""
        self._vocab: Any = None
        prior = out / SUMMARY
        self.summary: dict[str, Any] = read_json(prior) if prior.is_file() else {}
        self.summary.update(format_version=FORMAT_VERSION, seed=cfg.seed, config=cfg.to_dict(), versions=environment_info())
        self.summary.setdefault("seconds", {})
        self.fingerprints = stage_fingerprints(cfg)
        self.defaults = Defaults({}, {}, {})
        """What ``choose`` filled in of the options the user left unset."""
        self.summary["defaults"] = self.defaults.record() | {"lines": []}

    def choose(self, defaults: Defaults, split: SplitData) -> None:
        """Fill ``defaults`` into the run's config (every later stage reads it, and its
        fingerprints), say in one line what was chosen and why, warn of what it warns about,
        and record both in the summary."""
        if not defaults.chosen and not defaults.warnings:
            return
        self.defaults = self.defaults | defaults
        self.cfg = apply_defaults(self.cfg, defaults)
        self.fingerprints = stage_fingerprints(self.cfg)
        lines = self.summary["defaults"]["lines"]
        if defaults.chosen:
            lines.append(defaults.line(split.dataset.n_users, split.dataset.n_interactions))
            log.info(lines[-1])
        for warning in defaults.warnings:
            log.warning(warning)
        self.summary["defaults"] = self.defaults.record() | {"lines": lines}

    def save(self) -> None:
        if self.world.is_main:
            write_json(self.out / SUMMARY, self.summary)

    def reusable(self, stage: str, *files: str) -> bool:
        """True when ``stage`` finished for exactly the current inputs (same fingerprint) and its
        ``files`` are on disk."""
        done = self.summary.get("fingerprints", {}).get(stage)
        return done == self.fingerprints[stage] and all((self.out / f).exists() for f in files)

    def _forget(self, stages: tuple[str, ...], files: bool = True) -> None:
        import shutil

        for name in stages:
            for entry in STAGE_OUTPUTS.get(name, ()) if files and self.world.is_main else ():
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
        barrier(self.world, f"starting the {stage} stage")  # rank 0 has removed the stale outputs

    def vocabulary(self, split: SplitData) -> Any:
        """The run's concept vocabulary (``interpret.concepts`` over the training counts and the
        known histories), built once and shared by the concept check, the interpretation and
        steering."""
        if self._vocab is None:
            from recsae.data.dataset import item_popularity
            from recsae.interpret.concepts import build_vocabulary

            counts = item_popularity(split.train.values, split.n_items)
            self._vocab = build_vocabulary(split.dataset.item_meta, counts, self.cfg.interpret.concepts,
                                           split.history("test"))
        return self._vocab

    def model_built(self, digest: str) -> None:
        """Chain the built model's weights into every later stage's fingerprint. Weights that
        differ from the recorded run's (the user's code or files changed under the same options)
        make the harvested activations and every later stage stale."""
        recorded = self.summary.get("model", {}).get("weights_sha256")
        if recorded is not None and recorded != digest:
            log.info("model: its weights changed since the last run; the later stages are redone")
            self._forget(STAGES)
            barrier(self.world, "removing the stale outputs")
        self.fingerprints = stage_fingerprints(self.cfg, digest)

    def leave_group(self) -> None:
        """Every rank leaves the process group together (once); rank 0 goes on as a single
        process. A rank leaving while another still holds its connections can abort in the
        backend's teardown."""
        leave_together(self.world, "the end of the distributed stages")
        if self.world.is_main:
            self.world = single(self.world.device)

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
    return SaeTrainConfig(epochs=cfg.sae.epochs, min_rows=cfg.sae.min_rows, seed=cfg.seed, balance_rate=cfg.sae.balance,
                          balance_until=cfg.sae.balance_until, kl_weight=cfg.sae.kl_weight)


def check_options(cfg: RunConfig) -> None:
    """Build every config the run will build, so that a bad option fails before any data is
    loaded or file written. The built-in models' width d comes from their config, which bounds k."""
    from recsae.defaults import MAX_EXPANSION
    from recsae.models.registry import model_config
    from recsae.models.trainer import TrainConfig
    from recsae.sae.config import SaeConfig

    if any(v is not None and v < 1 for v in (cfg.sae.k, cfg.sae.expansion)):
        raise ConfigError(f"sae: k and expansion must be >= 1, got k={cfg.sae.k}, expansion={cfg.sae.expansion}")
    _sae_train_config(cfg)
    for name in ("checkpoint", "user_vectors", "item_embeddings", "user_ids", "item_ids"):
        path = getattr(cfg.model, name)
        if path is not None and not Path(path).exists():
            raise ConfigError(f"model.{name}: {path} not found")
    if cfg.sae.path is not None:
        _sae_digest(Path(cfg.sae.path))
    if cfg.model.source == "train":
        model_opts, train_opts = model_settings(cfg)
        TrainConfig(**train_opts)
        if cfg.sae.path is None:
            # the widest SAE the rule may choose bounds a given k
            SaeConfig(d_in=model_config(cfg.model.name, **model_opts).dim, expansion=cfg.sae.expansion or MAX_EXPANSION,
                      k=cfg.sae.k or 1)
    elif cfg.model.source == "function":
        from recsae.sources import load_function

        load_function(str(cfg.model.model_from))


def with_checkpoint_data(cfg: RunConfig) -> RunConfig:
    """A run from a checkpoint reads the dataset and split the checkpoint records, unless the
    run names another dataset than the default, and evaluates in the protocol the checkpoint was
    chosen in unless the run names one (so the splice table's original row is the checkpoint's
    own test figure). Settles ``eval_protocol="auto"`` for every run: per-user without a checkpoint."""
    import dataclasses

    from recsae.models.checkpoint import CONFIG_FILE, checkpoint_protocol

    if cfg.model.checkpoint is None:
        return cfg if cfg.eval_protocol != "auto" else dataclasses.replace(cfg, eval_protocol="per-user")
    path = Path(cfg.model.checkpoint) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"--checkpoint {cfg.model.checkpoint}: not a model checkpoint (no {CONFIG_FILE})")
    record = read_json(path)
    if cfg.eval_protocol == "auto":
        cfg = dataclasses.replace(cfg, eval_protocol=checkpoint_protocol(record))  # type: ignore[arg-type]
        if cfg.eval_protocol != "per-user":
            log.info("evaluating in the protocol %s was chosen in: %s", cfg.model.checkpoint, cfg.eval_protocol)
    if cfg.data.dataset != DatasetOptions().dataset:
        return cfg
    src = record.get("data", {}).get("source") or {}
    if not src.get("dataset"):
        raise ConfigError(f"{path} does not record its dataset (data.source): name it with --dataset")
    return dataclasses.replace(
        cfg, data=DatasetOptions.from_dict(src, cfg.data.data_root), protocol=src.get("protocol", "auto"),
        data_kwargs=src.get("options") or {}, data_seed=int(src.get("seed", record.get("seed", 0))),
        model=dataclasses.replace(cfg.model, name=record.get("model", {}).get("name", cfg.model.name)),
    )


def run_pipeline(out: str | Path, cfg: RunConfig | None = None, force: bool = False,
                 world: World | None = None) -> dict[str, Any]:
    """Run the whole job into ``out`` and return the summary (also in ``out/summary.json``).

    ``world`` (torchrun, ``recsae.distributed.init_world``): every rank loads the data, trains
    the model, harvests and trains the SAE and its controls together; rank 0 alone writes the
    run folder and splices while the others wait; every rank then computes its share of the
    interpretation's rows (top recommendations, SAE codes, the rows x concepts counts, summed
    over the ranks), and all leave the process group together there (after the last stage asked
    when the run stops before interpreting). Rank 0 goes on alone with the rest of the
    interpretation, steering and the report; the other ranks return."""
    cfg = with_checkpoint_data(cfg or RunConfig())
    check_options(cfg)
    out = Path(out)
    world = world if world is not None else single(cfg.device)
    if world.is_main:
        remove_stale_partials(out)  # temporaries of a killed earlier run in this folder
    barrier(world, "starting the run")
    seed_everything(cfg.seed)
    device = world.device
    run = Run(out, cfg, world)
    if force:  # nothing of an earlier attempt is resumed
        run.summary.pop("started", None)
    # the model and the SAE are needed by every later stage: they run (or resume) whenever a
    # stage at or after them is asked for
    last = max((STAGES.index(s) for s in cfg.stages), default=-1)

    with run.stage("data"):
        split = _data_stage(run, force)
    # written once the data loaded, so a bad dataset leaves no run folder behind
    if world.is_main:
        write_json(out / RunDir.CONFIG, {"format_version": FORMAT_VERSION, "config": cfg.to_dict(),
                                         "defaults": run.defaults.record(), "seed": cfg.seed,
                                         "versions": environment_info()})
    source = model_source(run.cfg)  # with the options chosen from the data
    if last < STAGES.index("model"):
        run.leave_group()
        return run.summary
    with run.stage("model"):
        if force or not run.reusable("model"):
            run.begin("model")  # the trainer itself resumes the model, or refuses other options
        model = _model_stage(run, source, split, device, force)
        run.done("model")
    if last < STAGES.index("sae"):
        run.leave_group()
        return run.summary
    with run.stage("sae"):
        sae, store = _sae_stage(run, model, split, device, force)
        controls = _controls(run, source, model, split, store, sae, device) if run.cfg.sae.controls else None
        run.done("sae")
    table, codes = None, None
    if last >= STAGES.index("interpret"):
        with run.stage("interpret"):
            table, codes = _interpret_stage(run, model, sae, store, split, force, controls)
            run.done("interpret")
    run.leave_group()  # (left already when the interpretation counted its rows)
    if not world.is_main:  # rank 0 goes on alone
        return run.summary
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

    if cfg.model.source != "train":
        return
    model_opts, train_opts = model_settings(cfg)
    record = training_record(cfg.model.name, model_config(cfg.model.name, **model_opts), split, cfg.seed,
                             TrainConfig(**train_opts))
    check_resumable(out / RunDir.MODEL, record)


def make_run_split(cfg: RunConfig) -> SplitData:
    """The dataset and split of a run, from its options (deterministic)."""
    from recsae.data.split import make_split
    from recsae.models.registry import model_class

    ds = cfg.data.load(cfg.split_seed, **cfg.data_kwargs)
    # 'auto' holds out at random for general models without time (a user's model: leave-one-out)
    sequential = model_class(cfg.model.name).sequential if cfg.model.source in ("train", "checkpoint") else True
    return make_split(ds, cfg.protocol, seed=cfg.split_seed, sequential=sequential)  # type: ignore[arg-type]


def _data_stage(run: Run, force: bool) -> SplitData:
    from recsae.models.pop import MostPopular
    from recsae.models.trainer import evaluate_model

    split = make_run_split(run.cfg)
    ds = split.dataset
    log.info("dataset %s: %d users, %d items, %d interactions (%s)", ds.name, ds.n_users, ds.n_items,
             ds.n_interactions, split.protocol)
    run.choose(run_defaults(run.cfg, split), split)
    cfg = run.cfg
    if not force:  # --force deletes the model folder instead
        _check_compatible(run.out, cfg, split)
    if "steer" in cfg.stages and cfg.steer.concepts:  # a typo fails now, before any write
        from recsae.steer.targets import concept_items

        items = concept_items(split, vocab=run.vocabulary(split))
        for concept in cfg.steer.concepts:
            items.mask(concept)
    run.summary["dataset"] = {
        "name": ds.name,
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "n_interactions": ds.n_interactions,
        "protocol": split.protocol,
        "split": split.info,
        "filters": ds.info.get("defaults"),
    }
    pop = evaluate_model(MostPopular.fit(split), split, "test", eval_protocol=cfg.eval_protocol)
    run.summary["baseline"] = {"most_popular": {"test": pop.metrics}}
    if cfg.eval_protocol != "per-user":
        run.summary["dataset"]["evaluation"] = pop.protocol
    if ds.info.get("format") == "synthetic" and run.world.is_main:
        from recsae.data.synthetic import SyntheticConfig, generate_synthetic, write_ground_truth

        truth = run.out / RunDir.GROUND_TRUTH
        if not (truth / "ground_truth.json").is_file():
            write_ground_truth(generate_synthetic(SyntheticConfig(**ds.info["config"])), truth)  # type: ignore[arg-type]
    return split


def _model_stage(run: Run, source: ModelSource, split: SplitData, device: torch.device, force: bool) -> Any:
    """The run's model from its source: trained into OUT/model (a finished or interrupted
    training there resumes, and returns at once when it had finished), a checkpoint, the user's
    code or exported embeddings."""
    from recsae.models.trainer import evaluate_model

    built = source.build(split, run.out, device, force, run.world)
    if run.cfg.sae.k is None or run.cfg.sae.expansion is None:  # a model the run did not train
        from recsae.probe.harvest import all_positions, model_max_len

        run.choose(sae_choice(run.cfg, split, built.model.dim, all_positions(built.model), bool(built.model.sequential),
                              model_max_len(built.model)), split)
    digest = weights_digest(built.model)
    run.model_built(digest)
    metrics: dict[str, Any] = {}
    for which in ("valid", "test"):  # a trained model comes with them
        if which not in built.record and len(getattr(split, which).values):
            result = evaluate_model(built.model, split, which, eval_protocol=run.cfg.eval_protocol)
            metrics[which] = result.metrics
            if which == "test" and run.cfg.eval_protocol != "per-user":
                metrics["evaluation"] = result.protocol
    run.summary["model"] = {"name": built.name, "source": source.kind, "weights_sha256": digest} | built.record | metrics
    test = run.summary["model"]["test"]
    pop = run.summary["baseline"]["most_popular"]["test"]["ndcg@10"]
    run.summary["model"]["below_most_popular"] = below = bool(test["ndcg@10"] <= pop)
    if below:  # its latents would explain a model that ranks worse than counting
        log.warning("%s does not beat most-popular: test NDCG@10 %.4f <= %.4f; check the split, the options "
                    "(--epochs, --lr) and the data", built.name, test["ndcg@10"], pop)
    return built.model


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
    given = None
    if run.cfg.sae.path is not None:
        given = TopKSAE.load(run.cfg.sae.path, device)
        if given.cfg.d_in != model.dim:
            raise ConfigError(f"--sae {run.cfg.sae.path}: the SAE reads d = {given.cfg.d_in}, the model's "
                              f"representation has d = {model.dim}")
        sae_cfg = given.cfg
    else:
        k, expansion = run.cfg.sae.k, run.cfg.sae.expansion
        assert k is not None and expansion is not None  # given, or chosen by the data or model stage
        sae_cfg = SaeConfig(d_in=model.dim, expansion=expansion, k=k, aux_relu=run.cfg.sae.aux_relu)
    checkpoint = run.out / RunDir.MODEL if run.cfg.model.source in ("train", "checkpoint") else None
    result = run_sae_stage(model, split, run.out, sae_cfg, _sae_train_config(run.cfg), checkpoint=checkpoint,
                           device=device, force=force, given=given, world=run.world, eval_protocol=run.cfg.eval_protocol)
    if result.splice is None:  # another rank than 0 under torchrun
        return result.trained.sae, result.store
    run.summary["sae"] = splice_summary(result.splice) | ({"given": str(run.cfg.sae.path)} if given else {})
    return result.trained.sae, result.store


def _controls(run: Run, source: ModelSource, model: Any, split: SplitData, store: Any, sae: Any,
              device: torch.device) -> Any:
    """The trained controls (reused when trained from the same inputs)."""
    from recsae.controls import train_controls

    untrained = source.untrained(model, split, run.cfg.seed, device)
    identity = {"model": source.identity(), "weights": run.summary["model"]["weights_sha256"], "seed": run.cfg.seed}
    return train_controls(run.out, untrained, identity, split, store,
                          sae.cfg, _sae_train_config(run.cfg), device, world=run.world, model=model)


def _interpret_stage(
    run: Run, model: Any, sae: Any, store: Any, split: SplitData, force: bool, controls: Any = None,
) -> tuple[Any, Any]:
    """The interpretation table, and the SAE's codes of every row when they were computed.
    Under torchrun every rank computes its share of the rows' inputs and counts, then all
    leave the process group; the others return (None, None) and rank 0 goes on alone."""
    from recsae.interpret.api import (
        count_interpretation,
        interpret,
        read_interpretation,
        write_interpretation,
    )
    from recsae.interpret.from_run import run_inputs, seed_stability
    from recsae.sae.model import CFG_FILE, TopKSAE

    table_path = run.out / RunDir.INTERPRETATION
    if not force and run.reusable("interpret", RunDir.INTERPRETATION):
        log.info("interpret: reusing %s", table_path)
        return (read_interpretation(run.out), None) if run.world.is_main else (None, None)
    run.begin("interpret")
    baseline = run.out / RunDir.RANDOM_SAE
    random_sae = TopKSAE.load(baseline, sae.device) if (baseline / CFG_FILE).is_file() else None
    random_model = None
    if controls is not None and controls.random_model_sae is not None:
        random_model = (controls.random_model, controls.random_model_store, controls.random_model_sae)
    world = run.world
    inputs = run_inputs(model, sae, store, split, seed=run.cfg.seed, random_sae=random_sae,
                        random_model=random_model, causal=run.cfg.interpret.causal, world=world)
    counted = count_interpretation(
        inputs["ctx"], inputs["item_meta"], inputs["item_counts"], inputs["sae_acts"], neuron_acts=inputs["neuron_acts"],
        random_acts=inputs["random_acts"], random_model=inputs["random_model"], cfg=run.cfg.interpret,
        vocab=run.vocabulary(split), world=world,
    )
    run.leave_group()
    if not world.is_main:
        return None, None
    result = interpret(**inputs, cfg=run.cfg.interpret, vocab=run.vocabulary(split), counted=counted)
    if controls is not None and controls.seed_sae is not None:
        result.summary["seed_stability"] = seed_stability(sae, controls.seed_sae, inputs["reps"], run.cfg.seed)
    write_interpretation(result, run.out)
    keys = ("n_alive", "n_interpretable", "share_interpretable", "coherence", "explained_by_interpretable",
            "planted_recovered", "faithful", "shuffled_control", "seed_stability", "anonymous_concepts")
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
    from recsae.steer.study import run_steer, steer_summary
    from recsae.steer.targets import concept_items

    path = run.out / RunDir.STEER
    if not force and run.reusable("steer", RunDir.STEER):
        log.info("steer: reusing %s", path)
        return
    run.begin("steer")
    result = run_steer(model, sae, split, table, concept_items(split, vocab=run.vocabulary(split)), run.cfg.steer,
                       eval_protocol=run.cfg.eval_protocol)
    write_json(path, result.to_dict() | {"versions": environment_info(), "seed": run.cfg.seed,
                                         "accuracy_protocol": run.cfg.eval_protocol})
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
