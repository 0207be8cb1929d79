"""CLI commands of the sae stage: ``recsae sae train`` and ``recsae sae eval``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from recsae.cli.train import ThreadsOpt
from recsae.sae.config import RUN_EPOCHS, RUN_MIN_ROWS, SaeTrainConfig

if TYPE_CHECKING:
    from recsae.defaults import SaeDefaults

sae_app = typer.Typer(
    name="sae",
    help="Train a TopK sparse autoencoder on a model's representations and splice it back.",
    no_args_is_help=True,
)

CheckpointOpt = Annotated[
    Path, typer.Option("--checkpoint", help="Model checkpoint folder (config.json + model.safetensors).")
]
DataRootOpt = Annotated[
    Optional[Path],  # noqa: UP045  (typer needs Optional at runtime on Python 3.10)
    typer.Option("--data-root", help="Where the checkpoint's dataset lives now (default: as recorded, else $RECSAE_DATA)."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")]


@sae_app.command("train")
def train_command(
    checkpoint: CheckpointOpt,
    out: Annotated[Path, typer.Option("--out", help="Output folder: activations/, sae/, random_sae/, splice.json. "
                                      "A rerun reuses the activations and resumes the SAE.")],
    k: Annotated[Optional[int], typer.Option(help="Active latents per row (TopK). Default: 32, fewer for a narrow SAE.")] = None,  # noqa: UP045
    expansion: Annotated[Optional[int], typer.Option(help="Latents per input dimension (m = expansion x d). Default: the widest "  # noqa: UP045
                                                     "power of two up to 32 whose latents fire on enough rows of enough users "
                                                     "to be validated.")] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training rows (the best validation epoch is kept).")] = RUN_EPOCHS,
    min_rows: Annotated[int, typer.Option(help="Train on at least this many rows in all: a small store gets more "
                                          "passes (at most 100). 0: exactly --epochs.")] = RUN_MIN_ROWS,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate.")] = SaeTrainConfig.lr,
    batch_size: Annotated[int, typer.Option(help="Rows per optimizer step.")] = 4096,
    balance: Annotated[float, typer.Option(help="Load-balancing rate of latent usage (0: plain TopK).")] = 0.0,
    patience: Annotated[Optional[int], typer.Option(help="Early stop after this many epochs without a better validation FVU.")] = None,  # noqa: UP045
    last_only: Annotated[bool, typer.Option("--last-only", help="Harvest only the last position of each history.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the SAE's initialisation and row order.")] = 0,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    force: Annotated[bool, typer.Option(help="Harvest and train again even if outputs exist.")] = False,
) -> None:
    """Harvest a model's activations, train a TopK SAE on them and print the splice table."""
    from recsae.io import check_writable_folder
    from recsae.models.checkpoint import checkpoint_protocol, load_checkpoint, split_for_checkpoint
    from recsae.rundir import RunDir
    from recsae.sae.config import SaeConfig
    from recsae.sae_stage import run_sae_stage
    from recsae.splice import format_splice_table
    from recsae.utils import default_device, seed_everything, set_threads

    check_writable_folder(out)
    train_cfg = SaeTrainConfig(lr=lr, batch_size=batch_size, epochs=epochs, min_rows=min_rows, seed=seed,
                               patience=patience, balance_rate=balance)  # bad options fail before any loading
    if any(v is not None and v < 1 for v in (k, expansion)):
        from recsae.errors import ConfigError

        raise ConfigError(f"sae: k and expansion must be >= 1, got k={k}, expansion={expansion}")
    set_threads(threads)
    seed_everything(seed)
    dev = default_device(device)
    model, config = load_checkpoint(checkpoint, dev)
    split = split_for_checkpoint(checkpoint, config, data_root)
    shape = _shape(model, split, k, expansion, last_only)
    sae_cfg = SaeConfig(d_in=model.dim, expansion=shape.expansion, k=shape.k)
    result = run_sae_stage(model, split, out, sae_cfg, train_cfg, last_only=last_only, checkpoint=checkpoint,
                           device=dev, force=force, eval_protocol=checkpoint_protocol(config))
    assert result.splice is not None  # one process: rank 0
    typer.echo(format_splice_table(result.splice))
    run = RunDir(out)
    typer.echo(f"wrote {run.activations}, {run.sae}, {run.random_sae}, {run.splice}")


