"""CLI commands of the train stage: ``recsae train`` and ``recsae evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

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
from recsae.errors import ConfigError

ProtocolOpt = Annotated[
    str,
    typer.Option("--protocol", help="Split: auto (the source's own split, else leave-one-out; random for bpr and "
                 "lightgcn on data without timestamps), leave-one-out (a random held-out item where the data "
                 "has no timestamps), random (one random validation and test item per user), time (global timestamp "
                 "quantiles), global-time (the RecSAE reference's: 80/10/10 by calendar day in UTC+8, held-out rows "
                 "of users or items without training rows dropped), or given (the source's own split; an error "
                 "when it ships none or lacks a part)."),
]

EvalProtocolOpt = Annotated[
    str,
    typer.Option("--eval-protocol", help="How validation (early stopping) and test rank: per-user (a user's held-out "
                 "items ranked together), or rechorus (each held-out row its own next-item prediction with all "
                 "earlier interactions as history and all of the user's items masked, as the RecSAE reference "
                 "evaluates; needs a time-ordered split, e.g. --protocol global-time)."),
]


ThreadsOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--threads", help="CPU threads of torch. Default: OMP_NUM_THREADS where set, else every core, "
                 "whatever the load, since results depend on it (logged as 'threads: N (C cores, load L)' "
                 "and recorded with the versions in config.json)."),
]


ModelOptionOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--model-option", help="An option of the trained model's own config, KEY=VALUE (repeatable; "
                 "the value read as JSON where it parses, else as text), e.g. --model-option label_smoothing=0.2 "
                 "--model-option n_heads=2; over the tuned preset's."),
]


def key_values(pairs: list[str], option: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``: each value read as JSON where it parses (numbers,
    true/false, lists), else kept as text; a pair without ``=`` or a name is an error naming ``option``."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{option} {pair!r}: expected KEY=VALUE, e.g. {option} label_smoothing=0.2")
        try:
            out[key.strip()] = json.loads(text)
        except ValueError:
            out[key.strip()] = text
    return out


def _load_split(opts: Any, protocol: str, seed: int, model: str) -> Any:
    from recsae.data.split import make_split
    from recsae.models.registry import model_class

    return make_split(opts.load(seed), protocol, seed=seed, sequential=model_class(model).sequential)  # type: ignore[arg-type]


def train(
    out: Annotated[Path, typer.Option("--out", help="Checkpoint folder (config.json + model.safetensors); "
                                      "rerunning with the same folder resumes.")],
    model: Annotated[str, typer.Option("--model", help="sasrec, gru4rec, bpr or lightgcn.")] = "sasrec",
    dataset: DatasetOpt = "synthetic",
    data_root: DataRootOpt = None,
    fmt: FormatOpt = None,
    min_rating: MinRatingOpt = None,
    k_core: KCoreOpt = None,
    protocol: ProtocolOpt = "auto",
    eval_protocol: EvalProtocolOpt = "per-user",
    sep: SepOpt = None,
    user_col: UserColOpt = None,
    item_col: ItemColOpt = None,
    time_col: TimeColOpt = None,
    rating_col: RatingColOpt = None,
    title_col: TitleColOpt = None,
    multi_col: MultiColOpt = None,
    item_table: ItemTableOpt = None,
    epochs: Annotated[int, typer.Option(help="Most epochs.")] = 200,
    patience: Annotated[Optional[int], typer.Option(help="Early-stopping patience (epochs without a better valid NDCG@10). Default: the preset's, else from the data (20 under 2,000 users, else 10).")] = None,  # noqa: UP045
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate. Default: the preset's, else from the data size.")] = None,  # noqa: UP045
    batch_size: Annotated[Optional[int], typer.Option(help="Rows per step. Default: the preset's, else from the data size.")] = None,  # noqa: UP045
    dim: Annotated[Optional[int], typer.Option(help="Embedding width. Default: 64.")] = None,  # noqa: UP045
    max_len: Annotated[Optional[int], typer.Option(help="Longest history (sequential models). Default: the preset's, else 200.")] = None,  # noqa: UP045
    layers: Annotated[Optional[int], typer.Option(help="Blocks (SASRec), GRU layers, or propagation layers (LightGCN). Default: the preset's, else 2, 1 and 3.")] = None,  # noqa: UP045
    dropout: Annotated[Optional[float], typer.Option(help="Dropout (sequential models). Default: the preset's, else 0.2.")] = None,  # noqa: UP045
    loss: Annotated[Optional[str], typer.Option(help="Sequential loss: ce (full softmax) or bce (sampled negatives). Default: ce.")] = None,  # noqa: UP045
    label_smoothing: Annotated[Optional[float], typer.Option(help="Label smoothing of the ce loss, in [0, 1). Default: the preset's, else 0.")] = None,  # noqa: UP045
    max_seconds: Annotated[Optional[float], typer.Option(help="Stop after the epoch that passes this many training seconds. Default: no limit.")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option(help="Random seed (data generation, initialisation, batches).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    model_option: ModelOptionOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train a recommender with early stopping and write its checkpoint folder.

    On a named dataset with a tuned preset (the one `recsae run` uses, e.g. SASRec on ml-100k),
    options left unset take the preset's values; the learning rate, batch size and patience
    left unset otherwise scale with the data, as in `recsae run`."""
    from recsae.io import check_writable_folder, json_text
    from recsae.models.registry import model_class, model_config
    from recsae.models.trainer import TrainConfig, train_model
    from recsae.pipeline import preset
    from recsae.utils import set_threads

    table = table_options(sep, user_col, item_col, time_col, rating_col, title_col, multi_col, item_table)
    opts = dataset_options(dataset, data_root, fmt, min_rating, k_core, table)
    name = model_class(model).name
    layer_field = {"sasrec": "n_blocks", "gru4rec": "n_layers", "lightgcn": "n_layers"}.get(name)
    model_opts, train_opts = preset(
        dataset, name,
        key_values(model_option or [], "--model-option")
        | {k: v for k, v in {"dim": dim, "max_len": max_len, "dropout": dropout, "loss": loss,
                             "label_smoothing": label_smoothing, layer_field or "n_layers": layers}.items()
           if v is not None},
        {"patience": patience, "lr": lr, "batch_size": batch_size},
    )
    cfg = model_config(model, **model_opts)
    tcfg = TrainConfig(epochs=epochs, max_seconds=max_seconds, eval_protocol=eval_protocol, **train_opts)
    check_writable_folder(out)
    set_threads(threads)
    split = _load_split(opts, protocol, seed, model)
    tcfg = _scaled(tcfg, train_opts, name, split)
    source = opts.to_dict() | {"protocol": protocol, "seed": seed}
    result = train_model(model, split, cfg, out, seed, device, tcfg, data_source=source)
    typer.echo(json_text({"checkpoint": str(out), "best_epoch": result.best_epoch, "epochs": result.epochs,
                          "seconds": round(result.seconds, 1), "valid": result.valid, "test": result.test,
                          "evaluation": result.evaluation}))


