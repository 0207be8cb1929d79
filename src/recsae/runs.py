"""A run folder from Python: ``recsae.run(...)`` makes one, ``Run.open(out)`` opens one.

    import recsae
    run = recsae.run("runs/demo", dataset="synthetic")
    run.interpretation.head()
    run.steer("concept=jazz", alpha=0.05).table()

Everything is loaded when first used: the split is made again from the recorded options
(deterministic), the model comes from the run's model source (``OUT/model`` for a trained
model or a checkpoint; the user's code or files otherwise, checked against the recorded
weights), the SAE from ``OUT/sae``, the activations from ``OUT/activations``.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsae.config import RunConfig, load_config
from recsae.errors import DataError
from recsae.io import read_json
from recsae.models.checkpoint import CONFIG_FILE
from recsae.rundir import RunDir

if TYPE_CHECKING:
    import pandas as pd

    from recsae.data.dataset import SplitData
    from recsae.interpret.explain import ExplainConfig
    from recsae.interpret.llm import LlmConfig
    from recsae.models.base import Recommender
    from recsae.probe.store import ActivationStore
    from recsae.sae.model import TopKSAE
    from recsae.steer.effects import Comparison
    from recsae.steer.targets import ConceptItems


class Run:
    """An opened run folder: its config, summary, and lazily its split, model, SAE,
    activations and interpretation."""

    def __init__(self, out: str | Path, data_root: str | Path | None = None, device: str | None = None) -> None:
        from recsae.config import ModelOptions
        from recsae.pipeline import with_checkpoint_data

        self.out = Path(out)
        self.paths = RunDir(self.out)
        """Every entry of the run folder."""
        if not self.out.is_dir():
            raise DataError("run folder not found (expected the --out folder of `recsae run`)", path=self.out)
        if self.paths.config.is_file():
            cfg = load_config(self.paths.config)
        elif (self.paths.model / CONFIG_FILE).is_file():  # a folder assembled by hand around a checkpoint
            cfg = RunConfig(model=ModelOptions(checkpoint=str(self.paths.model)))
        else:
            raise DataError("not a run folder (no config.json; expected the --out folder of `recsae run`)", path=self.out)
        if data_root is not None:
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_root=Path(data_root)))
        cfg = with_checkpoint_data(cfg)
        self.config: RunConfig = dataclasses.replace(cfg, device=device) if device is not None else cfg
        self.summary: dict[str, Any] = read_json(self.paths.summary) if self.paths.summary.is_file() else {}

    @classmethod
    def open(cls, out: str | Path, data_root: str | Path | None = None, device: str | None = None) -> Run:
        """The run in folder ``out`` (``data_root``: where its dataset lives now)."""
        return cls(out, data_root, device)

    def __repr__(self) -> str:
        return f"Run({str(self.out)!r}, dataset={self.config.data.dataset!r}, model={self.config.model.source})"

    @cached_property
    def device(self) -> Any:
        from recsae.utils import default_device

        return default_device(self.config.device)

    @cached_property
    def split(self) -> SplitData:
        """The run's data and split, made again from the recorded options."""
        from recsae.pipeline import make_run_split

        return make_run_split(self.config)

    @cached_property
    def model(self) -> Recommender:
        """The run's recommender (eval mode)."""
        from recsae.models.checkpoint import check_checkpoint_data, load_checkpoint
        from recsae.sources import model_source, weights_digest

        self._need("model")
        model: Recommender
        if self.config.model.source in ("train", "checkpoint"):  # OUT/model holds it
            model, config = load_checkpoint(self.paths.model, self.device)
            check_checkpoint_data(self.split, config, self.paths.model)
        else:
            model = model_source(self.config).build(self.split, self.out, self.device, force=False).model
        recorded = self.summary.get("model", {}).get("weights_sha256")
        if recorded is not None and weights_digest(model) != recorded:
            raise DataError("the model differs from the one this run used (its code or files changed since); rerun "
                            "`recsae run` to bring the run up to date", path=self.paths.summary, field="model")
        return model

    @cached_property
    def sae(self) -> TopKSAE:
        from recsae.sae.model import TopKSAE

        self._need("sae")
        return TopKSAE.load(self.paths.sae, self.device)

    @cached_property
    def store(self) -> ActivationStore:
        """The harvested activations (memory-mapped)."""
        from recsae.probe.store import ActivationStore

        self._need("sae")
        return ActivationStore.open(self.paths.activations)

    @cached_property
    def interpretation(self) -> pd.DataFrame:
        """One row per latent and unit: its rule, concept, confidence, ... (``docs/summary.md``)."""
        from recsae.interpret.api import read_interpretation

        self._need("interpret")
        return read_interpretation(self.out)

    @cached_property
    def items(self) -> ConceptItems:
        """The item set of every concept (``attribute=value``) of the run's catalogue."""
        from recsae.steer.targets import concept_items

        return concept_items(self.split, self.config.interpret.concepts)

    def steer(self, concept: str, alpha: float, method: str = "add", max_users: int | None = None) -> Comparison:
        """Steer toward ``concept`` with strength ``alpha`` through the latents the run's steering
        config picks, and compare with the unedited model and a random-latent control of the same
        size (``.table()`` lists the concept's top-10 share, its mean rank, HR/NDCG@10, ...)."""
        from recsae.steer import compare
        from recsae.steer.study import make_context, steer_edit, steering_targets

        cfg = self.config.steer if max_users is None else dataclasses.replace(self.config.steer, max_users=max_users)
        mask = self.items.mask(concept)  # an unknown concept fails before any work
        table = self.interpretation if self.has("interpret") else None
        ctx = make_context(self.model, self.sae, self.split, cfg, eval_protocol=self.config.eval_protocol)
        latents = steering_targets(ctx, table, self.items, concept, cfg)
        return compare(ctx, steer_edit(method, latents, alpha), {concept: mask}, n_random=cfg.n_random, seed=cfg.seed)

    def explain(self, llm: LlmConfig, cfg: ExplainConfig | None = None, latents: list[int] | None = None,
                controls: bool = True) -> dict[str, Any]:
        """Explain latents in words through the LLM server of ``llm`` and score each explanation
        on held-out users, beside shuffled explanations and the controls (neurons, untrained SAE,
        untrained-model SAE); writes
        and returns ``explain.json`` (see ``recsae.interpret.explain``)."""
        from recsae.interpret.explain import ExplainConfig, explain_run

        return explain_run(self, llm, cfg or ExplainConfig(), latents=latents, controls=controls)

    def report(self) -> Path:
        """Write (again) the run's HTML report; its path."""
        from recsae.report import write_report

        return write_report(self.out)

    def has(self, stage: str) -> bool:
        """Whether the run folder holds the outputs of ``stage`` (model, sae, interpret, steer, report)."""
        from recsae.sae.model import CFG_FILE as SAE_CFG

        p = self.paths
        trained_here = self.config.model.source in ("train", "checkpoint")
        needs = {"model": p.model / CONFIG_FILE if trained_here else p.summary, "sae": p.sae / SAE_CFG,
                 "interpret": p.interpretation, "steer": p.steer, "report": p.report_page}
        return needs[stage].is_file()

    def _need(self, stage: str) -> None:
        if not self.has(stage):
            raise DataError(f"the run has no finished {stage} stage (run `recsae run --out {self.out}` first)",
                            path=self.out)