def _shape(model: Any, split: Any, k: int | None, expansion: int | None, last_only: bool) -> SaeDefaults:
    """The SAE's k and expansion: those given, the others chosen from the rows the harvest will
    take (``recsae.defaults.sae_defaults``), with a warning when the SAE is too wide for them."""
    from recsae.defaults import sae_defaults, width_warning
    from recsae.probe.harvest import all_positions, harvest_shape, model_max_len
    from recsae.utils import log

    n_rows, n_users = harvest_shape(split, all_positions(model, last_only), bool(model.sequential), model_max_len(model))
    rule = sae_defaults(n_rows, n_users, model.dim, k=k, expansion=expansion)
    if k is None or expansion is None:
        log.info(f"defaults: SAE expansion {rule.expansion}, k {rule.k} ({rule.reasons})")
    warning = width_warning(n_rows, n_users, model.dim, rule.k, rule.expansion)
    if warning:
        log.warning(warning)
    return rule


@sae_app.command("eval")
def eval_command(
    checkpoint: CheckpointOpt,
    sae: Annotated[Path, typer.Option("--sae", help="SAE folder (cfg.json + sae.safetensors).")],
    which: Annotated[str, typer.Option("--split", help="valid or test.")] = "test",
    activations: Annotated[Optional[Path], typer.Option(help="Activation store whose train rows give μ for the mean-ablated row (default: SAE/../activations if present, else the evaluated rows).")] = None,  # noqa: UP045
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the table as JSON here.")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option(help="Seed of the random-SAE baseline.")] = 0,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Splice a trained SAE into its model and print the table of all five conditions, ranked in the
    evaluation protocol the checkpoint was trained with."""
    import numpy as np
    import torch

    from recsae.errors import ConfigError
    from recsae.models.checkpoint import checkpoint_protocol, load_checkpoint, split_for_checkpoint
    from recsae.probe.store import ActivationStore
    from recsae.rundir import RunDir
    from recsae.sae.model import TopKSAE, untrained_baseline
    from recsae.sae_stage import sae_rows
    from recsae.splice import evaluate_splice, format_splice_table
    from recsae.utils import default_device

    if which not in ("valid", "test"):
        raise ConfigError(f"--split must be valid or test, got {which!r}")
    dev = default_device(device)
    model, config = load_checkpoint(checkpoint, dev)
    split = split_for_checkpoint(checkpoint, config, data_root)
    trained = TopKSAE.load(sae, device=dev)
    if trained.cfg.d_in != model.dim:
        raise ConfigError(f"the SAE reads d = {trained.cfg.d_in}, the model's representation has d = {model.dim}")
    store_dir = activations or RunDir(sae.parent).activations
    mean, source, random_sae = None, None, None
    if activations is not None or (store_dir / "meta.json").is_file():
        store = ActivationStore.open(store_dir)
        x = store.view(sae_rows(store)[0])  # the rows the SAE trained on, read on demand
        mean, source = torch.from_numpy(x.mean().astype(np.float32)), f"{store_dir} train rows"
        # the random-SAE row of recsae run and recsae sae train: the same recipe on the same rows
        random_sae = untrained_baseline(trained.cfg, x, seed, dev)
    result = evaluate_splice(model, trained, split, which, random_sae=random_sae, mean=mean, mean_source=source,  # type: ignore[arg-type]
                             seed=seed, eval_protocol=checkpoint_protocol(config))
    typer.echo(format_splice_table(result))
    if out is not None:
        result.save(out)
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.add_typer(sae_app, name="sae")
