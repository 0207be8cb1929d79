"""``recsae run``: the whole job on one dataset, into one run folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recsae.cli.data import (
    DataRootOpt,
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
from recsae.cli.train import ModelOptionOpt, ThreadsOpt, key_values
from recsae.config import ModelOptions, SaeOptions

_M, _S = ModelOptions(), SaeOptions()


def _default(value: object) -> str:
    return f" Default: {value}."


def run(
    config: Annotated[Optional[Path], typer.Option("--config", help="Run config file (TOML, or a run folder's config.json) with "  # noqa: UP045
                                                   "the tables of `recsae.config.RunConfig` ([model], [sae], [interpret], [steer], ...); "
                                                   "options given on the command line override it.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset name (synthetic, ml-100k, ml-1m, ml-latest-small; see "  # noqa: UP045
                                                   "`recsae data list`) or a path. Default: synthetic, or the dataset a --checkpoint records.")] = None,
    data_root: DataRootOpt = None,
    fmt: FormatOpt = None,
    min_rating: MinRatingOpt = None,
    k_core: KCoreOpt = None,
    protocol: Annotated[Optional[str], typer.Option("--protocol", help="Split: auto (the source's own split, else leave-one-out; random for bpr and "  # noqa: UP045
                                                    "lightgcn on data without timestamps), leave-one-out, random, time, global-time (the RecSAE reference's "
                                                    "80/10/10 split by day in UTC+8) or given. Default: auto.")] = None,
    eval_protocol: Annotated[Optional[str], typer.Option("--eval-protocol", help="How the model is selected and tested: per-user, or "  # noqa: UP045
                                                         "rechorus (each held-out row its own next-item prediction, as the RecSAE "
                                                         "reference evaluates; needs a time-ordered split), or auto. Default: auto, a checkpoint's own, else per-user.")] = None,
    sep: SepOpt = None,
    user_col: UserColOpt = None,
    item_col: ItemColOpt = None,
    time_col: TimeColOpt = None,
    rating_col: RatingColOpt = None,
    title_col: TitleColOpt = None,
    multi_col: MultiColOpt = None,
    item_table: ItemTableOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder. Rerunning with the same folder redoes only the stages whose "
                                      "options or inputs changed.")] = Path("runs/latest"),
    model: Annotated[Optional[str], typer.Option("--model", help="Recommender to train: sasrec, gru4rec, bpr or lightgcn." + _default(_M.name))] = None,  # noqa: UP045
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Use this `recsae train` checkpoint folder instead of training "  # noqa: UP045
                                                       "(on the dataset and split it records, unless --dataset is given).")] = None,
    model_from: Annotated[Optional[str], typer.Option("--model-from", help="Use your own model: module:function or path/to/file.py:function, "  # noqa: UP045
                                                      "called with the run's recsae SplitData, returning a recsae Recommender "
                                                      "(e.g. recsae.models.DotProductModel around your PyTorch module).")] = None,
    user_vectors: Annotated[Optional[Path], typer.Option("--user-vectors", help="Embeddings mode: a .npy of one vector per user, exported "  # noqa: UP045
                                                         "from any model that scores user . item (with --item-embeddings).")] = None,
    item_embeddings: Annotated[Optional[Path], typer.Option("--item-embeddings", help="Embeddings mode: a .npy of one vector per item.")] = None,  # noqa: UP045
    user_ids: Annotated[Optional[Path], typer.Option("--user-ids", help="Embeddings mode: a text file with the original user id of each "  # noqa: UP045
                                                     "row of --user-vectors (default: the dataset's user order).")] = None,
    item_ids: Annotated[Optional[Path], typer.Option("--item-ids", help="Embeddings mode: a text file with the original item id of each "  # noqa: UP045
                                                     "row of --item-embeddings.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Most training epochs of the recommender (early stopping)." + _default(_M.epochs))] = None,  # noqa: UP045
    patience: Annotated[Optional[int], typer.Option(help="Early-stopping patience in epochs. Default: tuned preset, else from the data (20 under 2,000 users, else 10).")] = None,  # noqa: UP045
    lr: Annotated[Optional[float], typer.Option(help="Learning rate of the recommender. Default: tuned preset, else from the data size (recsae.defaults).")] = None,  # noqa: UP045
    batch_size: Annotated[Optional[int], typer.Option(help="Training batch size of the recommender. Default: tuned preset, else from the data size (recsae.defaults).")] = None,  # noqa: UP045
    max_len: Annotated[Optional[int], typer.Option(help="Longest history a sequential model reads. Default: tuned preset, else 200.")] = None,  # noqa: UP045
    model_option: ModelOptionOpt = None,
    sae: Annotated[Optional[Path], typer.Option("--sae", help="Use this trained SAE folder (cfg.json + sae.safetensors, e.g. from "  # noqa: UP045
                                                "`recsae sae train`) instead of training one.")] = None,
    k: Annotated[Optional[int], typer.Option("--k", help="SAE: active latents per row. Default: 32, fewer for a narrow SAE.")] = None,  # noqa: UP045
    expansion: Annotated[Optional[int], typer.Option(help="SAE: latents per input dimension. Default: the widest power of two up to 32 whose latents fire on enough rows of enough users to be validated (32 on ML-1M).")] = None,  # noqa: UP045
    sae_epochs: Annotated[Optional[int], typer.Option(help="SAE: passes over the training rows." + _default(_S.epochs))] = None,  # noqa: UP045
    sae_min_rows: Annotated[Optional[int], typer.Option(help="SAE: train on at least this many rows in all (more passes on a small store, "  # noqa: UP045
                                                        "at most 100; 0: exactly --sae-epochs)." + _default(_S.min_rows))] = None,
    sae_balance: Annotated[Optional[float], typer.Option(help="SAE: load-balancing rate of latent usage (0: plain TopK). It evens out how often "  # noqa: UP045
                                                         "latents fire and helps the rule test, which an untrained SAE also passes, at a cost "
                                                         "in fidelity and in sparse probing." + _default(_S.balance))] = None,
    sae_balance_until: Annotated[Optional[float], typer.Option(help="SAE: share of the training after which balancing stops and its bias "  # noqa: UP045
                                                               "decays to zero (1: throughout)." + _default(_S.balance_until))] = None,
    sae_aux_relu: Annotated[Optional[bool], typer.Option("--sae-aux-relu/--sae-aux-raw", help="SAE: AuxK reads dead latents' pre-activations "  # noqa: UP045
                                                         "through the ReLU, or raw, which revives latents that never pre-activate."
                                                         + _default("raw" if not _S.aux_relu else "relu"))] = None,
    sae_kl_weight: Annotated[Optional[float], typer.Option(help="SAE: weight of the prediction-aware loss, the KL divergence between the "  # noqa: UP045
                                                           "softmax over item scores of h and of its reconstruction (0: off; the "
                                                           "controls train with it too)." + _default(_S.kl_weight))] = None,
    controls: Annotated[Optional[bool], typer.Option("--controls/--no-controls", help="Train an SAE on the untrained model and a second-seed "  # noqa: UP045
                                                     "SAE beside the SAE, and interpret them as controls." + _default("on" if _S.controls else "off"))] = None,
    causal: Annotated[Optional[bool], typer.Option("--causal/--no-causal", help="Test every validated unit's causal faithfulness (SAE and "  # noqa: UP045
                                                   "controls). Default: on.")] = None,
    concept: Annotated[Optional[list[str]], typer.Option("--concept", help="Concept to steer toward, e.g. concept=horror on the "  # noqa: UP045
                                                         "synthetic data or genre=Horror on MovieLens (repeatable; default: chosen "
                                                         "automatically; `recsae data stats --concepts` lists a dataset's).")] = None,
    stages: Annotated[Optional[str], typer.Option(help="Comma-separated stages to run: model,sae,interpret,steer,report (the default: all). "  # noqa: UP045
                                                  "The model and SAE stages always run (or resume) when a later stage is asked for.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (data, initialisations, samples). Default: 0.")] = None,  # noqa: UP045
    device: Annotated[Optional[str], typer.Option(help="auto (CUDA when available), cpu, cuda, ... Default: auto.")] = None,  # noqa: UP045
    threads: ThreadsOpt = None,
    force: Annotated[bool, typer.Option(help="Redo every stage even if its outputs exist.")] = False,
) -> None:
    """Train a recommender (or take yours), train a TopK SAE on its representation (or take
    yours), splice it back, interpret and steer the latents, and write OUT/summary.json and
    OUT/report/index.html."""
    from recsae.config import RunConfig, load_config
    from recsae.distributed import init_world, shutdown
    from recsae.io import check_writable_folder
    from recsae.pipeline import check_options, run_pipeline, with_checkpoint_data
    from recsae.rundir import RunDir
    from recsae.utils import set_threads

    base = load_config(config) if config is not None else RunConfig()
    table = table_options(sep, user_col, item_col, time_col, rating_col, title_col, multi_col, item_table)
    data = base.data
    if dataset is not None:  # another dataset: the file's filters do not carry over
        data = dataset_options(dataset, data.data_root)
    filters: dict[str, Any] = {"data_root": data_root, "fmt": fmt, "min_rating": min_rating, "k_core": k_core}
    data = dataclasses.replace(data, **{k: v for k, v in filters.items() if v is not None})
    if table:
        data = dataclasses.replace(data, table=table)
    path = {"checkpoint": checkpoint, "user_vectors": user_vectors, "item_embeddings": item_embeddings,
            "user_ids": user_ids, "item_ids": item_ids, "sae": sae}
    given = {name: str(p) for name, p in path.items() if p is not None}
    cfg = dataclasses.replace(base, data=data).override({
        "protocol": protocol, "eval_protocol": eval_protocol, "seed": seed, "device": device,
        "stages": None if stages is None else [s.strip() for s in stages.split(",") if s.strip()],
        "model.name": model, "model.epochs": epochs, "model.patience": patience, "model.lr": lr,
        "model.batch_size": batch_size, "model.max_len": max_len, "model.model_from": model_from,
        "model.options": base.model.options | key_values(model_option, "--model-option") if model_option else None,
        **{f"model.{name}": v for name, v in given.items() if name != "sae"},
        "sae.path": given.get("sae"), "sae.k": k, "sae.expansion": expansion, "sae.epochs": sae_epochs,
        "sae.min_rows": sae_min_rows, "sae.balance": sae_balance, "sae.balance_until": sae_balance_until,
        "sae.aux_relu": sae_aux_relu, "sae.kl_weight": sae_kl_weight, "sae.controls": controls, "interpret.causal": causal,
        "steer.concepts": concept or None,
    })
    check_options(with_checkpoint_data(cfg))
    check_writable_folder(out)
    set_threads(threads)  # once the options are known good: an error stays the only line
    world = init_world(cfg.device)  # under torchrun: join the other ranks (else one process)
    try:
        summary = run_pipeline(out, cfg, force=force, world=world)
    finally:
        shutdown(world)
    if not world.is_main:
        return
    typer.echo(_headline(summary))
    paths = RunDir(out)
    typer.echo(f"wrote {paths.summary}" + (f" and {paths.report_page}" if paths.report_page.is_file() else ""))


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
                     + (" - warning: not above most popular" if m.get("below_most_popular") else "")
                     + (f" [{ev['eval_protocol']} protocol: {ev['n_rows']} test rows]" if (ev := m.get("evaluation")) else ""))
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
