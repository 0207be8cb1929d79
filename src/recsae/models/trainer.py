"""Train a built-in model: Adam, early stopping on validation NDCG@10, best model kept, resumable.

With an output folder the trainer writes the checkpoint (``config.json`` + ``model.safetensors``,
the best epoch so far) and, after every epoch, a resume state (``train_state.json`` +
``train_state.safetensors``: current weights, optimizer moments, random generator states,
epoch log). A rerun with the same folder and settings continues from the last finished epoch
and gives the same result as an uninterrupted run.

Distributed (``world`` from ``recsae.distributed.init_world``, under ``torchrun``): every rank
draws the same batches of training rows (users, for the sequential models) and takes its
contiguous slice of each, so the ranks hold disjoint rows and take the same number of steps;
each rank's mean loss is weighted by its share of the batch's rows and the gradients summed
(for the losses that are means over rows, the single-process batch gradient). Sampling
(negatives) uses a generator per rank and epoch. Evaluation ranks each rank's block of users
and gathers the per-user values, none padded or counted twice. Rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from recsae.data.dataset import SplitData, SplitName
from recsae.distributed import (
    World,
    all_gather_rows,
    all_reduce,
    barrier,
    broadcast_,
    rank_slice,
    single,
    sum_gradients,
)
from recsae.errors import ConfigError, DataError
from recsae.eval import EVAL_PROTOCOLS, DotScores, EvalResult, ScoreFn, evaluate
from recsae.io import read_json, read_tensors, write_json, write_tensors
from recsae.models.base import Recommender, TrainableRecommender
from recsae.models.checkpoint import (
    WEIGHTS_FILE,
    checkpoint_config,
    data_record,
    save_checkpoint,
    split_fingerprint,
)
from recsae.models.registry import model_class
from recsae.utils import default_device, log, progress, seed_everything

STATE_JSON = "train_state.json"
STATE_TENSORS = "train_state.safetensors"
VALID_METRIC = "ndcg@10"


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (the model's own options live in its config)."""

    epochs: int = 200
    """Most epochs to run."""
    patience: int = 10
    """Stop after this many epochs without a better validation NDCG@10."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int | None = None
    """Rows per step; None uses the model's default (sequences for sequential models, pairs
    for general ones)."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    eval_batch_size: int = 1024
    """Users per batch when evaluating."""
    max_seconds: float | None = None
    """Stop after the epoch that brings the training time (all sessions) past this; None: no limit."""
    eval_protocol: str = "per-user"
    """How validation (early stopping) and test rank: per-user, or rechorus (each held-out row
    its own next-item prediction, the RecSAE reference's protocol; ``recsae.eval.rows``)."""

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("patience", self.patience >= 1, ">= 1"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a finite number > 0"),
            ("batch_size", self.batch_size is None or self.batch_size >= 1, ">= 1 (or None)"),
            ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"),
            ("max_seconds", self.max_seconds is None or self.max_seconds >= 0, ">= 0 (or None)"),
            ("eval_protocol", self.eval_protocol in EVAL_PROTOCOLS, f"one of {', '.join(EVAL_PROTOCOLS)}"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"train: {name} must be {rule}, got {getattr(self, name)!r}")


class EpochLog(NamedTuple):
    """One line of the training log: an epoch's time, mean loss and validation metrics."""

    epoch: int
    seconds: float
    loss: float
    valid: dict[str, float]
    best: bool


class TrainResult(NamedTuple):
    """What ``train_model`` returns: the best model, its metrics and the epoch log."""

    model: TrainableRecommender
    """The best model (by validation NDCG@10), in eval mode."""
    valid: dict[str, float]
    """Validation metrics of the best model."""
    test: dict[str, float]
    """Test metrics of the best model."""
    epochs: int
    """Epochs run in total (including those before a resume)."""
    best_epoch: int
    """Epoch of the best model (0 if no epoch ran)."""
    seconds: float
    """Training seconds up to the end (all sessions, evaluation included)."""
    history: list[EpochLog]
    evaluation: dict[str, object] | None = None
    """How the test metrics were computed (``EvalResult.protocol``: ranking, protocol, rows)."""


def score_fn(model: Recommender) -> ScoreFn:
    """The evaluator's ``score_fn`` for a model: ``score(represent(users, seqs))``; a ``DotScores``
    (scored a chunk of items at a time for large catalogues) unless the model overrides ``score``."""
    if type(model).score is Recommender.score:
        return DotScores(model.represent, model.item_embeddings)
    return lambda users, seqs: model.score(model.represent(users, seqs))


def evaluate_model(
    model: Recommender, split: SplitData, which: SplitName = "test", batch_size: int = 1024,
    world: World | None = None, **kw: Any
) -> EvalResult:
    """Full-ranking metrics of a model on ``split`` (wraps ``recsae.eval.evaluate``). With a
    distributed ``world`` (every rank calls it), each rank ranks its block of the users and
    every rank gets the per-user values of all of them, in the users' order."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    max_len = getattr(getattr(model, "cfg", None), "max_len", 200) if model.sequential else 1
    was_training = model.training
    model.eval()
    if world is None or not world.distributed:
        try:
            return evaluate(score_fn(model), split, which, batch_size=batch_size, max_len=max_len, device=device, **kw)
        finally:
            model.train(was_training)
    users = kw.pop("users", None)
    users = split.eval_users(which) if users is None else np.asarray(users, dtype=np.int64)
    try:
        mine = evaluate(score_fn(model), split, which, users=users[rank_slice(len(users), world)],
                        batch_size=batch_size, max_len=max_len, device=device, **kw)
    finally:
        model.train(was_training)
    names = list(mine.per_user)
    # the evaluated users go along: under the rechorus protocol a user has a value per held-out row
    columns = [mine.per_user[n] for n in names] + [mine.users.astype(np.float64)]
    table = all_gather_rows(world, np.stack(columns, axis=1).reshape(-1, len(columns)), what="gathering the evaluation")
    per_user = {n: table[:, i] for i, n in enumerate(names)}
    metrics = {n: float(a.mean()) if len(a) else float("nan") for n, a in per_user.items()}
    evaluated = table[:, -1].astype(np.int64)
    counts = {"n_users": len(np.unique(evaluated))} | ({"n_rows": len(evaluated)} if "n_rows" in mine.protocol else {})
    return EvalResult(metrics, per_user, evaluated, mine.protocol | counts)


def _optim_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def _load_optim(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


def training_record(name: str, cfg: Any, split: SplitData, seed: int, tcfg: TrainConfig) -> dict[str, Any]:
    """What fixes a training's trajectory: a resume must match it (epochs and patience may change)."""
    cls = model_class(name)
    record = {"model": cls.name, "model_config": dataclasses.asdict(cfg), "lr": tcfg.lr,
              "batch_size": tcfg.batch_size or cls.default_batch_size, "weight_decay": tcfg.weight_decay,
              "seed": seed, "split_fingerprint": split_fingerprint(split)}
    if tcfg.eval_protocol != TrainConfig.eval_protocol:  # it picks the epoch; absent in earlier records
        record["eval_protocol"] = tcfg.eval_protocol
    return record


def check_resumable(out: Path, record: dict[str, Any]) -> None:
    """ConfigError when ``out`` holds a training whose ``training_record`` is not ``record``."""
    state = out / STATE_JSON
    if not state.is_file():
        return
    saved = read_json(state).get("run", {})
    differ = sorted({"data" if k == "split_fingerprint" else k
                     for k in saved.keys() | record.keys() if saved.get(k) != record.get(k)})
    if differ:
        raise ConfigError(f"{out} holds a different training run ({', '.join(differ)} differ); "
                          "use another output folder or delete it")


def train_model(
    name: str,
    split: SplitData,
    cfg: Any = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    train_cfg: TrainConfig | None = None,
    data_source: dict[str, Any] | None = None,
    world: World | None = None,
) -> TrainResult:
    """Train model ``name`` on ``split`` and return the best model with its metrics.

    ``cfg`` is the model config (None: defaults); ``data_source`` (the options that loaded the
    data) is recorded in the checkpoint so that ``recsae evaluate`` can reload it. ``world``:
    the ranks training together (it then sets the device; every rank passes the same
    arguments and gets the same model); None: this process alone.
    """
    cls = model_class(name)
    cfg = cfg if cfg is not None else cls.config_class()
    if not isinstance(cfg, cls.config_class):
        raise ConfigError(f"model {name!r} takes a {cls.config_class.__name__}, got {type(cfg).__name__}")
    tcfg = train_cfg or TrainConfig()
    dev = world.device if world is not None else default_device(None if device is None else str(device))
    world = world if world is not None else single(dev)
    gen = seed_everything(seed)
    model = cls.build(cfg, split.n_users, split.n_items, split.train).to(dev)
    tensors = model.training_tensors(split)
    if len(tensors[0]) == 0:
        raise DataError(f"the training interactions give {cls.name} no training examples (a sequential model "
                        "learns from users with at least 2 training interactions)", path=split.dataset.info.get("path"))  # type: ignore[arg-type]
    if tcfg.eval_protocol == "rechorus":  # refuses a split without a time order before any epoch
        from recsae.eval.rows import held_out_rows

        max_len = getattr(cfg, "max_len", 1)
        log.info("evaluation: rechorus protocol, %d validation and %d test rows, each its own next-item prediction",
                 *(len(held_out_rows(split, which, max_len).user) for which in ("valid", "test")))
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    batch_size = tcfg.batch_size or cls.default_batch_size
    data = data_record(split, data_source)
    run = training_record(name, cfg, split, seed, tcfg)
    train_record = dataclasses.asdict(tcfg) | {"batch_size": batch_size, "device": str(dev)}
    out = Path(out_dir) if out_dir is not None else None

    history: list[EpochLog] = []
    best_value, best_epoch, best_state, seconds, done = float("-inf"), 0, None, 0.0, False
    if out is not None and (out / STATE_JSON).is_file():
        check_resumable(out, run)
        st = read_json(out / STATE_JSON)
        saved = read_tensors(out / STATE_TENSORS)
        model.load_state_dict({k[6:]: v for k, v in saved.items() if k.startswith("model.")})
        _load_optim(opt, saved, st["param_groups"])
        gen.set_state(saved["rng.generator"])
        torch.set_rng_state(saved["rng.torch"])
        if dev.type == "cuda" and "rng.cuda" in saved:
            torch.cuda.set_rng_state(saved["rng.cuda"], dev)
        history = [EpochLog(*h) for h in st["history"]]
        best_value, best_epoch, seconds = st["best_value"], st["best_epoch"], st["seconds"]
        if best_value is None:  # no finite validation score yet: strict JSON wrote -inf as null
            best_value = float("-inf")
        done = _finished(len(history), best_epoch, seconds, tcfg)
        best_state = read_tensors(out / WEIGHTS_FILE) if best_epoch else None
        log.info(f"resuming {out} after epoch {len(history)} (best epoch {best_epoch})")
    broadcast_(world, [*model.parameters(), *model.buffers()], what="model initialisation")

    n_rows = len(tensors[0])
    epoch = len(history)
    while not done and epoch < tcfg.epochs:
        epoch += 1
        t0 = time.perf_counter()
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=dev)
        batches = model.batches(tensors, batch_size, gen)
        sampler = gen if not world.distributed else _rank_generator(seed, world.rank, epoch)
        for idx in progress(batches, desc=f"epoch {epoch}", total=len(batches)):
            mine = idx[rank_slice(len(idx), world)]
            opt.zero_grad(set_to_none=True)
            if len(mine):  # a rank without rows in a small last batch adds a zero gradient
                # the rank's mean loss weighted by its share of the batch's rows
                loss = model.loss(tuple(t[mine].to(dev) for t in tensors), sampler) * (len(mine) / len(idx))
                loss.backward()
                total += loss.detach() * len(idx)
            sum_gradients(world, list(model.parameters()))
            opt.step()
        total = all_reduce(world, total, what="training loss")
        valid = evaluate_model(model, split, "valid", tcfg.eval_batch_size, world, ks=(10, 20),
                               eval_protocol=tcfg.eval_protocol).metrics
        improved = valid[VALID_METRIC] > best_value
        # the ranks' clocks differ: the slowest one decides a time limit for all of them
        secs = float(all_reduce(world, torch.tensor([time.perf_counter() - t0], dtype=torch.float64), "max")[0])
        seconds += secs
        history.append(EpochLog(epoch, secs, float(total) / n_rows, valid, improved))
        log.info(f"epoch {epoch:3d}  {secs:6.1f}s  loss {float(total) / n_rows:.4f}  "
                 f"valid ndcg@10 {valid['ndcg@10']:.4f}  hr@10 {valid['hr@10']:.4f}{'  *' if improved else ''}")
        if improved:
            best_value, best_epoch = valid[VALID_METRIC], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        done = _finished(epoch, best_epoch, seconds, tcfg)
        if out is not None:
            if world.is_main:
                if improved:
                    save_checkpoint(out, model, checkpoint_config(model, data, seed, train_record,
                                                                 {"best_epoch": best_epoch, "valid": valid}))
                _save_state(out, model, opt, gen, dev, run, history, best_value, best_epoch, seconds)
            barrier(world, "model checkpoint")

    final = model  # training is over: the model becomes the best one
    if best_state is not None:
        final.load_state_dict(best_state)
    final.eval()
    best_valid = history[best_epoch - 1].valid if best_epoch else {}
    tested = evaluate_model(final, split, "test", tcfg.eval_batch_size, world, eval_protocol=tcfg.eval_protocol)
    test = tested.metrics
    result = TrainResult(final, best_valid, test, len(history), best_epoch, seconds, history, tested.protocol)
    if out is not None:
        metrics = {"best_epoch": best_epoch, "epochs": len(history), "train_seconds": seconds,
                   "valid": best_valid, "test": test, "evaluation": tested.protocol}
        if world.is_main:
            save_checkpoint(out, final, checkpoint_config(final, data, seed, train_record, metrics))
        barrier(world, "model checkpoint")
    log.info(f"best epoch {best_epoch}/{len(history)}  test ndcg@10 {test['ndcg@10']:.4f}  "
             f"hr@10 {test['hr@10']:.4f}  ({seconds:.0f}s)")
    return result


def _rank_generator(seed: int, rank: int, epoch: int) -> torch.Generator:
    """The sampling generator of one rank in one epoch: distinct per rank, and rebuilt from the
    numbers alone, so that a resumed run needs no rank's generator state."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0]))


def _finished(epoch: int, best_epoch: int, seconds: float, tcfg: TrainConfig) -> bool:
    out_of_time = tcfg.max_seconds is not None and seconds >= tcfg.max_seconds
    return epoch - best_epoch >= tcfg.patience or epoch >= tcfg.epochs or out_of_time


def _save_state(out: Path, model: TrainableRecommender, opt: torch.optim.Optimizer, gen: torch.Generator,
                dev: torch.device, run: dict[str, Any], history: list[EpochLog], best_value: float,
                best_epoch: int, seconds: float) -> None:
    optim, groups = _optim_tensors(opt)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | optim
    tensors["rng.generator"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if dev.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(dev)
    write_tensors(out / STATE_TENSORS, tensors)
    write_json(out / STATE_JSON, {
        "run": run, "history": [list(h) for h in history], "best_value": best_value,
        "best_epoch": best_epoch, "seconds": seconds, "param_groups": groups,
    })
