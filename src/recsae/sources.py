"""Where a run's recommender comes from: trained by the run, a ``recsae train`` checkpoint, the
user's own code (``module:function``), or exported embeddings. Each source builds the model for
the run's split, names what identifies it, and builds its untrained counterpart (the control
of the same architecture that never saw the data); every later stage treats them alike.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import torch

from recsae.distributed import World, once, single
from recsae.errors import ConfigError, DataError
from recsae.rundir import RunDir
from recsae.utils import log, seed_everything

if TYPE_CHECKING:
    from recsae.config import ModelOptions, RunConfig
    from recsae.data.dataset import SplitData
    from recsae.models.base import Recommender


class BuiltModel(NamedTuple):
    """A source's model, ready for the run."""

    model: Recommender
    """The model (eval mode, on the run's device)."""
    name: str
    """Its name in summaries and reports."""
    record: dict[str, Any]
    """What the summary records about it beyond its metrics (training figures, origin)."""


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, shapes, values): changes whenever
    the model would score differently, whatever it was built from."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


class ModelSource:
    """One way of obtaining the run's model."""

    kind: ClassVar[str]

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.opts: ModelOptions = cfg.model

    def identity(self) -> dict[str, Any]:
        """The options that identify the model before it is built (part of the model stage's
        fingerprint; the built weights' digest is added once it exists)."""
        raise NotImplementedError

    def build(self, split: SplitData, out: Path, device: torch.device, force: bool,
              world: World | None = None) -> BuiltModel:
        """The model for ``split``; ``out`` is the run folder. Under torchrun (``world``) every
        rank builds it, a trained one together, and rank 0 alone writes."""
        raise NotImplementedError

    def untrained(self, model: Recommender, split: SplitData, seed: int, device: torch.device) -> Recommender | None:
        """The same architecture as ``model``, initialised from ``seed``, never trained (eval
        mode); None where the source cannot build one."""
        return _reinitialised(model, seed)


class TrainHere(ModelSource):
    """The run trains a registry model (``ModelOptions.name``) into ``OUT/model``."""

    kind = "train"

    def identity(self) -> dict[str, Any]:
        from recsae.pipeline import model_settings

        model_opts, train_opts = model_settings(self.cfg)
        return {"model": self.opts.name, "model_opts": model_opts, "train": train_opts}

    def build(self, split: SplitData, out: Path, device: torch.device, force: bool,
              world: World | None = None) -> BuiltModel:
        from recsae.models.registry import model_class, model_config
        from recsae.models.trainer import TrainConfig, train_model
        from recsae.pipeline import model_settings

        world = world if world is not None else single(device)
        model_dir = RunDir(out).model
        if force and model_dir.exists():
            once(world, lambda: shutil.rmtree(model_dir), "removing the model to retrain it")
        model_opts, train_opts = model_settings(self.cfg)
        data_source = self.cfg.data.to_dict() | {"protocol": self.cfg.protocol, "seed": self.cfg.split_seed,
                                                 "options": self.cfg.data_kwargs}
        result = train_model(self.opts.name, split, model_config(self.opts.name, **model_opts), model_dir,
                             self.cfg.seed, device, TrainConfig(**train_opts), data_source=data_source, world=world)
        record = {"valid": result.valid, "test": result.test, "train_seconds": round(result.seconds, 2),
                  "best_epoch": result.best_epoch, "epochs": result.epochs}
        if self.cfg.eval_protocol != "per-user":
            record["evaluation"] = result.evaluation
        return BuiltModel(result.model, model_class(self.opts.name).name, record)

    def untrained(self, model: Recommender, split: SplitData, seed: int, device: torch.device) -> Recommender | None:
        from recsae.controls import untrained_model
        from recsae.pipeline import model_settings

        return untrained_model(self.opts.name, model_settings(self.cfg)[0], split, seed, device)


