"""The run folder (``recsae run --out OUT``): the one place that names its entries.

A control folder holds what the run folder holds for the run's own model and SAE (its
``activations`` and ``sae``, under the same names). What lies inside a checkpoint, an SAE or an
activation store folder is those folders' own business (``recsae.models.checkpoint``,
``recsae.sae.model``, ``recsae.probe.store``). docs/ARCHITECTURE.md lists the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True, init=False)
class RunDir:
    """The paths of the run folder ``root``; the class constants are its entries' names."""

    root: Path
    """The run folder (``--out``)."""

    CONFIG: ClassVar[str] = "config.json"
    """Run config, seed, versions."""
    SUMMARY: ClassVar[str] = "summary.json"
    """Headline figures of every stage (keys in docs/summary.md)."""
    MODEL: ClassVar[str] = "model"
    """Model checkpoint folder."""
    ACTIVATIONS: ClassVar[str] = "activations"
    """Activation store folder."""
    SAE: ClassVar[str] = "sae"
    """The trained SAE (cfg.json + sae.safetensors + train_log.jsonl)."""
    RANDOM_SAE: ClassVar[str] = "random_sae"
    """The untrained baseline SAE."""
    CONTROLS: ClassVar[str] = "controls"
    """The trained controls, one folder each."""
    RANDOM_MODEL_CONTROL: ClassVar[str] = "random_model"
    """Under CONTROLS: the untrained model's activation store and the SAE trained on it."""
    SEED_SAE_CONTROL: ClassVar[str] = "seed_sae"
    """Under CONTROLS: the SAE trained again with seed + 1 (seed stability)."""
    GROUND_TRUTH: ClassVar[str] = "ground_truth"
    """Synthetic data only: planted concepts and user preferences."""
    SPLICE: ClassVar[str] = "splice.json"
    """Splice table."""
    INTERPRETATION: ClassVar[str] = "interpretation.parquet"
    """One row per latent."""
    INTERPRET_SUMMARY: ClassVar[str] = "interpret.json"
    """Interpretation summary and baselines."""
    EXPLAIN: ClassVar[str] = "explain.json"
    """LLM explanations of latents and their scores (``recsae explain``)."""
    LLM_CACHE: ClassVar[str] = "llm_cache"
    """Every answer of the LLM server, one JSON file per request."""
    STEER: ClassVar[str] = "steer.json"
    """Ablation and steering results."""
    REPORT_DATA: ClassVar[str] = "report_data"
    """Latent examples and histograms for the report."""
    LATENT_EXAMPLES: ClassVar[str] = "latent_examples.json"
    """Under REPORT_DATA: per-latent examples."""
    REPORT: ClassVar[str] = "report"
    """The report folder."""
    REPORT_PAGE: ClassVar[str] = "index.html"
    """Under REPORT: the report page."""

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def summary(self) -> Path:
        return self.root / self.SUMMARY

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    @property
    def activations(self) -> Path:
        return self.root / self.ACTIVATIONS

    @property
    def sae(self) -> Path:
        return self.root / self.SAE

    @property
    def random_sae(self) -> Path:
        return self.root / self.RANDOM_SAE

    @property
    def controls(self) -> Path:
        return self.root / self.CONTROLS

    @property
    def random_model_control(self) -> Path:
        return self.controls / self.RANDOM_MODEL_CONTROL

    @property
    def seed_sae_control(self) -> Path:
        return self.controls / self.SEED_SAE_CONTROL

    @property
    def ground_truth(self) -> Path:
        return self.root / self.GROUND_TRUTH

    @property
    def splice(self) -> Path:
        return self.root / self.SPLICE

    @property
    def interpretation(self) -> Path:
        return self.root / self.INTERPRETATION

    @property
    def interpret_summary(self) -> Path:
        return self.root / self.INTERPRET_SUMMARY

    @property
    def explain(self) -> Path:
        return self.root / self.EXPLAIN

    @property
    def llm_cache(self) -> Path:
        return self.root / self.LLM_CACHE

    @property
    def steer(self) -> Path:
        return self.root / self.STEER

    @property
    def report_data(self) -> Path:
        return self.root / self.REPORT_DATA

    @property
    def latent_examples(self) -> Path:
        return self.report_data / self.LATENT_EXAMPLES

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    @property
    def report_page(self) -> Path:
        return self.report / self.REPORT_PAGE
