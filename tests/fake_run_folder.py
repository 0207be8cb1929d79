"""A run folder made without training, for the commands that read one (``recsae steer``): the
built-in synthetic data's leave-one-out split, an untrained BPR-MF (``OUT/model``) and a random
TopK SAE (``OUT/sae``).

A module with a unique name (not conftest), importable from every test folder (pytest puts
``tests/`` on the path for its conftest).
"""

from __future__ import annotations

from pathlib import Path


def write_untrained_run(out: Path, n_latents: int = 64, dim: int = 16) -> Path:
    """Write the model and SAE of a run of the synthetic data into ``out``; returns ``out``."""
    from recsae.data.registry import DatasetOptions
    from recsae.data.split import make_split
    from recsae.models.bpr import BPR, BPRConfig
    from recsae.models.checkpoint import checkpoint_config, data_record, save_checkpoint
    from recsae.sae.config import SaeConfig
    from recsae.sae.model import TopKSAE

    opts = DatasetOptions("synthetic")
    split = make_split(opts.load(0), "leave-one-out")
    model = BPR.build(BPRConfig(dim=dim), split.n_users, split.n_items, split.train)
    source = opts.to_dict() | {"protocol": "leave-one-out", "seed": 0}
    save_checkpoint(out / "model", model, checkpoint_config(model, data_record(split, source), seed=0))
    TopKSAE(SaeConfig(d_in=dim, n_latents=n_latents, k=8)).save(out / "sae")
    return out