def run(out: str | Path = "runs/latest", config: RunConfig | str | Path | None = None, *, dataset: str | None = None,
        data_root: str | Path | None = None, force: bool = False, **sections: Any) -> Run:
    """Run the whole job (``recsae run``) into ``out`` and open it.

    ``config``: a ``RunConfig`` or a config file; ``dataset``/``data_root`` and the sections as
    dicts (``model={"epochs": 5}``, ``sae={"k": 16}``, ``interpret=...``, ``steer=...``, or
    top-level options such as ``seed=1``) override it.
    """
    from recsae.pipeline import run_pipeline

    cfg = config if isinstance(config, RunConfig) else load_config(config) if config is not None else RunConfig()
    changes: dict[str, Any] = {}
    for name, value in sections.items():
        if isinstance(value, dict):
            changes |= {f"{name}.{k}": v for k, v in value.items()}
        else:
            changes[name] = value
    data = cfg.data
    if dataset is not None:
        data = dataclasses.replace(data, dataset=dataset, fmt=None, min_rating=None, k_core=None, table={})
    if data_root is not None:
        data = dataclasses.replace(data, data_root=Path(data_root))
    cfg = dataclasses.replace(cfg, data=data).override(changes)
    run_pipeline(out, cfg, force=force)
    return Run.open(out)