class FromCheckpoint(ModelSource):
    """A ``recsae train`` checkpoint, copied into ``OUT/model`` so the run folder stands alone."""

    kind = "checkpoint"

    def identity(self) -> dict[str, Any]:
        from recsae.probe.harvest import checkpoint_digest

        path = Path(str(self.opts.checkpoint))
        digest = checkpoint_digest(path)
        if digest is None:
            raise DataError("not a model checkpoint (no model.safetensors)", path=path)
        return {"checkpoint_sha256": digest}

    def build(self, split: SplitData, out: Path, device: torch.device, force: bool,
              world: World | None = None) -> BuiltModel:
        from recsae.models.checkpoint import (
            CONFIG_FILE,
            WEIGHTS_FILE,
            check_checkpoint_data,
            load_checkpoint,
        )

        path = Path(str(self.opts.checkpoint))
        model, config = load_checkpoint(path, device)
        check_checkpoint_data(split, config, path)
        target = RunDir(out).model

        def copy() -> None:
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for name in (WEIGHTS_FILE, CONFIG_FILE):
                shutil.copyfile(path / name, target / f".{name}.tmp")
                (target / f".{name}.tmp").replace(target / name)

        if target.resolve() != path.resolve():
            once(world if world is not None else single(device), copy, "copying the checkpoint into the run")
        return BuiltModel(model, model.name, {"checkpoint": str(path)})

    def untrained(self, model: Recommender, split: SplitData, seed: int, device: torch.device) -> Recommender | None:
        from recsae.controls import untrained_model

        cfg = getattr(model, "cfg", None)
        opts = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else {}
        return untrained_model(model.name, opts, split, seed, device)


class FromFunction(ModelSource):
    """The user's code: ``module:function`` or ``file.py:function``, called with the split."""

    kind = "function"

    def identity(self) -> dict[str, Any]:
        return {"model_from": self.opts.model_from}

    def build(self, split: SplitData, out: Path, device: torch.device, force: bool,
              world: World | None = None) -> BuiltModel:
        from recsae.models.base import Recommender

        spec = str(self.opts.model_from)
        fn = load_function(spec)
        seed_everything(self.cfg.seed)
        model = fn(split)
        if not isinstance(model, Recommender):
            raise ConfigError(f"--model-from {spec}: returned {type(model).__name__}, expected a recsae Recommender "
                              "(wrap a PyTorch module with recsae.models.DotProductModel)")
        n_items = int(model.item_embeddings().shape[0]) - 1
        if n_items != split.n_items:
            raise ConfigError(f"--model-from {spec}: the model scores {n_items} items, the data has {split.n_items} "
                              "(item_embeddings() needs a padding row 0 and one row per item 1..n_items)")
        model = model.to(device).eval()
        return BuiltModel(model, getattr(model, "name", None) or type(model).__name__, {"model_from": spec})


class FromEmbeddings(ModelSource):
    """Exported user vectors and item embeddings, scored by their dot product."""

    kind = "embeddings"

    def identity(self) -> dict[str, Any]:
        return {name: _file_digest(getattr(self.opts, name))
                for name in ("user_vectors", "item_embeddings", "user_ids", "item_ids")}

    def build(self, split: SplitData, out: Path, device: torch.device, force: bool,
              world: World | None = None) -> BuiltModel:
        from recsae.probe.embeddings import EmbeddingModel, load_matrix

        users, users_name = load_matrix(str(self.opts.user_vectors), "user vectors")
        items, items_name = load_matrix(str(self.opts.item_embeddings), "item embeddings")
        if users.shape[1] != items.shape[1]:
            raise DataError(f"the item embeddings have {items.shape[1]} columns, the user vectors {users.shape[1]}",
                            path=items_name, field="shape")
        user_table = _in_split_order(users, self.opts.user_ids, split.dataset.user_ids, "user", users_name)
        item_table = _in_split_order(items, self.opts.item_ids, split.dataset.item_ids, "item", items_name)
        model = EmbeddingModel(torch.from_numpy(user_table), torch.from_numpy(item_table)).to(device).eval()
        return BuiltModel(model, "embeddings", {"user_vectors": users_name, "item_embeddings": items_name})

    def untrained(self, model: Recommender, split: SplitData, seed: int, device: torch.device) -> Recommender | None:
        from recsae.probe.embeddings import EmbeddingModel

        # random tables with each dimension's spread: what the exported model started from,
        # as far as the run can tell
        gen = torch.Generator().manual_seed(seed)
        tables = []
        assert isinstance(model, EmbeddingModel)
        for table in (model.users, model.items):
            t = table.detach().cpu()
            r = torch.randn(t.shape, generator=gen) * t[1:].std(0, keepdim=True)
            r[0] = 0.0
            tables.append(r)
        return EmbeddingModel(*tables).to(device).eval()


