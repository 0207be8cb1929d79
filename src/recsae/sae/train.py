"""Training of the TopK + AuxK SAE (docs/method.md §2.3).

One step: encode → TopK → decode; loss = FVU (batch-normalised) + α_aux · AuxK over the latents
dead for ``dead_window`` rows; backward; remove the gradient component parallel to each decoder
row; Adam step with linear warm-up and decay; renormalise decoder rows. Rows are shuffled per
epoch with a seeded generator and read batch by batch from a large memory map or a row source
(an activation store's rows), never copied whole.
Checkpoints (``out_dir``): ``cfg.json`` + ``sae.safetensors`` (best or last weights),
``train_log.jsonl`` and ``train_state/`` (optimizer state, dead-latent counters, progress) for
resuming after a kill; all written atomically, no pickle.

Distributed (``world`` from ``recsae.distributed.init_world``, under ``torchrun``): every rank
walks the same global shuffled order and takes its contiguous slice of each global batch, so all
ranks take the same number of steps. The losses' denominators are the global batch's, each
rank's loss is its share, and the gradients are summed over the ranks: the step equals the
single-process step up to rounding. Dead-latent counters, load-balancing statistics and
validation metrics are global too; rank 0 writes the checkpoints (to a folder every rank can
read, for resuming) and every rank meets the same barriers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from recsae.distributed import (
    World,
    all_reduce,
    barrier,
    broadcast_,
    rank_slice,
    single,
    sum_gradients,
)
from recsae.errors import ConfigError, DataError
from recsae.io import (
    FORMAT_VERSION,
    check_format_version,
    json_text,
    read_json,
    read_tensors,
    write_json,
    write_tensors,
    write_with,
)
from recsae.sae.config import MIN_ROWS_MAX_EPOCHS, SaeConfig, SaeTrainConfig
from recsae.sae.metrics import SaeMetrics, evaluate_sae
from recsae.sae.model import TopKSAE
from recsae.utils import default_device, environment_info, log, progress

STATE_DIR = "train_state"
LOG_FILE = "train_log.jsonl"
IN_MEMORY_BYTES = 1 << 30
"""Arrays (and memory maps up to this size) are gathered from one tensor; larger memory maps and
other row sources are read batch by batch."""

Callback = Callable[[TopKSAE, dict[str, Any]], "bool | None"]
"""Called after each epoch with the SAE and the epoch's record; returning True stops training."""


class SaeTrainResult(NamedTuple):
    """Outcome of ``train_sae``."""

    sae: TopKSAE
    """The trained SAE (the best epoch by validation FVU when ``valid`` is given)."""
    history: list[dict[str, Any]]
    """One record per epoch: loss, fvu, auxk, l0, dead_fraction, lr, rows, seconds, valid_*."""
    metrics: SaeMetrics | None
    """Metrics of the returned SAE on ``valid`` (None without ``valid``)."""


