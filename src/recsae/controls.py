"""The controls a learned decomposition must beat (docs/method.md §7.2), trained beside the run's SAE.

- **untrained-model SAE**: the same architecture with seeded random, untrained weights; its
  representations are harvested exactly like the trained model's, and an SAE is trained on
  them with the same recipe. Does a finding depend on what the model learned?
- **second-seed SAE**: the run's SAE recipe with another seed on the same activations; with two
  untrained SAEs as the floor, it gives the seed stability of the dictionary.

The untrained SAE and the raw neurons need no training (``recsae.sae.model.untrained_baseline``;
the representations themselves). Everything lives under ``OUT/controls/``; each trained control
is reused only when the record of what it was trained from (``source.json``) is unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch

from recsae.data.dataset import SplitData
from recsae.distributed import World, once, single
from recsae.io import read_json, write_json
from recsae.models.base import Recommender
from recsae.probe.harvest import harvest
from recsae.probe.store import ActivationStore, StoreRows
from recsae.rundir import RunDir
from recsae.sae.config import SaeConfig, SaeTrainConfig
from recsae.sae.model import CFG_FILE, TopKSAE
from recsae.sae.train import train_sae
from recsae.sae_stage import loss_items, sae_rows
from recsae.utils import log, seed_everything

SOURCE_FILE = "source.json"
SEED_OFFSET = 1
"""The second-seed SAE (and the second untrained SAE of the stability floor) uses seed + this."""


class Controls(NamedTuple):
    """Trained controls of a run (None where not asked for)."""

    random_model: Recommender | None
    """The untrained model (eval mode)."""
    random_model_store: ActivationStore | None
    random_model_sae: TopKSAE | None
    seed_sae: TopKSAE | None


def untrained_model(name: str, model_opts: dict[str, Any], split: SplitData, seed: int,
                    device: torch.device | str = "cpu") -> Recommender:
    """Model ``name`` with options ``model_opts``, initialised from ``seed`` exactly as training
    would start, never trained (eval mode)."""
    from recsae.models.registry import model_class, model_config

    cls = model_class(name)
    seed_everything(seed)
    model = cls.build(model_config(name, **model_opts), split.n_users, split.n_items, split.train).to(device)
    model.eval()
    return model


def _train_rows(store: ActivationStore) -> tuple[StoreRows, StoreRows | None]:
    """The rows the run's SAE trains and validates on (``sae_rows``), read from the store on demand."""
    train_rows, valid_rows = sae_rows(store)
    return store.view(train_rows), store.view(valid_rows) if len(valid_rows) else None


def _fresh(folder: Path, source: dict[str, Any], world: World) -> bool:
    """True when ``folder`` holds a finished control trained from ``source``; otherwise the
    folder is emptied (by rank 0) so that nothing stale is resumed."""
    path = folder / SOURCE_FILE
    as_written = json.loads(json.dumps(source))  # tuples read back as lists
    if path.is_file() and read_json(path) == as_written and (folder / RunDir.SAE / CFG_FILE).is_file():
        return True
    # every rank: the ranks agree it is stale, and rank 0 may have removed it before another looked
    once(world, lambda: shutil.rmtree(folder, ignore_errors=True), "removing a stale control")
    return False


def _train(x: StoreRows, valid: StoreRows | None, sae_cfg: SaeConfig, train_cfg: SaeTrainConfig, folder: Path,
           source: dict[str, Any], device: torch.device | str, world: World, model: Recommender | None) -> TopKSAE:
    """The run's recipe on ``x``; ``model``: whose items its prediction-aware loss ranks, if it has one."""
    items = loss_items(model, train_cfg) if model is not None else None
    sae = train_sae(x, sae_cfg, train_cfg, valid=valid, out_dir=folder / RunDir.SAE, device=device, world=world,
                    item_emb=items).sae
    once(world, lambda: write_json(folder / SOURCE_FILE, source), "writing a control's source")
    return sae


def train_controls(
    out: str | Path,
    untrained: Recommender | None,
    model_identity: dict[str, Any],
    split: SplitData,
    store: ActivationStore,
    sae_cfg: SaeConfig,
    train_cfg: SaeTrainConfig,
    device: torch.device | str = "cpu",
    seed_sae: bool = True,
    world: World | None = None,
    model: Recommender | None = None,
) -> Controls:
    """Train (or reuse) the controls of a run folder ``out`` whose SAE was trained on ``store``
    with ``sae_cfg`` and ``train_cfg``: an SAE on the representations of ``untrained`` (the
    model's architecture, never trained, identified by ``model_identity``; None: no such control)
    and the SAE again with another seed. ``world`` (torchrun, every rank with the same
    arguments): the harvest and the trainings are distributed as the run's own. ``model``: the
    trained model, whose items the second-seed SAE's prediction-aware loss ranks (when
    ``train_cfg.kl_weight`` > 0; the untrained-model SAE ranks the untrained model's)."""
    world = world if world is not None else single(device)
    run = RunDir(out)
    base = {"sae": sae_cfg.to_dict(), "train": train_cfg.to_dict(), "store": store.meta.get("dataset"),
            "rows": store.n_rows}
    rm_store = rm_sae = second = None
    if untrained is not None:
        folder = run.random_model_control
        source = base | {"model": model_identity, "model_seed": train_cfg.seed}
        if _fresh(folder, source, world):
            rm_store = ActivationStore.open(folder / RunDir.ACTIVATIONS)
            rm_sae = TopKSAE.load(folder / RunDir.SAE, device)
        else:
            log.info("controls: harvesting and training an SAE on the untrained model")
            rm_store = harvest(untrained, split, folder / RunDir.ACTIVATIONS, device=device, world=world)
            x, valid = _train_rows(rm_store)
            rm_sae = _train(x, valid, sae_cfg, train_cfg, folder, source, device, world, untrained)
    if seed_sae:
        folder = run.seed_sae_control
        cfg2 = SaeTrainConfig.from_dict(train_cfg.to_dict() | {"seed": train_cfg.seed + SEED_OFFSET})
        source = base | {"train": cfg2.to_dict()}
        if _fresh(folder, source, world):
            second = TopKSAE.load(folder / RunDir.SAE, device)
        else:
            log.info("controls: training the SAE again with seed %d (seed stability)", cfg2.seed)
            x, valid = _train_rows(store)
            second = _train(x, valid, sae_cfg, cfg2, folder, source, device, world, model)
    return Controls(untrained, rm_store, rm_sae, second)