SOURCES: dict[str, type[ModelSource]] = {s.kind: s for s in (TrainHere, FromCheckpoint, FromFunction, FromEmbeddings)}


def model_source(cfg: RunConfig) -> ModelSource:
    """The source ``cfg.model`` names."""
    return SOURCES[cfg.model.source](cfg)


def load_function(spec: str) -> Any:
    """The callable named by ``module:function`` or ``path/to/file.py:function``."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--model-from {spec!r}: expected module:function or path/to/file.py:function")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"--model-from {spec}: {path} not found")
            mod_spec = importlib.util.spec_from_file_location(f"recsae_user_{path.stem}", path)
            assert mod_spec is not None and mod_spec.loader is not None
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[mod_spec.name] = module
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"--model-from {spec}: cannot import {module_name}: {err}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"--model-from {spec}: {module_name} has no function {attr!r}")
    return fn


def _reinitialised(model: Recommender, seed: int) -> Recommender | None:
    """A copy of ``model`` whose every submodule with ``reset_parameters`` is reinitialised from
    ``seed``; None when no parameter could be reset (nothing untrained to compare with)."""
    clone = copy.deepcopy(model)
    seed_everything(seed)
    n_reset = 0
    for module in clone.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset) and any(True for _ in module.parameters(recurse=False)):
            reset()
            n_reset += 1
    if n_reset == 0:
        log.info("controls: the model has no resettable layers, so no untrained-model control")
        return None
    return clone.eval()


def _file_digest(path: str | None) -> str | None:
    if path is None:
        return None
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as err:
        raise DataError(f"cannot read: {err.strerror or err}", path=path) from None
    return h.hexdigest()


def _in_split_order(x: np.ndarray, ids_file: str | None, split_ids: np.ndarray, what: str, name: str) -> np.ndarray:
    """Rows of ``x`` in the split's order (row 0 zero padding): through the file of original ids
    when given, else ``x`` must already have one row per id in the split's order."""
    n = len(split_ids) - 1
    table = np.zeros((n + 1, x.shape[1]), dtype=np.float32)
    if ids_file is None:
        if len(x) != n:
            raise DataError(f"{len(x)} rows for the dataset's {n} {what}s (give --{what}-ids to map rows to {what} ids)",
                            path=name, field="shape")
        table[1:] = x
        return table
    try:
        ids = [line.strip() for line in Path(ids_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as err:
        raise DataError(f"cannot read: {err.strerror or err}", path=ids_file) from None
    if len(ids) != len(x):
        raise DataError(f"{len(ids)} ids for {len(x)} rows of {name}", path=ids_file)
    position = {str(raw): i for i, raw in enumerate(split_ids[1:], start=1)}
    seen = np.zeros(n + 1, dtype=bool)
    for line, raw in enumerate(ids, start=1):
        i = position.get(raw)
        if i is None:
            continue  # an id the dataset's filters dropped
        table[i], seen[i] = x[line - 1], True
    missing = int((~seen[1:]).sum())
    if missing:
        example = split_ids[1:][~seen[1:]][:3].tolist()
        raise DataError(f"{missing} of the dataset's {what}s have no row (e.g. ids {example})", path=ids_file)
    return table
