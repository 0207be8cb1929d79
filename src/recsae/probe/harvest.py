"""Harvest a frozen model's representations into an activation store (docs/method.md §1).

Every user's full history ``split.history("test")`` (train + valid items) is fed once, left-padded
to the model's ``max_len``. Sequential models contribute every valid position of the final block
(or, with ``last_only``, the last one). General models that say how their user vector follows
from a set of items (``history_states``, e.g. LightGCN) contribute a row at every prefix of the
whole history, the user vector had the user consumed only that prefix, and the full history's row
is ``represent``; other general models one row per user (``represent``). One user vector per user
leaves too few rows for an SAE's latents to be fitted and validated.

Provenance per row (index columns): ``position`` t is the prefix length within the full history,
so the prefix is ``history[user][:t]``; ``start`` is where the model's window began (histories
longer than ``max_len`` keep their latest items, so the state at t saw ``history[user][start:t]``);
``split`` is the role of the next item (train item → ``train``, validation item → ``valid``,
none left → ``test``, the full history the test target is ranked from); ``target`` the next
item (the first test item for the full history, 0 when there is none).

The state at an earlier position is computed inside the full window, exactly as the model
produced it for training; only the ``test`` rows equal what ranking uses (``represent``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recsae.data.dataset import SplitData, input_sequences
from recsae.distributed import World, barrier, once, rank_slice, single
from recsae.models.base import HiddenStates, Recommender
from recsae.probe.store import ActivationStore, StoreWriter, merge_stores, part_dir
from recsae.utils import environment_info, progress

DEFAULT_MAX_LEN = 200
"""Window for models that do not declare one (the evaluator's default)."""


def model_max_len(model: nn.Module, default: int = DEFAULT_MAX_LEN) -> int:
    """The history window a model reads: ``model.max_len``, else ``model.cfg.max_len``, else ``default``."""
    for owner in (model, getattr(model, "cfg", None), getattr(model, "config", None)):
        value = getattr(owner, "max_len", None) if owner is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return default


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without any)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def dataset_info(split: SplitData) -> dict[str, Any]:
    """Name, size, protocol and fingerprint (when the loader recorded one) of a split's dataset."""
    from recsae.data.registry import dataset_fingerprint

    ds = split.dataset
    fingerprint = ds.info.get("fingerprint") or dataset_fingerprint(ds)
    return {
        "name": ds.name,
        "fingerprint": fingerprint,
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "protocol": split.protocol,
    }