def _scaled(tcfg: Any, given: dict[str, Any], name: str, split: Any) -> Any:
    """``tcfg`` with the training options neither given nor preset chosen from the data
    (``recsae.defaults.train_defaults``), said in one line."""
    import dataclasses

    from recsae.defaults import lr_text, train_defaults
    from recsae.models.registry import model_class
    from recsae.pipeline import TRAIN_CHOICES
    from recsae.utils import log

    ds = split.dataset
    rule = train_defaults(name, model_class(name).sequential, ds.n_users, ds.n_interactions)
    chosen = {key: getattr(rule, key) for key in TRAIN_CHOICES if key not in given}
    if chosen:
        shown = {"lr": lr_text(rule.lr), "batch_size": f"{rule.batch_size:,}", "patience": str(rule.patience)}
        log.info(f"defaults for {ds.n_users:,} users, {ds.n_interactions:,} interactions: "
                 + "; ".join(f"{key} {shown[key]} ({rule.why[key]})" for key in chosen))
    return dataclasses.replace(tcfg, **chosen)


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder written by `recsae train`.")],
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset. Default: the one recorded in the checkpoint.")] = None,  # noqa: UP045
    data_root: DataRootOpt = None,
    fmt: FormatOpt = None,
    min_rating: MinRatingOpt = None,
    k_core: KCoreOpt = None,
    split_name: Annotated[str, typer.Option("--split", help="valid or test.")] = "test",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, ...")] = "auto",
) -> None:
    """Full-ranking metrics of a checkpoint on its dataset (or another one with the same ids)."""
    from recsae.data.registry import dataset_fingerprint
    from recsae.io import json_text
    from recsae.models.checkpoint import (
        check_split_fits,
        checkpoint_protocol,
        load_checkpoint,
        split_for_checkpoint,
    )
    from recsae.models.trainer import evaluate_model
    from recsae.utils import default_device

    if split_name not in ("valid", "test"):
        raise ConfigError(f"--split must be valid or test, got {split_name!r}")
    model, config = load_checkpoint(checkpoint, default_device(device))
    if dataset is None:  # the recorded dataset; --data-root may point to where it lives now
        split = split_for_checkpoint(checkpoint, config, data_root)
    else:
        src = config.get("data", {}).get("source", {})
        opts = dataset_options(dataset, data_root, fmt, min_rating, k_core)
        split = _load_split(opts, src.get("protocol", "auto"), int(src.get("seed", config.get("seed", 0))),
                            config["model"]["name"])
        check_split_fits(split, model.n_users, model.n_items, checkpoint)
    recorded = config.get("data", {}).get("fingerprint")
    same = recorded == dataset_fingerprint(split.dataset)
    result = evaluate_model(model, split, "valid" if split_name == "valid" else "test",
                            eval_protocol=checkpoint_protocol(config))
    typer.echo(json_text({"checkpoint": str(checkpoint), "split": split_name, "same_data": same,
                          "protocol": result.protocol, "metrics": result.metrics}))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
