"""Dataset statistics: sizes, density, sequence-length percentiles, counts per filter step."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from recsae.data.dataset import InteractionDataset

PERCENTILES = {"min": 0, "p25": 25, "p50": 50, "p75": 75, "p90": 90, "max": 100}


@dataclass(frozen=True)
class DatasetStats:
    """Summary of a (filtered) dataset."""

    name: str
    """Dataset name."""
    n_users: int
    """Users with at least one interaction."""
    n_items: int
    """Items with at least one interaction."""
    n_interactions: int
    """Interactions after filtering."""
    density: float
    """interactions / (users x items)."""
    seq_len: dict[str, float]
    """Per-user sequence length: min, p25, p50, p75, p90, max."""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Interactions/users/items at every step: 'raw', then one entry per filter applied."""
    filters: list[str] = field(default_factory=list)
    """Filters applied, in order."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def dataset_stats(ds: InteractionDataset) -> DatasetStats:
    """Statistics of ``ds`` (counts of earlier steps come from ``ds.info``)."""
    lengths = np.bincount(ds.user, minlength=ds.n_users + 1)[1:]
    seq_len = {k: float(np.percentile(lengths, q)) for k, q in PERCENTILES.items()} if len(lengths) else {}
    cells = ds.n_users * ds.n_items
    return DatasetStats(
        name=ds.name,
        n_users=ds.n_users,
        n_items=ds.n_items,
        n_interactions=ds.n_interactions,
        density=ds.n_interactions / cells if cells else 0.0,
        seq_len=seq_len,
        counts={k: dict(v) for k, v in ds.info.get("counts", {}).items()},  # type: ignore[attr-defined]
        filters=list(ds.info.get("filters", [])),  # type: ignore[call-overload]
    )


def format_stats(stats: DatasetStats) -> str:
    """Human-readable table of ``stats``."""
    lines = [
        f"dataset       {stats.name}",
        f"users         {stats.n_users:,}",
        f"items         {stats.n_items:,}",
        f"interactions  {stats.n_interactions:,}",
        f"density       {stats.density:.4%}",
        "seq length    " + "  ".join(f"{k} {v:g}" for k, v in stats.seq_len.items()),
    ]
    if stats.counts:
        lines.append("counts by step (interactions / users / items):")
        for step, c in stats.counts.items():
            lines.append(f"  {step:<12} {c['interactions']:>10,} {c['users']:>8,} {c['items']:>8,}")
    return "\n".join(lines)
