"""Configuration of the TopK sparse autoencoder and of its trainer (docs/method.md §2)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from recsae.errors import ConfigError


@dataclass(frozen=True)
class SaeConfig:
    """Shape and loss of a TopK + AuxK sparse autoencoder."""

    d_in: int
    """Width d of the representation the SAE reads."""
    expansion: int = 32
    """Latents per input dimension; ``n_latents = expansion * d_in`` unless ``n_latents`` is set."""
    n_latents: int | None = None
    """Number of latents m; overrides ``expansion`` when given."""
    k: int = 32
    """Active latents per row (TopK)."""
    aux_k: int | None = None
    """Latents used by the AuxK loss among dead latents; ``None`` means ``d_in // 2``."""
    aux_alpha: float = 1 / 32
    """Weight of the AuxK loss in the total loss (0 disables it)."""
    dead_window: int = 50_000
    """A latent is dead when it was in no row's top-k over the last ``dead_window`` training rows."""
    aux_relu: bool = False
    """AuxK reads the dead latents' pre-activations through the ReLU (as the TopK path does).
    False (default): their raw pre-activations, so a latent whose pre-activation is negative on
    every row still gets a gradient toward the residual (with the ReLU it never does, and stays
    dead: on ML-1M most latents of a plain TopK SAE did)."""

    def __post_init__(self) -> None:
        if self.d_in < 1:
            raise ConfigError(f"sae: d_in must be >= 1, got {self.d_in}")
        if self.n_latents is None and self.expansion < 1:
            raise ConfigError(f"sae: expansion must be >= 1, got {self.expansion}")
        if self.n_latents is not None and self.n_latents < 1:
            raise ConfigError(f"sae: n_latents must be >= 1, got {self.n_latents}")
        if not 1 <= self.k <= self.m:
            raise ConfigError(f"sae: k must be in [1, {self.m}] (the number of latents), got {self.k}")
        if self.aux_k is not None and self.aux_k < 1:
            raise ConfigError(f"sae: aux_k must be >= 1, got {self.aux_k}")
        if self.aux_alpha < 0:
            raise ConfigError(f"sae: aux_alpha must be >= 0, got {self.aux_alpha}")
        if self.dead_window < 1:
            raise ConfigError(f"sae: dead_window must be >= 1 row, got {self.dead_window}")

    @property
    def m(self) -> int:
        """Number of latents."""
        return self.n_latents if self.n_latents is not None else self.expansion * self.d_in

    @property
    def k_aux(self) -> int:
        """Latents used by AuxK (``aux_k`` or ``d_in // 2``, at least 1)."""
        return self.aux_k if self.aux_k is not None else max(1, self.d_in // 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SaeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"sae config: unknown field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**data)


MIN_ROWS_MAX_EPOCHS = 100
"""The most passes ``SaeTrainConfig.min_rows`` may add: beyond that a store is too small to fit
the SAE well, and more passes only overfit it."""


RUN_EPOCHS = 16
"""Passes over the training rows that ``recsae run`` and ``recsae sae train`` make by default
(``RunConfig.sae_epochs`` says why)."""
RUN_MIN_ROWS = 1_500_000
"""Rows ``recsae run`` and ``recsae sae train`` train on at least by default (``RunConfig.sae_min_rows``)."""


@dataclass(frozen=True)
class SaeTrainConfig:
    """Optimisation of the SAE: Adam with linear warm-up and decay, batches counted in rows."""

    lr: float = 1e-2
    """Peak Adam learning rate."""
    warmup_rows: int = 50_000
    """Rows over which the learning rate rises linearly from 0 to ``lr``."""
    decay: str = "linear"
    """Schedule after warm-up: ``linear`` (to ``final_lr_frac * lr`` at the end), ``cosine`` or ``none``."""
    final_lr_frac: float = 0.0
    """Learning rate at the end of training, as a fraction of ``lr``."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    batch_size: int = 4096
    """Rows per optimizer step."""
    epochs: int = 1
    """Passes over the training rows (ignored when ``max_rows`` is set)."""
    max_rows: int | None = None
    """Row budget: stop after this many training rows (may span several epochs)."""
    min_rows: int = 0
    """Train on at least this many rows in all: a small training set gets more passes than
    ``epochs`` (at most ``MIN_ROWS_MAX_EPOCHS``) so that the SAE takes enough optimizer steps.
    Ignored when ``max_rows`` is set."""
    seed: int = 0
    """Seed of the initialisation and of the per-epoch row shuffle."""
    patience: int | None = None
    """Early stop after this many epochs without a better validation FVU (``None``: never)."""
    min_delta: float = 0.0
    """Improvement of the validation FVU that counts as better."""
    eval_batch_size: int = 16384
    """Rows per batch when evaluating on the validation rows."""
    b_dec_init_rows: int = 8192
    """Rows sampled from the training data to initialise ``b_dec`` and the encoder scale (0: neither)."""
    b_dec_init: str = "mean"
    """``mean`` or ``median`` (geometric median) of the sampled rows."""
    scale_encoder_init: bool = True
    """Scale the tied encoder init to the data (``TopKSAE.scale_encoder_to_data``)."""
    balance_until: float = 1.0
    """Share of the training rows after which load balancing stops and the selection bias decays
    linearly to zero by the end, so the last steps train the plain TopK selection the SAE is
    then used with (1.0: balancing throughout, the bias kept)."""
    kl_weight: float = 0.0
    """Prediction-aware loss: add this times KL(softmax(x·Eᵀ/τ) ‖ softmax(x̂·Eᵀ/τ)), the
    divergence of the model's item distribution from x to its reconstruction (needs the item
    embeddings E; 0: plain reconstruction)."""
    kl_temperature: float = 1.0
    """τ of the prediction-aware loss."""
    balance_rate: float = 0.0
    """Load balancing of latent usage: after each step, the selection bias of every latent chosen
    less often than the uniform share k/m moves up (others down) by this rate times the batch's
    mean selected activation (``TopKSAE.balance_step``). 0 (default) is plain TopK. Balancing
    keeps all latents in use, each on about k/m of the rows, at some cost in FVU."""
    checkpoint_every: int = 1
    """Write a resumable checkpoint to ``out_dir`` every this many epochs."""
    log_every: int = 1
    """One log line every this many epochs."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"sae train: lr must be a finite number > 0, got {self.lr}")
        if self.warmup_rows < 0:
            raise ConfigError(f"sae train: warmup_rows must be >= 0, got {self.warmup_rows}")
        if self.decay not in ("linear", "cosine", "none"):
            raise ConfigError(f"sae train: decay must be linear, cosine or none, got {self.decay!r}")
        if self.batch_size < 1:
            raise ConfigError(f"sae train: batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ConfigError(f"sae train: epochs must be >= 1, got {self.epochs}")
        if self.min_rows < 0:
            raise ConfigError(f"sae train: min_rows must be >= 0, got {self.min_rows}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ConfigError(f"sae train: max_rows must be >= 1, got {self.max_rows}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"sae train: patience must be >= 1, got {self.patience}")
        if self.b_dec_init not in ("mean", "median"):
            raise ConfigError(f"sae train: b_dec_init must be mean or median, got {self.b_dec_init!r}")
        if not (math.isfinite(self.balance_rate) and self.balance_rate >= 0):
            raise ConfigError(f"sae train: balance_rate must be a finite number >= 0, got {self.balance_rate}")
        if not 0.0 <= self.balance_until <= 1.0:
            raise ConfigError(f"sae train: balance_until must be in [0, 1], got {self.balance_until}")
        if not (math.isfinite(self.kl_weight) and self.kl_weight >= 0 and math.isfinite(self.kl_temperature)
                and self.kl_temperature > 0):
            raise ConfigError("sae train: kl_weight must be a finite number >= 0 and kl_temperature finite and > 0, "
                              f"got {self.kl_weight}, {self.kl_temperature}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("sae train: checkpoint_every and log_every must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SaeTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"sae train config: unknown field(s) {unknown}; expected some of {sorted(known)}")
        data = dict(data)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)
