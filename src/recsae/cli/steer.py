"""CLI commands of the steer stage: ``recsae steer``.

Edits SAE latents of a run folder's model (opened with ``recsae.runs.Run``: ``OUT/sae``, ``OUT/interpretation.parquet``)
and prints the top-10 lists of a few users before and after, then the effect table beside a
random-latent control. The work is done by ``recsae.steer``; this module only loads and prints.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import numpy as np
import typer

if TYPE_CHECKING:
    from recsae.runs import Run
    from recsae.steer import Edit
    from recsae.steer.effects import SteerContext
    from recsae.steer.study import SteerConfig


def _target(
    inputs: Run, ctx: SteerContext, concept: str | None, latents: list[int], cfg: SteerConfig
) -> tuple[tuple[int, ...], list[str]]:
    """The latents to edit and the concepts to measure."""
    from recsae.errors import ConfigError
    from recsae.steer.study import steering_targets
    from recsae.steer.targets import check_latents, most_confident

    table = inputs.interpretation if inputs.has("interpret") else None
    if latents:
        ids = check_latents(latents, inputs.sae.cfg.m)
    elif concept is not None:
        ids = steering_targets(ctx, table, inputs.items, concept, cfg)
    else:
        raise ConfigError("say what to edit: --concept NAME or --latent ID (repeatable)")
    measured = [concept] if concept is not None else []
    if not measured and table is not None:
        # the concepts the edited latents' own rules name
        ranked = most_confident(table, len(table))
        own = ranked[ranked["latent"].isin(ids)]["concept"].tolist()
        measured = [c for c in dict.fromkeys(own) if inputs.items.resolvable(c)]
    for c in measured:
        inputs.items.mask(c)  # ConfigError for a concept naming no item set
    return ids, measured


def _check_strength(alpha: float | None, scale: float | None, clamp: float | None, method: str, latents_from: str) -> None:
    from recsae.errors import ConfigError
    from recsae.steer.study import METHODS
    from recsae.steer.targets import LATENT_SOURCES

    if latents_from not in LATENT_SOURCES:
        raise ConfigError(f"--latents-from must be one of {', '.join(LATENT_SOURCES)}, got {latents_from!r}")

    given = [name for name, v in (("--alpha", alpha), ("--scale", scale), ("--clamp", clamp)) if v is not None]
    if len(given) != 1:
        raise ConfigError(f"give exactly one of --alpha (steer), --scale (0 ablates) or --clamp; got {given or 'none'}")
    for name, v in (("--alpha", alpha), ("--scale", scale), ("--clamp", clamp)):
        if v is not None and not math.isfinite(v):  # checked here too: before the run is loaded
            raise ConfigError(f"{name} must be a finite number, got {v}")
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")


def _edit(ids: tuple[int, ...], alpha: float | None, scale: float | None, clamp: float | None, method: str) -> Edit:
    from recsae.steer import Clamp, Scale
    from recsae.steer.study import steer_edit

    if alpha is not None:
        return steer_edit(method, ids, alpha)
    if scale is not None:
        return Scale(ids, scale)
    return Clamp(ids, float(clamp))  # type: ignore[arg-type]


def _lists_text(
    titles: list[str], users: np.ndarray, before: np.ndarray, after: np.ndarray, masks: list[np.ndarray], width: int = 60
) -> list[str]:
    lines = []
    for u, b, a in zip(users, before, after, strict=True):
        lines.append(f"user {int(u)}   (* = carries the measured concept)")
        lines.append(f"  {'before':<{width}}  after")
        for rank, (i, j) in enumerate(zip(b, a, strict=True), 1):
            def cell(item: int) -> str:
                star = "*" if any(m[item] for m in masks) else " "
                return f"{star}{(titles[item] or str(item))[: width - 1]}"

            lines.append(f"  {rank:>2}. {cell(int(i)):<{width - 4}}  {cell(int(j))}")
    return lines


def steer_command(
    run: Annotated[Path, typer.Option("--run", help="Run folder (the --out of `recsae run`).")],
    concept: Annotated[Optional[str], typer.Option("--concept", help="Concept to steer toward / measure, e.g. concept=horror on the synthetic data or genre=Horror on MovieLens (`recsae data stats --concepts` lists a dataset's).")] = None,  # noqa: UP045
    latent: Annotated[Optional[list[int]], typer.Option("--latent", help="Latent id to edit (repeatable); default: the concept's latents.")] = None,  # noqa: UP045
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="Steering strength α (h' = h + α‖h‖ Σ_j W_dec_j over the chosen latents, or the mix weight with --method mix). Give exactly one of --alpha, --scale and --clamp.")] = None,  # noqa: UP045
    scale: Annotated[Optional[float], typer.Option("--scale", help="Multiply the latents by this (0 ablates). Give exactly one of --alpha, --scale and --clamp.")] = None,  # noqa: UP045
    clamp: Annotated[Optional[float], typer.Option("--clamp", help="Set the latents to this activation. Give exactly one of --alpha, --scale and --clamp.")] = None,  # noqa: UP045
    method: Annotated[str, typer.Option("--method", help="Steering with --alpha: add (decoder direction) or mix (mass-preserving).")] = "add",
    n_latents: Annotated[int, typer.Option("--n-latents", min=1, help="Latents edited per concept; only applies with --concept (not with --latent).")] = 16,
    latents_from: Annotated[str, typer.Option("--latents-from", help="How --concept picks latents: decoder (those whose decoder directions most selectively raise its items) or rules (the most confident latents whose interpretation rule names it).")] = "decoder",
    show_users: Annotated[int, typer.Option("--users", min=0, help="Users whose top-10 lists are printed.")] = 3,
    max_users: Annotated[int, typer.Option("--max-users", min=1, help="Users measured (seeded sample).")] = 2000,
    n_random: Annotated[int, typer.Option("--n-random", min=1, help="Random-latent control draws.")] = 3,
    curve: Annotated[bool, typer.Option("--curve", help="Also print the dose-response over strengths.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results to this JSON file.")] = None,  # noqa: UP045
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Where the run's dataset lives now (default: where it was).")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option(help="Seed of the user sample and the random controls.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, ...")] = "auto",
) -> None:
    """Edit SAE latents of a run and show what happens to the recommendations.

    Steer toward a concept (here of the synthetic data; genre=Horror on MovieLens) through the latents whose decoder directions raise its items:
    recsae steer --run OUT --concept concept=horror --alpha 0.05

    Ablate one latent: recsae steer --run OUT --latent 123 --scale 0

    Prints the top-10 lists of a few users before and after, then the effect
    table (the concept's top-10 share, mean rank of its items, HR/NDCG@10,
    coverage, Gini, long-tail share) beside the same edit on random latents.
    """
    from recsae.io import write_json
    from recsae.steer import compare, dose_response
    from recsae.steer.effects import recommendations
    from recsae.steer.study import SteerConfig, make_context
    from recsae.utils import default_device, environment_info

    _check_strength(alpha, scale, clamp, method, latents_from)
    default_device(device)  # an unknown device fails before the run is opened
    if json_out is not None:  # refused now, not after the study
        _check_json_out(json_out)
    cfg = SteerConfig(
        max_users=max_users, n_random=n_random, seed=seed, latent_source=latents_from, latents_per_concept=n_latents
    )
    from recsae.runs import Run

    inputs = Run.open(run, data_root, device)
    if concept is not None:  # a typo fails before the study's work
        inputs.items.mask(concept)
    ctx = make_context(inputs.model, inputs.sae, inputs.split, cfg, eval_protocol=inputs.config.eval_protocol)
    ids, measured = _target(inputs, ctx, concept, list(latent or []), cfg)
    edit = _edit(ids, alpha, scale, clamp, method)
    masks = {c: inputs.items.mask(c) for c in measured}
    cmp = compare(ctx, edit, masks, n_random=n_random, seed=seed)

    titles = inputs.split.dataset.item_meta.title
    before_top = recommendations(ctx, None)
    after_top = recommendations(ctx, edit)
    changed = np.flatnonzero((before_top != after_top).any(axis=1))
    shown = (changed if len(changed) else np.arange(len(ctx.users)))[:show_users]
    unit = "users" if ctx.eval_protocol == "per-user" else "held-out rows"
    typer.echo(f"edit: {edit}   ({len(changed)} of {len(ctx.users)} {unit}' top-{ctx.k} lists change)")
    typer.echo("\n".join(_lists_text(titles, ctx.users[shown], before_top[shown], after_top[shown], list(masks.values()))))
    typer.echo(f"\neffects on {len(ctx.users)} {unit} (random control: mean of {n_random} draws of {len(ids)} latent(s))")
    typer.echo(cmp.text(ctx.k))

    result: dict[str, Any] = {
        "edit": {"type": type(edit).__name__, **dataclasses.asdict(edit)},  # type: ignore[call-overload]
        "concepts": measured,
        "comparison": cmp.to_dict(),
        "config": {"seed": seed, "max_users": max_users, "n_random": n_random},
        "environment": environment_info(),
    }
    if curve and measured and hasattr(edit, "latents"):
        strengths = cfg.mix_alphas if (alpha is not None and method == "mix") else (
            cfg.add_alphas if alpha is not None else (1.0, 0.75, 0.5, 0.25, 0.0)
        )
        rows = dose_response(ctx, lambda s: _with_strength(edit, s), strengths, measured[0], masks[measured[0]], n_random, seed)
        result["dose_response"] = rows
        typer.echo(f"\ndose-response on {measured[0]}")
        typer.echo(f"  {'strength':>8} {'share':>8} {'random':>8} {'ndcg':>8} {'random':>8} {'rank shift':>10}")
        for r in rows:
            typer.echo(
                f"  {r['strength']:>8.3f} {r['share']:>8.4f} {r['share_random']:>8.4f} {r['ndcg']:>8.4f} "
                f"{r['ndcg_random']:>8.4f} {r['rank_shift']:>10.2f}"
            )
    if json_out is not None:
        write_json(json_out, json.loads(json.dumps(result, default=str)))
        typer.echo(f"\nwrote {json_out}")


def _check_json_out(path: Path) -> None:
    """DataError naming ``path`` unless a JSON file can be written there."""
    from recsae.errors import DataError
    from recsae.io import check_writable_folder

    if path.is_dir():
        raise DataError("is a folder; --json takes the file to write, e.g. steer.json", path=path)
    check_writable_folder(path.parent)


def _with_strength(edit: Edit, strength: float) -> Edit:
    """The same edit at another strength (alpha, scale factor or clamp value)."""
    for name in ("alpha", "factor", "value"):
        if hasattr(edit, name):
            return dataclasses.replace(edit, **{name: strength})  # type: ignore[type-var]
    return edit


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command("steer")(steer_command)
