"""CLI commands of the interpret stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _fmt(x: object, digits: int = 2) -> str:
    return "-" if x is None or x != x else f"{float(x):.{digits}f}"  # type: ignore[arg-type]


_UNIT_NAMES = {"sae": "SAE", "neurons": "neurons", "random_sae": "untrained SAE",
               "random_model_sae": "untrained-model SAE"}


def _share(x: object) -> str:
    return "?" if x is None else f"{float(x):.1%}"  # type: ignore[arg-type]


def summary_lines(s: dict, coherence: bool = False) -> list[str]:
    """The interpretation's headline figures (the ``interpret`` part of ``summary.json``), as
    printed by both ``recsae interpret`` and ``recsae run``; keys a summary lacks are skipped."""
    # the two baselines always (a placeholder when missing), the untrained-model SAE when run
    controls = ["neurons", "random_sae"] + (["random_model_sae"] if isinstance(s.get("random_model_sae"), dict) else [])
    lines = [
        f"interpretable latents: {s.get('n_interpretable', '?')}/{s.get('n_alive', '?')} alive "
        f"({_share(s.get('share_interpretable'))}; "
        + ", ".join(f"{_UNIT_NAMES[k]} {_share((s.get(k) or {}).get('share_interpretable'))}" for k in controls) + ")"
    ]
    faithful = s.get("faithful") or {}
    if faithful:
        lines.append(
            f"causally faithful latents: {(faithful.get('sae') or {}).get('n', '?')} "
            f"({_share((faithful.get('sae') or {}).get('share'))}; "
            + ", ".join(f"{_UNIT_NAMES[k]} {_share(v.get('share'))}" for k, v in faithful.items() if k != "sae") + ")"
        )
    anonymous = s.get("anonymous_concepts") or {}
    if anonymous.get("n"):
        lines.append(f"anonymous concepts (named by their top items: {', '.join(anonymous.get('attributes', []))}): "
                     f"{anonymous['n']}, the rule of {anonymous.get('n_interpretable_latents', '?')} interpretable latents")
    shuffled = s.get("shuffled_control") or {}
    if shuffled.get("median_confidence") is not None:
        lines.append(f"shuffled explanations: median confidence {_fmt(shuffled['median_confidence'])} (chance 0.50)")
    stability = s.get("seed_stability") or {}
    if stability.get("trained"):
        lines.append(f"latents found again with another seed: {_share(stability['trained'].get('share'))} "
                     f"(two untrained SAEs {_share((stability.get('floor') or {}).get('share'))})")
    if coherence and s.get("coherence"):
        lines.append("coherence: " + ", ".join(f"{_UNIT_NAMES.get(k, k)} {_fmt(v)}" for k, v in s["coherence"].items()))
    rebuilt = {k: v for k, v in (s.get("explained_by_interpretable") or {}).items() if v is not None}
    if rebuilt:
        lines.append("variance rebuilt from the interpretable units alone: "
                     + ", ".join(f"{_UNIT_NAMES.get(k, k)} {_share(v)}" for k, v in rebuilt.items()))
    if s.get("planted_recovered") is not None:
        by_control = [f"{_UNIT_NAMES[k]} {_share(s[k]['planted_recovered'])}" for k in controls
                      if (s.get(k) or {}).get("planted_recovered") is not None]
        lines.append(f"planted concepts recovered: {_share(s['planted_recovered'])}"
                     + (f" ({', '.join(by_control)})" if by_control else ""))
    return lines


def show_interpretation(run: Path, top: int = 20, all_latents: bool = False) -> str:
    """Text listing of the most confident latents of a run folder's interpretation."""
    from recsae.errors import DataError
    from recsae.interpret.api import read_interpretation
    from recsae.io import read_json
    from recsae.rundir import RunDir

    if not run.is_dir():
        raise DataError("run folder not found (expected the --out folder of `recsae run`)", path=run)
    table = read_interpretation(run)
    lines = []
    summary_path = RunDir(run).interpret_summary
    if summary_path.is_file():
        lines += summary_lines(read_json(summary_path), coherence=True)
    shown = table if all_latents else table[table["interpretable"]]
    shown = shown.sort_values(["confidence", "val_f1"], ascending=False).head(top)
    lines.append(f"top {len(shown)} latents by validated confidence:")
    for row in shown.itertuples(index=False):
        titles = list(row.top_item_titles) if len(row.top_item_titles) else list(row.example_titles)
        lines.append(
            f"  latent {row.latent:>5}  conf {_fmt(row.confidence)} [{_fmt(row.confidence_low)}, "
            f"{_fmt(row.confidence_high)}]  F1 {_fmt(row.val_f1)}  n={row.val_firing}  {row.rule}"
        )
        pushes = str(getattr(row, "pushes", "") or "")
        if pushes:
            lines.append(f"               pushes {pushes} (selectivity {_fmt(row.pushes_selectivity)})")
        if titles:
            lines.append("               e.g. " + "; ".join(dict.fromkeys(titles))[:160])
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command("interpret")
    def interpret_cmd(
        run: Annotated[Path, typer.Option("--run", help="Run folder (the --out of `recsae run`).")],
        top: Annotated[int, typer.Option("--top", min=1, help="How many latents to print.")] = 20,
        all_latents: Annotated[
            bool, typer.Option("--all", help="Rank all latents, not only the interpretable ones.")
        ] = False,
    ) -> None:
        """Print the most confident latents of a run with their rules and example item titles.

        Reads OUT/interpretation.parquet and OUT/interpret.json; `recsae run` computes them.
        """
        typer.echo(show_interpretation(run, top=top, all_latents=all_latents))