class Adam:
    """Adam (Kingma & Ba, as ``torch.optim.Adam`` without weight decay) on a fixed list of
    parameters, with its state as plain tensors for safetensors checkpoints. (``torch.optim``
    imports ``torch._dynamo`` on first use: seconds of start-up for a job of seconds.)"""

    def __init__(self, params: list[torch.nn.Parameter], betas: tuple[float, float], eps: float = 1e-8) -> None:
        self.params = params
        self.betas = betas
        self.eps = eps
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.steps += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1**self.steps, 1 - b2**self.steps
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        ps: list[Tensor] = [self.params[i] for i in live]
        gs: list[Tensor] = [g for g in (self.params[i].grad for i in live) if g is not None]
        ms = [self.exp_avg[i] for i in live]
        vs = [self.exp_avg_sq[i] for i in live]
        # foreach ops: a handful of kernel launches per step instead of six per parameter.
        torch._foreach_lerp_(ms, gs, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
        denom = torch._foreach_div(vs, bc2)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(ps, ms, denom, value=-lr / bc1)

    def state_tensors(self, names: list[str]) -> dict[str, Tensor]:
        out = {f"adam.{n}.exp_avg": m for n, m in zip(names, self.exp_avg, strict=True)}
        out.update({f"adam.{n}.exp_avg_sq": v for n, v in zip(names, self.exp_avg_sq, strict=True)})
        out["adam.steps"] = torch.tensor([self.steps], dtype=torch.int64)
        return out

    def load_state_tensors(self, names: list[str], tensors: dict[str, Tensor]) -> None:
        for i, n in enumerate(names):
            self.exp_avg[i].copy_(tensors[f"adam.{n}.exp_avg"])
            self.exp_avg_sq[i].copy_(tensors[f"adam.{n}.exp_avg_sq"])
        self.steps = int(tensors["adam.steps"][0])


class DeadLatentTracker:
    """Rows since each latent was last active, updated per batch but exact per row: a latent
    last active at row r of a batch of B rows gets B − 1 − r, so the counts (and the dead mask
    at any row boundary) do not depend on the batch size (nor on how ranks split the batch)."""

    def __init__(self, n_latents: int, window: int, device: torch.device) -> None:
        self.window = window
        self.rows_since = torch.zeros(n_latents, dtype=torch.int64, device=device)

    def update(self, top_acts: Tensor, top_indices: Tensor, world: World | None = None, first: int = 0,
               batch_rows: int | None = None) -> None:
        """Count a batch. Distributed: these are rows ``first`` .. of a global batch of
        ``batch_rows`` rows, whose last active rows are reduced over ``world``'s ranks."""
        b = top_acts.shape[0] if batch_rows is None else batch_rows
        active = top_acts > 0
        rows = torch.arange(first, first + top_acts.shape[0], device=top_acts.device)
        last = torch.full_like(self.rows_since, -1)
        last.scatter_reduce_(0, top_indices[active], rows.unsqueeze(1).expand_as(top_indices)[active], reduce="amax")
        if world is not None:
            last = all_reduce(world, last, "max", what="dead-latent counts")
        self.rows_since = torch.where(last >= 0, b - 1 - last, self.rows_since + b)

    @property
    def dead_mask(self) -> Tensor:
        return self.rows_since >= self.window

    def dead_fraction(self) -> float:
        return float(self.dead_mask.double().mean())


def lr_at(rows_done: int, total_rows: int, cfg: SaeTrainConfig) -> float:
    """Learning rate after ``rows_done`` rows: linear warm-up, then the configured decay."""
    warm = 1.0 if cfg.warmup_rows == 0 else min(1.0, (rows_done + 1) / cfg.warmup_rows)
    if cfg.decay == "none" or total_rows <= cfg.warmup_rows:
        return cfg.lr * warm
    t = min(1.0, max(0.0, (rows_done - cfg.warmup_rows) / (total_rows - cfg.warmup_rows)))
    f = cfg.final_lr_frac
    shape = 1.0 - t if cfg.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
    return cfg.lr * warm * (f + (1.0 - f) * shape)


class _Rows:
    """Shuffled batches from a tensor, an array, a read-only memory map or any other row source:
    an array-like with ``shape`` whose integer-array indexing returns those rows in that order
    (e.g. ``recsae.probe.ActivationStore.view``), read batch by batch so that it is never copied
    whole. A batch is the same tensor whichever the source."""

    def __init__(self, data: Any, d_in: int, device: torch.device) -> None:
        if len(data.shape) != 2 or data.shape[1] != d_in:
            raise DataError(f"SAE training rows: expected shape (n, {d_in}), got {tuple(data.shape)}")
        if data.shape[0] == 0:
            raise DataError("SAE training rows: no rows")
        self.n = int(data.shape[0])
        self.d = d_in
        self.device = device
        self.array: Any = None
        self.tensor: Tensor | None = None
        if isinstance(data, Tensor):
            self.tensor = data.detach().to(device=device, dtype=torch.float32)
        elif isinstance(data, np.ndarray) and not (isinstance(data, np.memmap) and data.nbytes > IN_MEMORY_BYTES):
            self.tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).to(device)
        else:
            self.array = data

    def batch(self, idx: np.ndarray) -> Tensor:
        if self.tensor is not None:
            return self.tensor.index_select(0, torch.from_numpy(idx).to(self.device))
        if isinstance(self.array, np.ndarray):
            # sorted reads are sequential on disk; the rows then go back in the batch's order
            order = np.argsort(idx, kind="stable")
            rows = np.empty((len(idx), self.d), dtype=np.float32)
            rows[order] = self.array[idx[order]]
        else:
            rows = np.asarray(self.array[idx], dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(self.device)

    def sample(self, n: int, seed: int) -> Tensor:
        idx = np.sort(np.random.default_rng(seed).choice(self.n, size=min(n, self.n), replace=False))
        return self.batch(idx)


def _epoch_perm(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def train_sae(
    train: Any,
    cfg: SaeConfig,
    train_cfg: SaeTrainConfig,
    valid: Any = None,
    out_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    callback: Callback | None = None,
    resume: bool = True,
    item_emb: np.ndarray | Tensor | None = None,
    world: World | None = None,
) -> SaeTrainResult:
    """Train a TopK SAE on ``train`` (rows x d: a tensor, an array, a memory map, or a row source
    read batch by batch such as ``ActivationStore.view(rows)``; every kind gives the same SAE).
    With ``valid`` (the same kinds, streamed), evaluate FVU after each epoch,
    stop early after ``patience`` epochs without improvement and return the best epoch. With
    ``out_dir``, write checkpoints there and (``resume``) continue a run interrupted there.
    ``item_emb`` ((n_items + 1) x d, row 0 padding): the item table of the prediction-aware loss
    (``train_cfg.kl_weight``). ``world``: the ranks training together (it then sets the device);
    every rank passes the same ``train`` and ``valid`` (a memory map is read only where the
    rank's slices lie) and gets the same SAE. None: this process alone."""
    dev = world.device if world is not None else default_device(None if device is None else str(device))
    world = world if world is not None else single(dev)
    items = None
    if train_cfg.kl_weight > 0:
        if item_emb is None:
            raise ConfigError("sae train: kl_weight > 0 needs the model's item embeddings (item_emb)")
        items = torch.as_tensor(np.asarray(item_emb, dtype=np.float32)[1:]).to(dev)
        if items.shape[1] != cfg.d_in:
            raise ConfigError(f"sae train: item embeddings have {items.shape[1]} dims, the SAE reads {cfg.d_in}")
    rows = _Rows(train, cfg.d_in, dev)
    total_rows = train_cfg.max_rows if train_cfg.max_rows is not None else max(
        train_cfg.epochs * rows.n, min(train_cfg.min_rows, MIN_ROWS_MAX_EPOCHS * rows.n)
    )
    n_epochs = math.ceil(total_rows / rows.n)
    out = Path(out_dir) if out_dir is not None else None

    sae = TopKSAE(cfg, seed=train_cfg.seed, device=dev)
    if train_cfg.b_dec_init_rows > 0:
        sample = rows.sample(train_cfg.b_dec_init_rows, train_cfg.seed)
        sae.init_b_dec_from_data(sample, train_cfg.b_dec_init)
        if train_cfg.scale_encoder_init:
            sae.scale_encoder_to_data(sample)
    opt = Adam(list(sae.parameters()), betas=train_cfg.betas)
    tracker = DeadLatentTracker(cfg.m, cfg.dead_window, dev)
    history: list[dict[str, Any]] = []
    state: dict[str, Any] = {"epoch": 0, "rows_done": 0, "best_fvu": math.inf, "best_epoch": -1, "bad_epochs": 0}
    best: dict[str, Tensor] | None = None

    if out is not None and resume and (out / STATE_DIR / "state.json").is_file():
        state, history, best = _load_state(out, cfg, train_cfg, sae, opt, tracker)
        log.info("sae: resuming at epoch %d (%d rows done)", state["epoch"] + 1, state["rows_done"])
    # the ranks computed the same start; rank 0's copy makes it exact
    broadcast_(world, [*sae.parameters(), *sae.buffers()], what="SAE initialisation")

    stopped = bool(state.get("stopped", False))
    while state["epoch"] < n_epochs and state["rows_done"] < total_rows and not stopped:
        epoch = state["epoch"]
        t0 = time.perf_counter()
        rec = _train_epoch(sae, opt, tracker, rows, train_cfg, epoch, state, total_rows, items, world)
        rec["seconds"] = time.perf_counter() - t0
        rec["rows_per_s"] = rec["rows"] / max(rec["seconds"], 1e-9)
        if valid is not None:
            m = evaluate_sae(sae, valid, train_cfg.eval_batch_size, world)
            rec.update(valid_fvu=m.fvu, valid_cosine=m.cosine, valid_dead_fraction=m.dead_fraction)
            if m.fvu < state["best_fvu"] - train_cfg.min_delta:
                state.update(best_fvu=m.fvu, best_epoch=epoch, bad_epochs=0)
                best = {n: t.detach().clone() for n, t in sae.state_dict().items()}
            else:
                state["bad_epochs"] += 1
        history.append(rec)
        if epoch % train_cfg.log_every == 0 or state["epoch"] + 1 >= n_epochs:
            log.info(_format_record(rec, cfg.aux_relu))
        asked = callback is not None and bool(callback(sae, rec))
        if all_reduce(world, torch.tensor([int(asked)]), "max", what="SAE stop decision").item():
            stopped = True  # on every rank, when any rank's callback asked
        if train_cfg.patience is not None and state["bad_epochs"] >= train_cfg.patience:
            log.info("sae: early stop after epoch %d (best validation FVU %.4f at epoch %d)",
                     epoch + 1, state["best_fvu"], state["best_epoch"] + 1)
            stopped = True
        state["epoch"] = epoch + 1
        state["stopped"] = stopped
        last = state["epoch"] >= n_epochs or state["rows_done"] >= total_rows or stopped
        if out is not None and (state["epoch"] % train_cfg.checkpoint_every == 0 or last):
            if world.is_main:
                _save_state(out, cfg, train_cfg, sae, opt, tracker, state, history, best)
            barrier(world, "SAE checkpoint")

    if best is not None:
        sae.load_state_dict(best)
    metrics = evaluate_sae(sae, valid, train_cfg.eval_batch_size, world) if valid is not None else None
    if out is not None:
        if world.is_main:
            _save_final(out, sae, train_cfg, history, metrics)
        barrier(world, "SAE final checkpoint")
    return SaeTrainResult(sae, history, metrics)


def _train_epoch(
    sae: TopKSAE,
    opt: Adam,
    tracker: DeadLatentTracker,
    rows: _Rows,
    train_cfg: SaeTrainConfig,
    epoch: int,
    state: dict[str, Any],
    total_rows: int,
    items: Tensor | None,
    world: World,
) -> dict[str, Any]:
    reduce = partial(all_reduce, world, what="SAE batch statistics") if world.distributed else None
    cfg = sae.cfg
    balance_end = train_cfg.balance_until * total_rows
    perm = _epoch_perm(rows.n, train_cfg.seed, epoch)
    n_rows = min(rows.n, total_rows - state["rows_done"])
    bs = train_cfg.batch_size
    starts = range(0, n_rows, bs)
    sums = {"loss": 0.0, "fvu": 0.0, "auxk": 0.0, "kl": 0.0, "l0": 0.0}
    n_done = 0
    lr = train_cfg.lr
    for s in progress(starts, desc=f"sae epoch {epoch + 1}", total=len(starts)):
        idx = perm[s : min(s + bs, n_rows)]
        b = len(idx)  # rows of the global batch; this rank takes its slice
        part = rank_slice(b, world)
        x = rows.batch(idx[part])
        lr = lr_at(state["rows_done"], total_rows, train_cfg)
        dead = tracker.dead_mask if cfg.aux_alpha > 0 else None
        out = sae(x, dead, reduce)
        loss = out.fvu + cfg.aux_alpha * out.auxk_loss
        kl = out.fvu.new_zeros(())
        if items is not None:
            kl = prediction_kl(x, out.x_hat, items, train_cfg.kl_temperature, n_rows=b)
            loss = loss + train_cfg.kl_weight * kl
        opt.zero_grad()
        loss.backward()
        if world.distributed:
            sum_gradients(world, opt.params)  # each rank's loss is its share of the batch's
        sae.remove_parallel_grad()
        opt.step(lr)
        sae.normalize_decoder()
        if train_cfg.balance_rate > 0:
            done = state["rows_done"] + b
            if done <= balance_end:
                sae.balance_step(out.top_indices, out.top_acts.detach(), train_cfg.balance_rate, reduce)
            else:  # the bias decays linearly to zero at the last row
                left = total_rows - max(state["rows_done"], balance_end)
                sae.selection_bias.mul_(max(total_rows - done, 0) / left if left > 0 else 0.0)
        tracker.update(out.top_acts, out.top_indices, world, part.start, b)
        state["rows_done"] += b
        n_done += b
        # distributed, each value is this rank's share of the batch's: the shares add up
        for key, val in (("loss", loss), ("fvu", out.fvu), ("auxk", out.auxk_loss), ("kl", kl)):
            sums[key] += float(val.detach()) * b
        sums["l0"] += float((out.top_acts > 0).sum())
    totals = all_reduce(world, np.array(list(sums.values())), what="SAE epoch statistics")
    sums = dict(zip(sums, totals.tolist(), strict=True))
    rec: dict[str, Any] = {"epoch": epoch + 1, "rows": n_done, "rows_total": state["rows_done"], "lr": lr}
    rec.update({k: v / max(n_done, 1) for k, v in sums.items()})
    rec["dead_fraction"] = tracker.dead_fraction()
    return rec


def prediction_kl(
    x: Tensor, x_hat: Tensor, items: Tensor, temperature: float = 1.0, n_rows: int | None = None
) -> Tensor:
    """Mean over rows of KL(softmax(x·Eᵀ/τ) ‖ softmax(x̂·Eᵀ/τ)): how far the reconstruction moves
    the model's distribution over items (``items`` = E without the padding row). ``n_rows``:
    divide the sum by this many rows instead (a rank's share of a distributed batch)."""
    logp = torch.log_softmax(x @ items.T / temperature, dim=1)
    logq = torch.log_softmax(x_hat @ items.T / temperature, dim=1)
    kl = (logp.exp() * (logp - logq)).sum(1)
    return kl.mean() if n_rows is None else kl.sum() / max(n_rows, 1)


def _format_record(rec: dict[str, Any], aux_relu: bool = True) -> str:
    line = (
        f"sae epoch {rec['epoch']}: loss {rec['loss']:.4f} fvu {rec['fvu']:.4f} auxk {rec['auxk']:.4f} "
        f"dead {rec['dead_fraction']:.3f} l0 {rec['l0']:.1f} ({rec['rows_per_s']:.0f} rows/s)"
    )
    if rec.get("kl"):
        line += f" kl {rec['kl']:.4f}"
    if "valid_fvu" in rec:
        line += f" | valid fvu {rec['valid_fvu']:.4f} silent {rec['valid_dead_fraction']:.3f}"
    if aux_relu and rec["dead_fraction"] > 0 and rec["auxk"] >= 1.0 - 1e-6:
        # AuxK rebuilds the residual from dead latents' positive pre-activations; it is exactly 1
        # when the dead latents left have none on any row, which is not a bug.
        line += " (auxk 1: the dead latents never pre-activate, nothing to revive)"
    return line


# -- checkpoints ------------------------------------------------------------------------------


def _run_info(cfg: SaeConfig, train_cfg: SaeTrainConfig) -> dict[str, Any]:
    return {"train": train_cfg.to_dict(), "seed": train_cfg.seed, "versions": environment_info()}


def _write_log(out: Path, history: list[dict[str, Any]]) -> None:
    text = "".join(json_text(r, indent=None) + "\n" for r in history)

    def write(path: Path) -> None:
        path.write_text(text)

    write_with(out / LOG_FILE, write)


def _save_state(
    out: Path,
    cfg: SaeConfig,
    train_cfg: SaeTrainConfig,
    sae: TopKSAE,
    opt: Adam,
    tracker: DeadLatentTracker,
    state: dict[str, Any],
    history: list[dict[str, Any]],
    best: dict[str, Tensor] | None,
) -> None:
    sdir = out / STATE_DIR
    tensors: dict[str, Tensor] = {f"param.{n}": t.detach() for n, t in sae.state_dict().items()}
    tensors.update(opt.state_tensors([n for n, _ in sae.named_parameters()]))
    tensors["rows_since"] = tracker.rows_since
    if best is not None:
        tensors.update({f"best.{n}": t for n, t in best.items()})
    write_tensors(sdir / "state.safetensors", tensors)
    _write_log(out, history)
    # state.json last: its presence marks a complete checkpoint.
    write_json(
        sdir / "state.json",
        {"format_version": FORMAT_VERSION, "sae": cfg.to_dict(), **_run_info(cfg, train_cfg), "state": state,
         "history": history},
    )


def _load_state(
    out: Path,
    cfg: SaeConfig,
    train_cfg: SaeTrainConfig,
    sae: TopKSAE,
    opt: Adam,
    tracker: DeadLatentTracker,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Tensor] | None]:
    sdir = out / STATE_DIR
    meta = read_json(sdir / "state.json")
    check_format_version(meta, sdir / "state.json")
    saved_train = dict(meta["train"])
    now_train = train_cfg.to_dict()
    # Only the budget may change between a run and its resumption.
    for key in ("epochs", "max_rows", "min_rows", "patience"):
        saved_train.pop(key, None)
        now_train.pop(key, None)
    saved_train["betas"] = list(saved_train["betas"])
    now_train["betas"] = list(now_train["betas"])
    if meta["sae"] != cfg.to_dict() or saved_train != now_train:
        raise ConfigError(
            f"{out}: a training run with a different configuration is there; use another folder or "
            "resume=False (CLI: --force)"
        )
    tensors = read_tensors(sdir / "state.safetensors", device=sae.device)
    sae.load_state_dict({n: tensors[f"param.{n}"] for n in sae.state_dict()})
    opt.load_state_tensors([n for n, _ in sae.named_parameters()], tensors)
    tracker.rows_since = tensors["rows_since"].clone()
    best = None
    if any(k.startswith("best.") for k in tensors):
        best = {n: tensors[f"best.{n}"] for n in sae.state_dict()}
    state = dict(meta["state"])
    if state["best_fvu"] is None:  # no validation FVU yet: strict JSON wrote the initial inf as null
        state["best_fvu"] = math.inf
    return state, list(meta["history"]), best


def _save_final(
    out: Path, sae: TopKSAE, train_cfg: SaeTrainConfig, history: list[dict[str, Any]], metrics: SaeMetrics | None
) -> None:
    extra: dict[str, Any] = _run_info(sae.cfg, train_cfg)
    extra["epochs_trained"] = len(history)
    if metrics is not None:
        extra["valid_metrics"] = metrics.to_dict()
    sae.save(out, extra=extra)
    _write_log(out, history)
