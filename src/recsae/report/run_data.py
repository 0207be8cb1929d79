"""Read whatever a run folder holds for the report; every part is optional."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recsae.errors import DataError
from recsae.interpret.api import read_interpretation
from recsae.io import read_json
from recsae.report.examples import normalize_latents
from recsae.rundir import RunDir


@dataclass
class RunData:
    """The parts of a run folder the report shows; ``None`` where the file is missing."""

    path: Path
    """The run folder."""
    config: dict[str, Any] | None
    """``config.json``: run config, seed, versions."""
    summary: dict[str, Any] | None
    """``summary.json``: the headline figures of every stage."""
    splice: dict[str, Any] | None
    """``splice.json``: the splice table per condition."""
    interpret: dict[str, Any] | None
    """``interpret.json``: interpretation summary and baselines."""
    steer: dict[str, Any] | None
    """``steer.json``: ablation and steering results."""
    latents: pd.DataFrame | None
    """``interpretation.parquet``: one row per latent."""
    examples: dict[str, Any] | None
    """``report_data/latent_examples.json`` (schema in :mod:`recsae.report.examples`)."""
    explain: dict[str, Any] | None = None
    """``explain.json``: LLM explanations and their scores, when made for the run's current SAE."""
    explain_stale: bool = False
    """``explain.json`` exists but was made for another SAE (its fingerprint differs)."""


def _read_json(path: Path) -> dict[str, Any] | None:
    return read_json(path) if path.is_file() else None


def _read_latents(run_dir: Path) -> pd.DataFrame | None:
    if not RunDir(run_dir).interpretation.is_file():
        return None
    df = read_interpretation(run_dir)
    return normalize_latents(df.sort_values("latent", kind="stable").reset_index(drop=True))


def load_run(run_dir: str | Path) -> RunData:
    """Read the run folder ``run_dir``; raises DataError if it is not a folder or a file is corrupt."""
    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise DataError("run folder not found (expected the --out folder of `recsae run`)", path=run.root)
    summary = _read_json(run.summary)
    explain = _read_json(run.explain)
    stale = explain is not None and explain.get("sae_fingerprint") != get(summary, "fingerprints", "sae")
    return RunData(
        path=run.root,
        config=_read_json(run.config),
        summary=summary,
        splice=_read_json(run.splice),
        interpret=_read_json(run.interpret_summary),
        steer=_read_json(run.steer),
        latents=_read_latents(run.root),
        examples=_read_json(run.latent_examples),
        explain=None if stale else explain,
        explain_stale=stale,
    )


def explained_latents(run: RunData) -> dict[int, dict[str, Any]]:
    """The SAE latents of ``explain.json`` (none while it is missing or stale), by latent id;
    records without an integer ``unit`` are skipped."""
    records = get(run.explain, "latents")
    return {r["unit"]: r for r in records if isinstance(r, dict) and r.get("family") == "sae"
            and isinstance(r.get("unit"), int)} if isinstance(records, list) else {}


def get(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...`` or None where any level is missing or not a dict."""
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def number(x: Any) -> float | None:
    """A finite float, or None for missing / NaN / non-numeric values."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
