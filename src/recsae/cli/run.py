"""``recsae run``: the whole job on one dataset, into one run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsae.cli.data import (
    DataRootOpt,
    DatasetOpt,
    FormatOpt,
    ItemColOpt,
    ItemTableOpt,
    KCoreOpt,
    MinRatingOpt,
    MultiColOpt,
    RatingColOpt,
    SepOpt,
    TimeColOpt,
    TitleColOpt,
    UserColOpt,
    dataset_options,
    table_options,
)
from recsae.cli.interpret import summary_lines
from recsae.cli.train import ProtocolOpt, ThreadsOpt


def run(
    dataset: DatasetOpt = "synthetic",
    data_root: DataRootOpt = None,
    fmt: FormatOpt = None,
    min_rating: MinRatingOpt = None,
    k_core: KCoreOpt = None,
    protocol: ProtocolOpt = "auto",
    sep: SepOpt = None,
    user_col: UserColOpt = None,
    item_col: ItemColOpt = None,
    time_col: TimeColOpt = None,
    rating_col: RatingColOpt = None,
    title_col: TitleColOpt = None,
    multi_col: MultiColOpt = None,
    item_table: ItemTableOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder. Rerunning with the same folder resumes "
                                      "from the finished stages.")] = Path("runs/latest"),
    model: Annotated[str, typer.Option("--model", help="Recommender: sasrec, gru4rec, bpr or lightgcn.")] = "sasrec",
    epochs: Annotated[int, typer.Option(help="Most training epochs of the recommender (early stopping).")] = 200,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience in epochs. Default: tuned preset, else 10.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate of the recommender. Default: tuned preset, else 1e-3.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size of the recommender. Default: tuned preset, else the model's.")] = None,
    max_len: Annotated[int | None, typer.Option(help="Longest history a sequential model reads. Default: tuned preset, else 200.")] = None,
    k: Annotated[int, typer.Option("--k", help="SAE: active latents per row.")] = 32,
    expansion: Annotated[int, typer.Option(help="SAE: latents per input dimension.")] = 32,
    sae_epochs: Annotated[int, typer.Option(help="SAE: passes over the training rows.")] = 16,
    sae_min_rows: Annotated[int, typer.Option(help="SAE: train on at least this many rows in all (more passes on a small store, at most 100; 0: exactly --sae-epochs).")] = 1_500_000,
    sae_balance: Annotated[float, typer.Option(help="SAE: load-balancing rate of latent usage (0: plain TopK). It evens out how often latents fire and helps the rule test, which an untrained SAE also passes, at a cost in fidelity and in sparse probing.")] = 0.0,
    sae_balance_until: Annotated[float, typer.Option(help="SAE: share of the training after which balancing stops and its bias decays to zero (1: throughout).")] = 1.0,
    sae_aux_relu: Annotated[bool, typer.Option("--sae-aux-relu/--sae-aux-raw", help="SAE: AuxK reads dead latents' pre-activations through the ReLU, or raw (the default), which revives latents that never pre-activate.")] = False,
    controls: Annotated[bool, typer.Option("--controls/--no-controls", help="Train an SAE on the untrained model and a second-seed SAE beside the SAE, and interpret them as controls.")] = True,
    causal: Annotated[bool, typer.Option("--causal/--no-causal", help="Test every validated unit's causal faithfulness (SAE and controls).")] = True,
    concept: Annotated[list[str] | None, typer.Option("--concept", help="Concept to steer toward, e.g. concept=horror "
                                                      "on the synthetic data or genre=Horror on MovieLens (repeatable; "
                                                      "default: chosen automatically; `recsae data stats --concepts` "
                                                      "lists a dataset's).")] = None,
    stages: Annotated[str, typer.Option(help="Comma-separated stages to run: model,sae,interpret,steer,report. The model and SAE "
                                                     "stages always run (or resume) when a later stage is asked for.")] = "model,sae,interpret,steer,report",
    seed: Annotated[int, typer.Option(help="Random seed (data, initialisations, samples).")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda, ...")] = "auto",
    threads: ThreadsOpt = None,
    force: Annotated[bool, typer.Option(help="Redo every stage even if its outputs exist.")] = False,
) -> None:
    """Train a recommender, train a TopK SAE on its representation, splice it back, interpret
    and steer the latents, and write OUT/summary.json and OUT/report/index.html."""
    from recsae.io import check_writable_folder
    from recsae.pipeline import RunConfig, run_pipeline
    from recsae.utils import set_threads

    cfg = RunConfig(
        data=dataset_options(dataset, data_root, fmt, min_rating, k_core, table_options(
            sep, user_col, item_col, time_col, rating_col, title_col, multi_col, item_table)),
        protocol=protocol,
        model=model,
        epochs=epochs,
        patience=patience,
        lr=lr,
        batch_size=batch_size,
        max_len=max_len,
        sae_k=k,
        sae_expansion=expansion,
        sae_epochs=sae_epochs,
        sae_balance=sae_balance,
        sae_balance_until=sae_balance_until,
        sae_aux_relu=sae_aux_relu,
        controls=controls,
        causal=causal,
        sae_min_rows=sae_min_rows,
        steer_concepts=tuple(concept or ()),
        stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
        seed=seed,
        device=device,
    )
    check_writable_folder(out)
    set_threads(threads)  # once the options are known good: an error stays the only line
    summary = run_pipeline(out, cfg, force=force)
    typer.echo(_headline(summary))
    typer.echo(f"wrote {out / 'summary.json'}" + (f" and {out / 'report' / 'index.html'}" if (out / "report" / "index.html").is_file() else ""))


def _num(x: float | None, spec: str) -> str:
    """``x`` formatted, or "-" where a figure could not be computed (NaN in memory, null once
    read back from summary.json)."""
    return "-" if x is None or x != x else format(x, spec)


def _headline(summary: dict) -> str:
    """A few lines a person reads first."""
    lines = []
    if "dataset" in summary:
        ds = summary["dataset"]
        lines.append(f"dataset {ds.get('name')}: {ds.get('n_users')} users, {ds.get('n_items')} items, "
                     f"{ds.get('n_interactions')} interactions")
    if "model" in summary:
        m = summary["model"]
        pop = summary.get("baseline", {}).get("most_popular", {}).get("test", {})
        lines.append(f"{m['name']}: test NDCG@10 {_num(m['test']['ndcg@10'], '.4f')} "
                     f"(most popular {_num(pop.get('ndcg@10'), '.4f')})"
                     + (" - warning: not above most popular" if m.get("below_most_popular") else ""))
    if "sae" in summary:
        s = summary["sae"]
        lines.append(f"SAE: FVU {_num(s['fvu'], '.4f')}, NDCG@10 retention {_num(s['retention'], '.1%')}, top-10 overlap "
                     f"{_num(s['top10_overlap'], '.3f')} (random SAE {_num(s['random_sae']['top10_overlap'], '.3f')})")
    if "interpret" in summary:
        lines += summary_lines(summary["interpret"])
    for concept, s in summary.get("steer", {}).items():
        ci = s.get("ndcg_ratio_ci")
        lines.append(f"steer {concept}: top-10 share {_num(s['share_before'], '.3f')} -> {_num(s['share_after'], '.3f')} "
                     f"(random {_num(s['random_control_share_after'], '.3f')}), NDCG@10 {_num(s['ndcg_before'], '.4f')} "
                     f"-> {_num(s['ndcg_after'], '.4f')}"
                     + (f" (ratio 95 % interval {_num(ci[0], '.3f')}-{_num(ci[1], '.3f')})" if ci else ""))
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command("run")(run)
