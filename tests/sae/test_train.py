"""SAE trainer: row-counted dead window, schedule, determinism, resume, early stop, streaming."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from recsae.errors import ConfigError, DataError
from recsae.sae import SaeConfig, SaeTrainConfig, TopKSAE
from recsae.sae import train as train_mod
from recsae.sae.metrics import evaluate_sae
from recsae.sae.train import Adam, DeadLatentTracker, lr_at, train_sae


def _planted(n: int = 3000, d: int = 8, atoms: int = 16, active: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dic = rng.normal(size=(atoms, d))
    dic /= np.linalg.norm(dic, axis=1, keepdims=True)
    ids = np.stack([rng.choice(atoms, size=active, replace=False) for _ in range(n)])
    coef = rng.exponential(size=(n, active)) + 0.5
    return ((coef[..., None] * dic[ids]).sum(1) + 5.0).astype(np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads, and OpenMP barriers stall on a loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


CFG = SaeConfig(d_in=8, n_latents=32, k=2, dead_window=500)
TC = SaeTrainConfig(lr=1e-2, warmup_rows=200, batch_size=256, epochs=2, seed=3, b_dec_init_rows=1000)


@pytest.mark.parametrize("batch", [1, 3, 8, 24])
def test_dead_window_counts_rows_not_batches(batch: int) -> None:
    g = torch.Generator().manual_seed(0)
    n, m, k = 24 * 5, 10, 2
    idx = torch.randint(0, m, (n, k), generator=g)
    acts = torch.rand(n, k, generator=g)
    acts[acts < 0.3] = 0.0  # a zero activation is not a firing
    ref = torch.full((m,), n, dtype=torch.int64)  # rows since last firing, computed row by row
    for r in range(n):
        fired = idx[r][acts[r] > 0]
        ref += 1
        ref[fired] = 0
    tr = DeadLatentTracker(m, window=7, device=torch.device("cpu"))
    tr.rows_since.fill_(0)
    for s in range(0, n, batch):
        tr.update(acts[s : s + batch], idx[s : s + batch])
    never = torch.ones(m, dtype=torch.bool)
    never[idx[acts > 0]] = False
    expected = torch.where(never, torch.tensor(n), ref)
    assert torch.equal(tr.rows_since, expected)
    assert torch.equal(tr.dead_mask, expected >= 7)


def test_lr_schedule_warmup_then_linear_decay() -> None:
    tc = SaeTrainConfig(lr=1.0, warmup_rows=100, decay="linear")
    assert lr_at(0, 1000, tc) == pytest.approx(0.01)
    assert lr_at(99, 1000, tc) == pytest.approx(1.0)
    assert lr_at(550, 1000, tc) == pytest.approx(0.5)
    assert lr_at(1000, 1000, tc) == pytest.approx(0.0)
    assert lr_at(500, 1000, SaeTrainConfig(lr=1.0, warmup_rows=0, decay="none")) == 1.0


def test_adam_matches_torch_adam() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3, generator=g, dtype=torch.float64))
    b = torch.nn.Parameter(a.detach().clone())
    ours, ref = Adam([a], betas=(0.9, 0.99)), torch.optim.Adam([b], lr=0.1, betas=(0.9, 0.99))
    for _ in range(4):
        grad = torch.randn(5, 3, generator=g, dtype=torch.float64)
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step(0.1)
        ref.step()
    assert torch.allclose(a, b, atol=1e-12)


def test_train_config_validation() -> None:
    with pytest.raises(ConfigError):
        SaeTrainConfig(lr=0)
    with pytest.raises(ConfigError):
        SaeTrainConfig(decay="exp")
    with pytest.raises(ConfigError):
        SaeTrainConfig.from_dict({"lr": 1e-3, "learning_rate": 1})


def test_training_fits_planted_data_and_keeps_constraints() -> None:
    x = _planted(2500)
    res = train_sae(x[:2000], CFG, SaeTrainConfig(**{**TC.to_dict(), "epochs": 4, "lr": 3e-2}), valid=x[2000:], device="cpu")
    assert res.metrics is not None
    start = TopKSAE(CFG, seed=TC.seed)
    start.init_b_dec_from_data(torch.from_numpy(x[:1000]))
    start.scale_encoder_to_data(torch.from_numpy(x[:1000]))
    assert res.metrics.fvu < 0.5 * evaluate_sae(start, x[2000:]).fvu
    assert res.metrics.fvu < 0.3
    assert res.metrics.l0 == pytest.approx(2.0)
    assert torch.allclose(res.sae.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)
    assert [r["epoch"] for r in res.history] == list(range(1, 5))


def test_training_is_deterministic_given_seed() -> None:
    x = _planted(1000)
    a = train_sae(x, CFG, TC, device="cpu").sae
    b = train_sae(x, CFG, TC, device="cpu").sae
    c = train_sae(x, CFG, SaeTrainConfig(**{**TC.to_dict(), "seed": 4}), device="cpu").sae
    for n, p in a.named_parameters():
        assert torch.equal(p, dict(b.named_parameters())[n])
    assert not torch.equal(a.W_enc, c.W_enc)


def test_row_budget_spans_epochs() -> None:
    x = _planted(1000)
    res = train_sae(x, CFG, SaeTrainConfig(**{**TC.to_dict(), "max_rows": 2500}), device="cpu")
    assert [r["rows"] for r in res.history] == [1000, 1000, 500]


def test_min_rows_adds_passes_on_a_small_set_but_never_removes_any() -> None:
    x = _planted(1000)
    res = train_sae(x, CFG, SaeTrainConfig(**{**TC.to_dict(), "min_rows": 4500}), device="cpu")
    assert [r["rows"] for r in res.history] == [1000, 1000, 1000, 1000, 500]
    res = train_sae(x, CFG, SaeTrainConfig(**{**TC.to_dict(), "min_rows": 1500}), device="cpu")
    assert len(res.history) == TC.epochs  # two passes already see 2000 rows


def test_min_rows_stops_at_the_pass_limit(monkeypatch) -> None:
    monkeypatch.setattr(train_mod, "MIN_ROWS_MAX_EPOCHS", 3)
    res = train_sae(_planted(1000), CFG, SaeTrainConfig(**{**TC.to_dict(), "min_rows": 10**9}), device="cpu")
    assert [r["rows"] for r in res.history] == [1000, 1000, 1000]
    with pytest.raises(ConfigError, match="min_rows"):
        SaeTrainConfig(min_rows=-1)


def test_checkpoint_files_and_resume_continue(tmp_path) -> None:
    x = _planted(1200)
    valid = x[1000:]
    x = x[:1000]
    straight = train_sae(x, CFG, TC, valid=valid, device="cpu")

    def killed_in_epoch_2(sae: TopKSAE, rec: dict) -> None:
        if rec["epoch"] == 2:  # before epoch 2's checkpoint: only epoch 1 is on disk
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_sae(x, CFG, TC, valid=valid, out_dir=tmp_path, device="cpu", callback=killed_in_epoch_2)
    assert json.loads((tmp_path / "train_state" / "state.json").read_text())["state"]["epoch"] == 1
    assert not (tmp_path / "cfg.json").exists()  # the final SAE appears only when training ends
    resumed = train_sae(x, CFG, TC, valid=valid, out_dir=tmp_path, device="cpu")
    for name in ("cfg.json", "sae.safetensors", "train_log.jsonl", "train_state/state.json", "train_state/state.safetensors"):
        assert (tmp_path / name).is_file(), name
    meta = json.loads((tmp_path / "cfg.json").read_text())
    assert meta["format_version"] >= 1 and meta["sae"]["k"] == 2 and "versions" in meta and meta["seed"] == 3
    assert len(resumed.history) == 2
    assert resumed.history[1]["valid_fvu"] == pytest.approx(straight.history[1]["valid_fvu"], rel=1e-5)
    for n, p in straight.sae.named_parameters():
        assert torch.allclose(p, dict(resumed.sae.named_parameters())[n], atol=1e-6), n
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 2
    assert torch.equal(TopKSAE.load(tmp_path).W_dec, resumed.sae.W_dec)


def test_resume_refuses_a_different_config(tmp_path) -> None:
    x = _planted(500)
    train_sae(x, CFG, SaeTrainConfig(**{**TC.to_dict(), "epochs": 1}), out_dir=tmp_path, device="cpu")
    with pytest.raises(ConfigError):
        train_sae(x, SaeConfig(d_in=8, n_latents=32, k=3), TC, out_dir=tmp_path, device="cpu")


def test_resume_refuses_a_state_of_another_format_version(tmp_path) -> None:
    x = _planted(500)
    tc = SaeTrainConfig(**{**TC.to_dict(), "epochs": 1})
    train_sae(x, CFG, tc, out_dir=tmp_path, device="cpu")
    state = tmp_path / "train_state" / "state.json"
    state.write_text(json.dumps(json.loads(state.read_text()) | {"format_version": 0}))
    with pytest.raises(DataError, match=r"state\.json, field 'format_version': format version 0, but this recsae reads"):
        train_sae(x, CFG, tc, out_dir=tmp_path, device="cpu")


def test_early_stop_on_validation_fvu_returns_best() -> None:
    x = _planted(1200)
    tc = SaeTrainConfig(**{**TC.to_dict(), "epochs": 10, "patience": 1, "min_delta": 10.0})
    res = train_sae(x[:1000], CFG, tc, valid=x[1000:], device="cpu")
    assert len(res.history) == 2  # epoch 2 cannot improve by 10 → stop
    assert res.metrics is not None
    assert res.metrics.fvu == pytest.approx(res.history[0]["valid_fvu"], rel=1e-6)


def test_callback_can_stop_training() -> None:
    x = _planted(500)
    seen = []

    def cb(sae: TopKSAE, rec: dict) -> bool:
        seen.append(rec["epoch"])
        return True

    res = train_sae(x, CFG, SaeTrainConfig(**{**TC.to_dict(), "epochs": 5}), device="cpu", callback=cb)
    assert seen == [1] and len(res.history) == 1


def _same_training(a: train_mod.SaeTrainResult, b: train_mod.SaeTrainResult) -> None:
    """Bit for bit the same SAE, epoch records (less the clock) and validation metrics."""
    for name, t in a.sae.state_dict().items():
        assert torch.equal(t, b.sae.state_dict()[name]), name
    clock = ("seconds", "rows_per_s")
    assert [{k: v for k, v in r.items() if k not in clock} for r in a.history] == \
        [{k: v for k, v in r.items() if k not in clock} for r in b.history]
    assert a.metrics == b.metrics


def test_memmap_input_is_streamed_with_the_same_result_bit_for_bit(tmp_path, monkeypatch) -> None:
    x = _planted(1000)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    monkeypatch.setattr(train_mod, "IN_MEMORY_BYTES", 0)
    rows = train_mod._Rows(mm, 8, torch.device("cpu"))
    assert rows.array is not None and rows.tensor is None
    _same_training(train_sae(mm, CFG, TC, valid=mm[:300], device="cpu"),
                   train_sae(x, CFG, TC, valid=x[:300], device="cpu"))


class _RowSource:
    """A row source that is no array: shape, len, slices and integer-array gathers, counted."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.shape = x.shape
        self.largest = 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key):
        out = np.array(self.x[key])
        self.largest = max(self.largest, len(out))
        return out