def checkpoint_digest(checkpoint: str | Path | None) -> str | None:
    """SHA-256 of a checkpoint folder's weights (``model.safetensors``), None without one: what
    a store was harvested from, wherever the run folder has moved since."""
    import hashlib

    weights = Path(checkpoint) / "model.safetensors" if checkpoint is not None else None
    if weights is None or not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_info(model: Recommender, max_len: int, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """JSON-ready description of the harvested model (name, class, width, window, checkpoint and
    the digest of its weights)."""
    return {
        "name": getattr(model, "name", type(model).__name__),
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "sequential": bool(model.sequential),
        "max_len": max_len,
        "dim": model.dim,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "weights_sha256": checkpoint_digest(checkpoint),
    }


class _Frozen:
    """Eval mode and no autograd for the duration of a block; the training flag is restored."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = model.training
        self.no_grad = torch.no_grad()

    def __enter__(self) -> None:
        self.model.eval()
        self.no_grad.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


def frozen(model: nn.Module) -> _Frozen:
    """``with frozen(model):`` runs the model in eval mode without gradients, then restores it."""
    return _Frozen(model)


def all_positions(model: Recommender | type[Recommender], last_only: bool = False) -> bool:
    """Does the harvest take a row at every prefix of a history (not one per user)? Sequential
    models and general models with ``history_states`` do, unless ``last_only``."""
    return not last_only and (bool(model.sequential) or callable(getattr(model, "history_states", None)))


def harvest_shape(split: SplitData, every_prefix: bool, sequential: bool, max_len: int) -> tuple[int, int]:
    """(rows, users) that ``harvest`` takes from ``split``: a row at every prefix of each known
    history (a sequential model's within its last ``max_len`` items) when ``every_prefix``, else
    one per user; the users are those with a history."""
    n_hist = split.history("test").lengths()
    n_hist = n_hist[n_hist > 0]
    if not every_prefix:
        return len(n_hist), len(n_hist)
    per_user = np.minimum(n_hist, max_len) if sequential else n_hist
    return int(per_user.sum()), len(n_hist)


def _states(model: Recommender, user_t: torch.Tensor, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All-position states and their mask: a general model's last position is ``represent``
    (what ranking uses), its earlier ones its ``history_states``."""
    if model.sequential:
        return model.hidden_states(user_t, seqs)
    route: Callable[[torch.Tensor, torch.Tensor], HiddenStates] = model.history_states  # type: ignore[assignment]
    states, mask = route(user_t, seqs)
    states = states.clone()
    states[:, -1] = model.represent(user_t, seqs)
    return states, mask


def harvest(
    model: Recommender,
    split: SplitData,
    out_dir: str | Path,
    last_only: bool = False,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    max_len: int | None = None,
    checkpoint: str | Path | None = None,
    shard_rows: int | None = None,
    world: World | None = None,
) -> ActivationStore:
    """Run the frozen ``model`` over every user's full history and write an activation store.

    ``device``: where to run (default: the model's device); the model is moved back afterwards.
    ``max_len``: history window (default: the model's own, see :func:`model_max_len`).
    ``checkpoint``: recorded in ``meta.json`` as the model's origin.
    ``world``: distributed, every rank calls this with the same arguments and harvests its
    contiguous block of the batches of users into its own part; rank 0 then merges the parts
    into the store at ``out_dir``, the same rows in the same order with the same values as one
    process writes (the batches are the same), and every rank returns it.
    """
    max_len = max_len or model_max_len(model)
    home = model_device(model)
    run_on = torch.device(device) if device is not None else home
    history = split.history("test")
    n_train = split.train.lengths()
    n_hist = history.lengths()
    test = split.test
    first_test = np.zeros(len(test), dtype=np.int64)
    has_test = test.lengths() > 0
    first_test[has_test] = test.values[test.indptr[:-1][has_test]]
    users = np.flatnonzero(n_hist > 0).astype(np.int64)
    every_prefix = all_positions(model, last_only)
    meta = {
        "mode": "model",
        "last_only": not every_prefix,
        "model": model_info(model, max_len, checkpoint),
        "dataset": dataset_info(split),
        "environment": environment_info(),
    }
    world = world if world is not None else single(run_on)
    if run_on != home:
        model.to(run_on)
    try:
        dest = part_dir(out_dir, world.rank) if world.distributed else Path(out_dir)
        with StoreWriter(dest, model.dim, meta, shard_rows) as writer, frozen(model):
            starts = range(0, len(users), batch_size)
            starts = starts[rank_slice(len(starts), world)]  # whole batches: the same as one process's
            for lo in progress(starts, desc="harvest", total=len(starts)):
                batch = users[lo : lo + batch_size]
                # a general model's prefixes start at the first item: it reads the whole history
                width = int(n_hist[batch].max()) if every_prefix and not model.sequential else max_len
                seqs = input_sequences(history, batch, width).to(run_on)
                user_t = torch.from_numpy(batch).to(run_on)
                if every_prefix:
                    states, mask = _states(model, user_t, seqs)
                    width = states.shape[1]
                    # padding never enters: a position counts only if the model calls it valid
                    # and it holds a real item
                    mask = mask & (seqs[:, -width:] > 0)
                    rows_b, cols = (a.cpu().numpy() for a in torch.nonzero(mask, as_tuple=True))
                    x = states[mask].float().cpu().numpy()
                    u = batch[rows_b]
                    t = n_hist[u] - (width - 1 - cols)
                else:
                    x = model.represent(user_t, seqs).float().cpu().numpy()
                    u = batch
                    t = n_hist[u]
                window = np.minimum(n_hist[u], max_len if model.sequential else n_hist[u])
                hist_vals = history.values
                nxt = np.where(t < n_hist[u], hist_vals[np.minimum(history.indptr[u] + t, len(hist_vals) - 1)], 0)
                target = np.where(t < n_hist[u], nxt, first_test[u])
                code = np.where(t < n_train[u], 0, np.where(t < n_hist[u], 1, 2))
                writer.append(x, u, t, code, target, n_hist[u] - window)
            store = writer.finish()
    finally:
        if run_on != home:
            model.to(home)
    if not world.distributed:
        return store
    barrier(world, "harvest")
    parts = [part_dir(out_dir, r) for r in range(world.world_size)]
    once(world, lambda: merge_stores(parts, out_dir), "merging the harvest's parts")
    return ActivationStore.open(out_dir)
