"""The SAE stage of a run: harvest the model's activations, train the SAE on them and splice it
back (``recsae sae train``, and the ``sae`` stage of ``recsae run``).

Writes the run folder's ``activations``, ``sae``, ``random_sae`` and ``splice.json``
(``recsae.rundir``). The SAE itself (``recsae.sae``) knows nothing of models or stores: this
module brings them together.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from recsae.data.dataset import SplitData
from recsae.distributed import World, once, single
from recsae.errors import ConfigError, DataError
from recsae.models.base import Recommender
from recsae.probe.harvest import (
    all_positions,
    checkpoint_digest,
    dataset_info,
    harvest,
    model_device,
)
from recsae.probe.store import ActivationStore
from recsae.rundir import RunDir
from recsae.sae.config import SaeConfig, SaeTrainConfig
from recsae.sae.metrics import evaluate_sae
from recsae.sae.model import TopKSAE, untrained_baseline
from recsae.sae.train import SaeTrainResult, train_sae
from recsae.splice import SpliceResult, evaluate_splice


class SaeStageResult(NamedTuple):
    """Everything ``run_sae_stage`` produced."""

    store: ActivationStore
    trained: SaeTrainResult
    """The SAE training outcome (``trained.sae`` is the SAE)."""
    splice: SpliceResult | None
    """The splice table (None on ranks other than 0 under torchrun)."""


def loss_items(model: Recommender, train_cfg: SaeTrainConfig) -> np.ndarray | None:
    """The item table the prediction-aware loss scores reconstructions with (``kl_weight`` > 0):
    ``model``'s item embeddings; None when the recipe has no such term."""
    if train_cfg.kl_weight <= 0:
        return None
    with torch.no_grad():
        return model.item_embeddings().detach().float().cpu().numpy()


def run_sae_stage(
    model: Recommender,
    split: SplitData,
    out_dir: str | Path,
    sae_cfg: SaeConfig,
    train_cfg: SaeTrainConfig,
    last_only: bool = False,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    force: bool = False,
    eval_batch_size: int = 1024,
    given: TopKSAE | None = None,
    world: World | None = None,
    eval_protocol: str = "per-user",
) -> SaeStageResult:
    """Harvest → train the SAE → splice, into the run folder ``out_dir`` (its ``activations``,
    ``sae``, ``random_sae`` and ``splice.json``).

    The SAE trains on the store's ``train`` rows and early-stops on its ``valid`` rows; a store
    without ``train`` rows (one row per user: general models without ``history_states``) trains
    on all rows without validation. An existing store from the same model, data and options is reused, and an
    interrupted SAE run resumes, unless ``force``. μ of the mean-ablated row is the mean of
    the training rows. A ``given`` SAE (the user's) is saved into ``out_dir/sae`` and spliced
    instead of training one. ``eval_protocol``: how the splice table ranks (``evaluate_splice``).

    ``world`` (torchrun): every rank harvests its share and trains the SAE together; rank 0
    alone then splices and writes ``splice.json`` (the others return ``splice`` None).
    """
    world = world if world is not None else single(device)
    run = RunDir(out_dir)
    store_dir, sae_dir = run.activations, run.sae
    store = None if force else _reusable_store(store_dir, model, split, last_only, checkpoint)
    if store is None:
        store = harvest(model, split, store_dir, last_only=last_only, device=device, checkpoint=checkpoint, world=world)
        force = True  # an SAE trained on other activations must not be resumed
    if sae_cfg.d_in != store.d:
        raise ConfigError(f"sae: d_in {sae_cfg.d_in} differs from the activations' width {store.d}")
    train_rows, valid_rows = sae_rows(store)
    # read from the memory-mapped store batch by batch, never copied whole
    train_x = store.view(train_rows)
    valid_x = store.view(valid_rows) if len(valid_rows) else None
    if force and sae_dir.exists():
        once(world, lambda: shutil.rmtree(sae_dir), "removing the stale SAE")
    if given is None:
        trained = train_sae(train_x, sae_cfg, train_cfg, valid=valid_x, out_dir=sae_dir, device=device, world=world,
                            item_emb=loss_items(model, train_cfg))
    else:
        once(world, lambda: given.save(sae_dir), "saving the given SAE")
        trained = SaeTrainResult(given, [], evaluate_sae(given, valid_x) if valid_x is not None else None)
    if not world.is_main:
        return SaeStageResult(store, trained, None)
    mean = torch.from_numpy(train_x.mean().astype(np.float32))
    random_sae = untrained_baseline(sae_cfg, train_x, train_cfg.seed, model_device(model))
    random_sae.save(run.random_sae)
    result = evaluate_splice(
        model, trained.sae.to(model_device(model)), split, "test", mean=mean, random_sae=random_sae,
        mean_source="activation store train rows", batch_size=eval_batch_size, seed=train_cfg.seed,
        eval_protocol=eval_protocol,
    )
    result.config["activations"] = {"train_rows": len(train_rows), "valid_rows": len(valid_rows), "last_only": last_only}
    # dead / dense over every harvested row: the few evaluated rows alone leave rare latents silent
    every_row = evaluate_sae(trained.sae, store.view())
    result.config["all_rows"] = every_row.to_dict() | {"rows": "every harvested row (train, valid and test prefixes)"}
    result.save(run.splice)
    return SaeStageResult(store, trained, result)


def sae_rows(store: ActivationStore) -> tuple[np.ndarray, np.ndarray]:
    """The store rows an SAE trains and is validated on: its ``train`` and ``valid`` rows, or
    every row and none (one row per user, no training prefixes: general models without
    ``history_states``)."""
    train_rows, valid_rows = store.rows("train"), store.rows("valid")
    if len(train_rows) == 0:
        return np.arange(store.n_rows), np.zeros(0, dtype=np.int64)
    return train_rows, valid_rows


def _same_model(recorded: dict[str, Any], checkpoint: str | Path | None) -> bool:
    """Was the store harvested from ``checkpoint``? By the digest of its weights when both have
    one (a moved run folder still matches, retrained weights do not), else by the path."""
    digest = checkpoint_digest(checkpoint)
    if digest is not None and recorded.get("weights_sha256") is not None:
        return bool(recorded["weights_sha256"] == digest)
    return recorded.get("checkpoint") == (None if checkpoint is None else str(checkpoint))


def _reusable_store(
    path: Path, model: Recommender, split: SplitData, last_only: bool, checkpoint: str | Path | None
) -> ActivationStore | None:
    """The store at ``path`` if it holds this model's harvest of this data, else None."""
    if not (path / "meta.json").is_file():
        return None
    try:
        store = ActivationStore.open(path)
    except DataError:
        return None
    meta = store.meta
    same = (
        meta.get("mode") == "model"
        and meta.get("last_only") == (not all_positions(model, last_only))
        and meta.get("dataset") is not None
        and meta["dataset"] == dataset_info(split)
        and _same_model(meta.get("model", {}), checkpoint)
        and store.d == model.dim
    )
    return store if same else None
