"""Model checkpoints: a folder with ``config.json`` (model name and config, data description and
fingerprint, versions, seed, format_version) and ``model.safetensors`` (the state dict)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsae.data.dataset import SplitData
from recsae.data.registry import dataset_fingerprint
from recsae.errors import DataError
from recsae.io import (
    FORMAT_VERSION,
    check_format_version,
    read_json,
    read_tensors,
    write_json,
    write_tensors,
)
from recsae.models.base import TrainableRecommender
from recsae.models.registry import model_class
from recsae.utils import environment_info, log

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def split_fingerprint(split: SplitData) -> str:
    """SHA-256 of the split's arrays: the same data and split give the same fingerprint."""
    h = hashlib.sha256(f"{split.protocol}:{split.n_users}:{split.n_items}".encode())
    for part in (split.train, split.valid, split.test):
        for arr in (part.indptr, part.values):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    return h.hexdigest()


def data_record(split: SplitData, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint says about its data; ``source`` holds the options to reload it."""
    return {
        "name": split.dataset.name,
        "n_users": split.n_users,
        "n_items": split.n_items,
        "protocol": split.protocol,
        "fingerprint": dataset_fingerprint(split.dataset),
        "split_fingerprint": split_fingerprint(split),
        "info": split.dataset.info,
        "source": source or {},
    }


def checkpoint_config(
    model: TrainableRecommender, data: dict[str, Any], seed: int, train: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``config.json`` contents of a checkpoint: model spec, data record, training options,
    seed, metrics, versions and ``format_version``."""
    return {
        "format_version": FORMAT_VERSION,
        "model": {
            "name": model.name,
            "config": dataclasses.asdict(model.cfg),
            "n_users": model.n_users,
            "n_items": model.n_items,
        },
        "data": data,
        "train": train or {},
        "seed": seed,
        "metrics": metrics or {},
        "environment": environment_info(),
    }


def save_checkpoint(path: str | Path, model: TrainableRecommender, config: dict[str, Any]) -> None:
    """Write the weights, then ``config.json`` (each atomically; the config marks completion)."""
    path = Path(path)
    write_tensors(path / WEIGHTS_FILE, model.state_dict(), metadata={"model": model.name})
    write_json(path / CONFIG_FILE, config)


def load_checkpoint(path: str | Path, device: str | torch.device | None = None) -> tuple[TrainableRecommender, dict[str, Any]]:
    """The model (in eval mode, on ``device`` or the CPU) and its ``config.json`` contents."""
    path = Path(path)
    cfg_path, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (cfg_path, weights):
        if not f.is_file():
            raise DataError("not a model checkpoint (expected config.json and model.safetensors)", path=f)
    config = read_json(cfg_path)
    check_format_version(config, cfg_path)
    try:
        spec = config["model"]
        cls = model_class(spec["name"])
        cfg = cls.config_class(**spec["config"])
        n_users, n_items = int(spec["n_users"]), int(spec["n_items"])
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"malformed model section: {err!r}", path=cfg_path, field="model") from None
    tensors = read_tensors(weights)
    try:
        # a skeleton without memory: a damaged config must not build a huge model before the check
        with torch.device("meta"):
            skeleton = cls(cfg, n_users, n_items)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"malformed model section: {err!r}", path=cfg_path, field="model") from None
    # parameters have the config's shapes; buffers may hold data (LightGCN's edges)
    shapes = {k: tuple(v.shape) for k, v in skeleton.named_parameters()}
    wrong = sorted((skeleton.state_dict().keys() ^ tensors.keys())
                   | {k for k, shape in shapes.items() if k in tensors and tuple(tensors[k].shape) != shape})
    if wrong:
        raise DataError(f"the weights do not match the model config ({', '.join(wrong[:5])})", path=weights)
    try:
        model = cls.from_tensors(cfg, n_users, n_items, tensors)
    except RuntimeError as err:  # a buffer of the wrong shape
        raise DataError(f"the weights do not match the model config: {err}", path=weights) from None
    return model.to(device or "cpu").eval(), config


def checkpoint_protocol(config: dict[str, Any]) -> str:
    """The evaluation protocol a checkpoint's model was chosen and tested in (its ``config.json``
    train record; per-user where it records none): what evaluating or splicing it ranks alike."""
    return str(config.get("train", {}).get("eval_protocol", "per-user"))


def split_for_checkpoint(checkpoint: Path, config: dict[str, Any], data_root: Path | None = None) -> SplitData:
    """Reload the dataset and split recorded in a model checkpoint, checking that it is the data
    the model was trained on (``check_checkpoint_data``)."""
    from recsae.data.registry import DatasetOptions
    from recsae.data.split import make_split
    from recsae.errors import ConfigError

    src = config.get("data", {}).get("source", {})
    if not src:
        raise ConfigError(f"{checkpoint} does not record its dataset (config.json data.source); recsae evaluate takes it as --dataset")
    opts = DatasetOptions.from_dict(src, data_root)
    seed = int(src.get("seed", config.get("seed", 0)))
    sequential = model_class(config.get("model", {}).get("name", "sasrec")).sequential
    split = make_split(opts.load(seed, **src.get("options", {})), src.get("protocol", "auto"), seed=seed,
                       sequential=sequential)
    check_checkpoint_data(split, config, checkpoint)
    return split


def check_checkpoint_data(split: SplitData, config: dict[str, Any], checkpoint: Path) -> None:
    """DataError naming the checkpoint's config.json unless ``split`` is the data its model was
    trained on: the same users and items, and the same interactions split the same way (the
    recorded ``data.split_fingerprint``). A checkpoint written before the fingerprint was
    recorded is checked by its size only, with a warning."""
    spec = config.get("model", {})
    check_split_fits(split, spec.get("n_users"), spec.get("n_items"), checkpoint)
    recorded = config.get("data", {}).get("split_fingerprint")
    if recorded is None:
        log.warning("%s records no split fingerprint (an older checkpoint): only the data's size was checked",
                    checkpoint / CONFIG_FILE)
        return
    now = split_fingerprint(split)
    if recorded != now:
        raise DataError(
            f"the data has the model's {split.n_users} users and {split.n_items} items but other interactions or "
            f"another split than it was trained on (split fingerprint {now[:12]}..., recorded {str(recorded)[:12]}...); "
            "load the dataset with the options the model was trained with",
            path=checkpoint / CONFIG_FILE,
            field="data.split_fingerprint",
        )


def check_split_fits(split: SplitData, n_users: int | None, n_items: int | None, checkpoint: Path) -> None:
    """DataError naming the checkpoint unless ``split`` has the users and items the model was trained on."""
    if (split.n_users, split.n_items) != (n_users, n_items):
        raise DataError(
            f"the data has {split.n_users} users and {split.n_items} items; the model was trained on "
            f"{n_users} and {n_items}",
            path=checkpoint / CONFIG_FILE,
            field="data",
        )
