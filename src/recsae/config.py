"""The whole run's options as one nested config: what ``recsae run`` reads from its flags or a
``--config`` file (TOML or JSON), writes to ``OUT/config.json``, and the pipeline reads.

The option defaults are written here once: the CLI leaves an option it was not given unset,
and a file overrides only the keys it names. Importing this module is light (no torch); the
interpretation and steering configs are imported when a ``RunConfig`` is made.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from recsae.data.registry import DatasetOptions
from recsae.errors import ConfigError
from recsae.sae.config import RUN_EPOCHS, RUN_MIN_ROWS

if TYPE_CHECKING:
    from recsae.interpret.api import InterpretConfig
    from recsae.steer.study import SteerConfig


@dataclass(frozen=True)
class ModelOptions:
    """The recommender: trained by the run (the default), or given by the user (``checkpoint``,
    ``model_from``, or ``user_vectors`` + ``item_embeddings``; at most one of the three)."""

    name: str = "sasrec"
    """Recommender to train: sasrec, gru4rec, bpr or lightgcn."""
    epochs: int = 200
    """Most training epochs (early stopping usually ends sooner)."""
    patience: int | None = None
    """Early-stopping patience in epochs (None: the tuned preset's, else from the data: 20 under
    2,000 users, whose validation NDCG@10 is noisy, else 10; ``recsae.defaults.train_defaults``)."""
    lr: float | None = None
    """Adam learning rate (None: the tuned preset's, else from the data: sequential models 5e-3
    under 100k interactions, 3e-3 under 2M, else 1e-3; general models 1e-3, LightGCN 5e-3 under
    200k interactions)."""
    batch_size: int | None = None
    """Training batch size (None: the tuned preset's, else from the data: sequential models 64
    sequences under 20k users, else 128; general models 1,024 pairs under 200k interactions, else
    4,096)."""
    max_len: int | None = None
    """Longest history a sequential model reads (None: the tuned preset's, else 200)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Options of the trained model's own config (``recsae.models``: e.g. ``dim``, ``n_blocks``,
    ``dropout``, ``label_smoothing``), laid over the tuned preset's; an option the model does not
    take is an error that lists those it does. Only for a model the run trains."""
    checkpoint: str | None = None
    """A ``recsae train`` checkpoint folder: its model is used as trained, on the dataset and split
    it records (unless the run names another dataset explicitly)."""
    model_from: str | None = None
    """``module:function`` or ``path/to/file.py:function``: the user's code builds the model. The
    function is called with the run's ``SplitData`` and returns a ``recsae.models.Recommender``
    (e.g. a ``DotProductModel`` around the user's own PyTorch module), whose user and item ids
    are the split's (``split.dataset.user_ids`` / ``item_ids`` give the original ids)."""
    user_vectors: str | None = None
    """Embeddings mode: a ``.npy`` of one vector per user (exported from any model that scores
    user · item), row order given by ``user_ids`` (else the dataset's user order)."""
    item_embeddings: str | None = None
    """Embeddings mode: a ``.npy`` of one vector per item, row order given by ``item_ids``."""
    user_ids: str | None = None
    """Embeddings mode: a text file with the original user id of each row of ``user_vectors``."""
    item_ids: str | None = None
    """Embeddings mode: a text file with the original item id of each row of ``item_embeddings``."""

    @property
    def source(self) -> str:
        """Where the model comes from: train, checkpoint, function or embeddings."""
        if self.checkpoint is not None:
            return "checkpoint"
        if self.model_from is not None:
            return "function"
        if self.user_vectors is not None or self.item_embeddings is not None:
            return "embeddings"
        return "train"


@dataclass(frozen=True)
class SaeOptions:
    """The sparse autoencoder and its controls."""

    k: int | None = None
    """Active latents per row (None: 32, or at most 1/16 of the latents of a narrow SAE;
    ``recsae.defaults.sae_defaults``)."""
    expansion: int | None = None
    """Latents per input dimension (None: the widest power of two up to 32 whose latents fire, on
    average, on at least 150 harvested rows of 20 users, so that the interpretation can validate
    them: 32 on ML-1M and the synthetic data, 16 for LightGCN on ml-100k). A width too large for
    the data is warned about."""
    epochs: int = RUN_EPOCHS
    """Passes over the training rows (the epoch with the best validation FVU is kept). On ML-1M
    (470k rows) 16 passes instead of 4 raised the share of interpretable latents from 52.9 % to
    56.7 % and cut the validation FVU from 0.046 to 0.040."""
    min_rows: int = RUN_MIN_ROWS
    """Train on at least this many rows in all, so a small activation store gets more passes
    (ml-latest-small's 27k rows get 55: FVU 0.143 -> 0.083). 0: exactly ``epochs``."""
    balance: float = 0.0
    """Load balancing of latent usage (``SaeTrainConfig.balance_rate``; 0: plain TopK). On ML-1M
    a rate of 0.03 raised the rule-test share (60 % against 9 %) but an untrained SAE scores
    54 % there; it cost fidelity (validation FVU 0.030 against 0.011, top-10 overlap 0.838
    against 0.910) and 1-unit probing (mean AUC 0.548 against 0.669; untrained SAE 0.598):
    benchmarks/bench_sae_defaults.py."""
    balance_until: float = 1.0
    """Share of the training after which balancing stops and its bias decays to zero."""
    aux_relu: bool = False
    """AuxK reads the dead latents' pre-activations through the ReLU. False (the default) lets it
    revive latents whose pre-activation is negative on every row: on ML-1M a plain TopK SAE then
    ends with 0.1 % dead latents instead of most of them."""
    kl_weight: float = 0.0
    """Weight of the prediction-aware loss: the KL divergence between the softmax over the model's
    item scores of the representation and of its reconstruction (0: reconstruction alone). On
    ML-1M SASRec a weight of 1 kept fidelity (validation FVU 0.012, top-10 overlap 0.916, no dead
    latent) and moved the interpretation little (1-unit probe AUC 0.674 against 0.669) for about
    six times the training time: benchmarks/bench_sae_defaults.py."""
    controls: bool = True
    """Train the controls beside the SAE (an SAE on the untrained model's representations, and the
    SAE again with another seed) and interpret them through the same pipeline."""
    path: str | None = None
    """A trained SAE folder (``cfg.json`` + ``sae.safetensors``) to use instead of training one."""


def _interpret_config() -> InterpretConfig:
    from recsae.interpret.api import InterpretConfig

    return InterpretConfig()


def _steer_config() -> SteerConfig:
    from recsae.steer.study import SteerConfig

    return SteerConfig()


STAGES = ("model", "sae", "interpret", "steer", "report")


@dataclass(frozen=True)
class RunConfig:
    """Options of a whole run (``recsae run``), as nested configs."""

    data: DatasetOptions = field(default_factory=DatasetOptions)
    """Which dataset, with which filters."""
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra options of the dataset's loader (e.g. the synthetic generator's ``n_users``)."""
    protocol: str = "auto"
    """Split: auto (the source's own split, else leave-one-out; random for general models on data
    without timestamps), leave-one-out, random, time, global-time or given."""
    eval_protocol: Literal["auto", "per-user", "rechorus"] = "auto"
    """How the model is selected and tested, and most-popular too: per-user, or rechorus (each
    held-out row its own next-item prediction, the RecSAE reference's protocol; needs a
    time-ordered split such as global-time); auto: the protocol a checkpoint was chosen in for a
    run from one, else per-user (``pipeline.with_checkpoint_data`` settles it before any stage)."""
    model: ModelOptions = field(default_factory=ModelOptions)
    """The recommender and its training."""
    sae: SaeOptions = field(default_factory=SaeOptions)
    """The sparse autoencoder."""
    interpret: InterpretConfig = field(default_factory=_interpret_config)
    """The interpretation (its ``seed`` is the run's)."""
    steer: SteerConfig = field(default_factory=_steer_config)
    """Steering (empty ``concepts``: chosen from the interpretation; its ``seed`` is the run's)."""
    stages: tuple[str, ...] = STAGES
    """Stages to run. The model and SAE stages also run (or resume from disk) whenever a later
    stage is asked for, since every later stage needs them."""
    seed: int = 0
    """Seed of data generation, initialisations and samples."""
    data_seed: int | None = None
    """Seed of the dataset's generation and split, where it differs from ``seed`` (a checkpoint's
    recorded one)."""
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda, ..."""

    @property
    def split_seed(self) -> int:
        """The seed the data and the split are made with."""
        return self.seed if self.data_seed is None else self.data_seed

    def __post_init__(self) -> None:
        # one seed for the run: the nested configs' own seeds follow it
        object.__setattr__(self, "interpret", dataclasses.replace(self.interpret, seed=self.seed))
        object.__setattr__(self, "steer", dataclasses.replace(self.steer, seed=self.seed))
        unknown = set(self.stages) - set(STAGES)
        if unknown:
            raise ConfigError(f"unknown stage(s) {sorted(unknown)}: expected some of {', '.join(STAGES)}")
        sources = [name for name, given in (("checkpoint", self.model.checkpoint), ("model_from", self.model.model_from),
                                            ("user_vectors/item_embeddings", self.model.user_vectors or self.model.item_embeddings))
                   if given]
        if len(sources) > 1:
            raise ConfigError(f"model: give one source of the model, not {' and '.join(sources)}")
        if self.model.source == "embeddings" and not (self.model.user_vectors and self.model.item_embeddings):
            raise ConfigError("model: embeddings mode needs both user_vectors and item_embeddings")
        if self.model.options and self.model.source != "train":
            raise ConfigError(f"model.options {sorted(self.model.options)}: only for a model the run trains, "
                              f"not one from {self.model.source}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested record (``from_dict`` reads it back)."""
        d = _plain(self)
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RunConfig:
        """A config from a nested record (e.g. a parsed TOML file); absent keys keep their
        defaults, unknown keys and wrong types are errors naming the key."""
        record = dict(record)
        data = record.pop("data", None)
        cfg = _build(cls, record, "")
        if data is not None:
            if not isinstance(data, dict) or "dataset" not in data:
                raise ConfigError("data: expected a table with at least 'dataset'")
            extra = set(data) - {"dataset", "data_root", "format", "min_rating", "k_core", "table"}
            if extra:
                raise ConfigError(f"data: unknown option(s) {sorted(extra)}")
            cfg = dataclasses.replace(cfg, data=DatasetOptions.from_dict(data))
        return cfg

    def override(self, changes: dict[str, Any]) -> RunConfig:
        """This config with the dotted keys of ``changes`` (``{"sae.k": 16}``) replaced; None
        values are skipped, so unset CLI options keep the config's values."""
        record = self.to_dict()
        for key, value in changes.items():
            if value is None:
                continue
            *parents, last = key.split(".")
            node = record
            for part in parents:
                node = node[part]
            node[last] = value
        return RunConfig.from_dict(record)


def load_config(path: str | Path) -> RunConfig:
    """A ``RunConfig`` from a TOML file, or a JSON file (a run folder's ``config.json`` too)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror or err}") from None
    run_folder = False
    try:
        if path.suffix == ".json":
            record = json.loads(text)
            if run_folder := isinstance(record, dict) and "config" in record and "format_version" in record:
                record = record["config"]
        else:
            record = _toml_loads(text)
    except ValueError as err:
        raise ConfigError(f"{path}: not a valid {'JSON' if path.suffix == '.json' else 'TOML'} file: {err}") from None
    try:
        return RunConfig.from_dict(record)
    except ConfigError as err:
        # a run's own record that this recsae cannot read was written by another version of it
        hint = (" (a run folder written by another version of recsae; rerun `recsae run` into a new folder)"
                if run_folder else "")
        raise ConfigError(f"{path}: {err}{hint}") from None


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli

        return tomli.loads(text)
    return tomllib.loads(text)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _hints(cls: type) -> dict[str, Any]:
    # the nested configs' modules must be importable for their annotations to resolve
    from recsae.interpret.api import InterpretConfig
    from recsae.steer.study import SteerConfig

    namespace = {"InterpretConfig": InterpretConfig, "SteerConfig": SteerConfig}
    import sys

    return typing.get_type_hints(cls, globalns=vars(sys.modules[cls.__module__]) | namespace)


def _build(cls: type, record: Any, where: str) -> Any:
    if not isinstance(record, dict):
        raise ConfigError(f"{where or 'config'}: expected a table of options, got {record!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(record) - set(names))
    if unknown:
        raise ConfigError(f"{where + ': ' if where else ''}unknown option(s) {unknown}; expected some of {', '.join(names)}")
    values = {name: option_value(hints[name], record[name], f"{where}.{name}" if where else name)
              for name in names if name in record}
    return cls(**values)


def option_value(tp: Any, value: Any, where: str) -> Any:
    """``value`` checked against type ``tp`` (and converted: a number to float, a list to a tuple,
    a table to its dataclass); ConfigError naming ``where`` and what was expected otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return option_value(inner[0], value, where) if len(inner) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where}: expected a table of named options, got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(option_value(args[0], v, where) for v in value) if args else tuple(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Path:
        return Path(value)
    return value