def test_a_row_source_is_read_batch_by_batch_with_the_same_result_bit_for_bit() -> None:
    x = _planted(1200)
    train, valid = _RowSource(x[:1000]), _RowSource(x[1000:])
    tc = SaeTrainConfig(**{**TC.to_dict(), "eval_batch_size": 128})
    _same_training(train_sae(train, CFG, tc, valid=valid, device="cpu"),
                   train_sae(x[:1000], CFG, tc, valid=x[1000:], device="cpu"))
    # never more than a batch (or the b_dec sample) at a time
    assert train.largest == max(TC.batch_size, TC.b_dec_init_rows) and valid.largest == 128


def test_auxk_revives_dead_latents() -> None:
    """Latents pushed out of reach get a gradient only through AuxK."""
    x = _planted(2000)
    cfg = SaeConfig(d_in=8, n_latents=32, k=2, dead_window=256)
    off = SaeConfig(d_in=8, n_latents=32, k=2, dead_window=256, aux_alpha=0.0)
    tc = SaeTrainConfig(**{**TC.to_dict(), "epochs": 3})
    on_res = train_sae(x, cfg, tc, device="cpu")
    off_res = train_sae(x, off, tc, device="cpu")
    assert on_res.history[-1]["auxk"] > 0 or on_res.history[-1]["dead_fraction"] == 0
    assert off_res.history[-1]["auxk"] == 0
    assert on_res.history[-1]["dead_fraction"] <= off_res.history[-1]["dead_fraction"]


