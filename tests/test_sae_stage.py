"""run_sae_stage(): harvest → SAE → splice into one folder, reusing a matching store."""

from __future__ import annotations

from recsae.io import read_json
from recsae.probe import ActivationStore
from recsae.sae import SaeConfig, SaeTrainConfig, TopKSAE
from recsae.sae_stage import run_sae_stage
from recsae.splice import splice_summary

CFG = SaeConfig(d_in=8, expansion=2, k=2)
TRAIN = SaeTrainConfig(lr=1e-2, warmup_rows=0, batch_size=4, epochs=2, b_dec_init_rows=8)


def test_stage_writes_store_sae_and_splice(tiny_model, tiny_split, tmp_path):
    res = run_sae_stage(tiny_model, tiny_split, tmp_path, CFG, TRAIN)
    store = ActivationStore.open(tmp_path / "activations")
    assert store.n_rows == 12
    assert TopKSAE.load(tmp_path / "sae").cfg == CFG == res.trained.sae.cfg
    data = read_json(tmp_path / "splice.json")
    assert data["config"]["activations"] == {"train_rows": 4, "valid_rows": 4, "last_only": False}
    assert data["config"]["mean_source"] == "activation store train rows"
    assert data["conditions"]["spliced_error"]["metrics"] == data["conditions"]["original"]["metrics"]
    assert splice_summary(res.splice)["spliced_error_exact"] is True
    assert list(res.splice.users) == [1, 2, 3]


def test_stage_reuses_a_matching_store_and_force_rebuilds_it(tiny_model, tiny_split, tmp_path):
    run_sae_stage(tiny_model, tiny_split, tmp_path, CFG, TRAIN)
    shard = tmp_path / "activations" / "shard-00000.npy"
    first = shard.stat().st_ino
    run_sae_stage(tiny_model, tiny_split, tmp_path, CFG, TRAIN)
    assert shard.stat().st_ino == first
    run_sae_stage(tiny_model, tiny_split, tmp_path, CFG, TRAIN, last_only=True)
    assert ActivationStore.open(tmp_path / "activations").n_rows == 4  # users with a history
    run_sae_stage(tiny_model, tiny_split, tmp_path, CFG, TRAIN, last_only=True, force=True)
    assert ActivationStore.open(tmp_path / "activations").meta["last_only"] is True


def test_the_stage_and_its_controls_read_the_store_on_demand_never_whole(tiny_model, tiny_split, tmp_path, monkeypatch):
    from recsae.controls import train_controls

    def whole(*args, **kw):
        raise AssertionError("the activation store was copied into memory whole")

    monkeypatch.setattr(ActivationStore, "load", whole)
    res = run_sae_stage(tiny_model, tiny_split, tmp_path, CFG, TRAIN)
    assert read_json(tmp_path / "splice.json")["config"]["all_rows"]["n_rows"] == 12
    controls = train_controls(tmp_path, None, {}, tiny_split, res.store, CFG, TRAIN)
    assert controls.seed_sae is not None
