"""Read whatever a run folder holds for the report; every part is optional."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recsae.errors import DataError
from recsae.report.examples import EXAMPLES_PATH, normalize_latents


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


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        line = getattr(err, "lineno", None)
        raise DataError(f"not valid JSON ({err})", path=path, line=line) from err
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object, found {type(data).__name__}", path=path)
    return data


def _read_parquet(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"not a readable Parquet file ({err})", path=path) from err
    if "latent" not in df.columns:
        raise DataError("expected a 'latent' column (one row per latent)", path=path, field="latent")
    return normalize_latents(df.sort_values("latent", kind="stable").reset_index(drop=True))


def load_run(run_dir: str | Path) -> RunData:
    """Read the run folder ``run_dir``; raises DataError if it is not a folder or a file is corrupt."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError("run folder not found (expected the --out folder of `recsae run`)", path=path)
    return RunData(
        path=path,
        config=_read_json(path / "config.json"),
        summary=_read_json(path / "summary.json"),
        splice=_read_json(path / "splice.json"),
        interpret=_read_json(path / "interpret.json"),
        steer=_read_json(path / "steer.json"),
        latents=_read_parquet(path / "interpretation.parquet"),
        examples=_read_json(path / EXAMPLES_PATH),
    )


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