def test_balancing_evens_latent_usage() -> None:
    """Few clusters, many latents: plain TopK leaves most latents unused; balancing uses them all
    none far above the uniform share k/m."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 3
    x = (centres[rng.integers(0, 4, 4000)] + 0.3 * rng.normal(size=(4000, 8))).astype(np.float32)
    cfg = SaeConfig(d_in=8, n_latents=64, k=2, aux_alpha=0.0)
    tc = SaeTrainConfig(**{**TC.to_dict(), "epochs": 4})

    def usage(balance: float) -> np.ndarray:
        sae = train_sae(x, cfg, SaeTrainConfig(**{**tc.to_dict(), "balance_rate": balance}), device="cpu").sae
        idx = sae.encode(torch.from_numpy(x)).top_indices
        return np.bincount(idx.numpy().ravel(), minlength=64) / len(x)

    plain, balanced = usage(0.0), usage(0.03)
    assert (plain > 0).sum() < 32
    assert (balanced > 0).sum() >= 60
    assert balanced.max() < 4 * cfg.k / cfg.m < plain.max()


def test_zero_balance_rate_leaves_selection_bias_zero() -> None:
    res = train_sae(_planted(1000), CFG, TC, device="cpu")
    assert not res.sae.selection_bias.any()


def test_resume_restores_selection_bias(tmp_path) -> None:
    x = _planted(1000)
    tc = SaeTrainConfig(**{**TC.to_dict(), "balance_rate": 0.05})
    straight = train_sae(x, CFG, tc, device="cpu")

    def killed_in_epoch_2(sae: TopKSAE, rec: dict) -> None:
        if rec["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_sae(x, CFG, tc, out_dir=tmp_path, device="cpu", callback=killed_in_epoch_2)
    resumed = train_sae(x, CFG, tc, out_dir=tmp_path, device="cpu")
    assert straight.sae.selection_bias.any()
    assert torch.allclose(resumed.sae.selection_bias, straight.sae.selection_bias, atol=1e-6)
    assert torch.allclose(resumed.sae.W_dec, straight.sae.W_dec, atol=1e-6)


def test_epoch_log_explains_an_auxk_of_exactly_one_only_when_latents_are_dead() -> None:
    rec = {"epoch": 3, "loss": 0.05, "fvu": 0.04, "auxk": 1.0, "dead_fraction": 0.004, "l0": 32.0, "rows_per_s": 1e5}
    assert "dead latents never pre-activate" in train_mod._format_record(rec)
    assert "never pre-activate" not in train_mod._format_record(rec | {"auxk": 0.93})
    assert "never pre-activate" not in train_mod._format_record(rec | {"dead_fraction": 0.0})


def test_annealed_balancing_ends_with_a_zero_selection_bias_and_kept_balancing_does_not() -> None:
    x = _planted(2000)
    kept = train_sae(x, CFG, SaeTrainConfig(**{**TC.to_dict(), "balance_rate": 0.03}), device="cpu").sae
    annealed = train_sae(x, CFG, SaeTrainConfig(**{**TC.to_dict(), "balance_rate": 0.03, "balance_until": 0.5}),
                         device="cpu").sae
    assert kept.selection_bias.abs().sum() > 0
    assert torch.equal(annealed.selection_bias, torch.zeros(CFG.m))


def test_prediction_kl_is_zero_for_an_exact_reconstruction_and_closed_form_for_a_flat_one() -> None:
    g = torch.Generator().manual_seed(0)
    items = torch.randn(50, 8, generator=g)
    x = torch.randn(6, 8, generator=g)
    assert train_mod.prediction_kl(x, x, items).item() == pytest.approx(0.0, abs=1e-6)
    # x̂ = 0 scores every item equally: KL(p ‖ uniform) = log n − H(p)
    logp = torch.log_softmax(x @ items.T, dim=1)
    expected = (np.log(50) + (logp.exp() * logp).sum(1)).mean().item()
    assert train_mod.prediction_kl(x, torch.zeros_like(x), items).item() == pytest.approx(expected, rel=1e-5)


def test_prediction_aware_loss_needs_item_embeddings_and_lowers_the_kl() -> None:
    x = _planted(2000)
    tc = SaeTrainConfig(**{**TC.to_dict(), "kl_weight": 1.0})
    with pytest.raises(ConfigError, match="item embeddings"):
        train_sae(x, CFG, tc, device="cpu")
    items = np.random.default_rng(1).normal(size=(41, 8)).astype(np.float32)
    plain = train_sae(x, CFG, TC, device="cpu").sae
    aware = train_sae(x, CFG, SaeTrainConfig(**{**tc.to_dict(), "kl_weight": 10.0}), device="cpu", item_emb=items).sae
    xt, it = torch.from_numpy(x), torch.from_numpy(items[1:])
    with torch.no_grad():
        kl_plain = train_mod.prediction_kl(xt, plain(xt).x_hat, it).item()
        kl_aware = train_mod.prediction_kl(xt, aware(xt).x_hat, it).item()
    assert kl_aware < kl_plain


def test_resume_of_a_state_without_a_validation_fvu_yet_continues(tmp_path) -> None:
    # no validation rows in the first session: the initial best FVU (inf) is stored as null
    x = _planted(1200)
    train_sae(x[:1000], CFG, SaeTrainConfig(**{**TC.to_dict(), "epochs": 1}), out_dir=tmp_path, device="cpu")
    assert json.loads((tmp_path / "train_state" / "state.json").read_text())["state"]["best_fvu"] is None
    resumed = train_sae(x[:1000], CFG, TC, valid=x[1000:], out_dir=tmp_path, device="cpu")
    assert len(resumed.history) == 2 and math.isfinite(resumed.history[1]["valid_fvu"])


def test_epoch_log_gives_no_never_pre_activate_note_when_auxk_reads_raw_pre_activations() -> None:
    rec = {"epoch": 3, "loss": 0.1, "fvu": 0.05, "auxk": 1.2, "dead_fraction": 0.2, "l0": 8.0, "rows_per_s": 1e4}
    assert "never pre-activate" in train_mod._format_record(rec, aux_relu=True)
    assert "never pre-activate" not in train_mod._format_record(rec, aux_relu=False)
