"""TopK SAE: closed-form checks of the forward pass, AuxK, gradients, decoder constraint, I/O."""

from __future__ import annotations

import pytest
import torch

from recsae.errors import ConfigError, DataError
from recsae.sae import SaeConfig, TopKSAE
from recsae.sae.model import _key_order, gather_dot, scatter_rows, topk_rows, untrained_baseline
from recsae.sae.train import Adam


def _dense_reference(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor | None) -> torch.Tensor:
    """docs/method.md §2 written densely with autograd: FVU + α·AuxK."""
    cfg = sae.cfg
    pre = (x - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    a = torch.relu(pre)
    v, i = a.topk(cfg.k, dim=1)
    z = torch.zeros_like(a).scatter(1, i, v)
    x_hat = z @ sae.W_dec + sae.b_dec
    loss = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    if dead is not None and dead.any():
        e = (x - x_hat).detach()
        a_dead = (a if cfg.aux_relu else pre).masked_fill(~dead, -torch.inf)
        av, ai = a_dead.topk(min(cfg.k_aux, int(dead.sum())), dim=1)
        z_aux = torch.zeros_like(a).scatter(1, ai, av)
        e_hat = z_aux @ sae.W_dec
        loss = loss + cfg.aux_alpha * ((e - e_hat) ** 2).sum() / (e**2).sum()
    return loss


def _random_sae(m: int = 64, d: int = 8, k: int = 4, seed: int = 0, **kw: object) -> TopKSAE:
    sae = TopKSAE(SaeConfig(d_in=d, n_latents=m, k=k, **kw), seed=seed).double()  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(m, generator=g, dtype=torch.float64) * 0.1)
        sae.b_dec.copy_(torch.randn(d, generator=g, dtype=torch.float64))
    return sae


def test_config_defaults_and_validation() -> None:
    cfg = SaeConfig(d_in=64)
    assert cfg.m == 32 * 64 and cfg.k_aux == 32 and cfg.aux_alpha == 1 / 32
    assert SaeConfig(d_in=64, n_latents=100).m == 100
    with pytest.raises(ConfigError):
        SaeConfig(d_in=8, n_latents=4, k=5)
    with pytest.raises(ConfigError):
        SaeConfig.from_dict({"d_in": 8, "bogus": 1})


def test_tied_unit_norm_init() -> None:
    sae = TopKSAE(SaeConfig(d_in=8, n_latents=32, k=4), seed=3)
    assert torch.equal(sae.W_enc, sae.W_dec)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32))
    assert torch.equal(sae.b_enc, torch.zeros(32)) and torch.equal(sae.b_dec, torch.zeros(8))


def test_exactly_k_nonzeros_when_enough_positive() -> None:
    sae = TopKSAE(SaeConfig(d_in=4, n_latents=16, k=3))
    with torch.no_grad():
        sae.b_enc.fill_(1.0)  # every pre-activation of x = b_dec is 1 > 0
    z = sae.dense_latents(torch.zeros(5, 4))
    assert ((z != 0).sum(1) == 3).all()


def test_fewer_nonzeros_when_fewer_positive() -> None:
    sae = TopKSAE(SaeConfig(d_in=2, n_latents=8, k=4))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.copy_(torch.tensor([2.0, -1, 3, -1, -1, -1, -1, -1]))
    z = sae.dense_latents(torch.zeros(3, 2))
    assert ((z != 0).sum(1) == 2).all()
    assert torch.equal(z[0].nonzero().squeeze(1), torch.tensor([0, 2]))
    assert torch.allclose(z[0, [0, 2]], torch.tensor([2.0, 3.0]))


def test_encode_decode_closed_form() -> None:
    # identity-like SAE: latents 0..3 read and write the 4 coordinates.
    sae = TopKSAE(SaeConfig(d_in=4, n_latents=8, k=2))
    with torch.no_grad():
        w = torch.cat([torch.eye(4), -torch.eye(4)])
        sae.W_enc.copy_(w)
        sae.W_dec.copy_(w)
        sae.b_dec.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    x = torch.tensor([[4.0, 1.0, 3.0, 1.0]])  # x − b_dec = (3, 0, 2, 0)
    acts, idx = sae.encode(x)
    order = idx[0].argsort()
    assert idx[0][order].tolist() == [0, 2] and acts[0][order].tolist() == [3.0, 2.0]
    assert torch.allclose(sae.decode(acts, idx), x)
    assert torch.allclose(sae(x).x_hat, x)


def test_auxk_hand_computed() -> None:
    """d = 2, m = 4, k = 1, k_aux = 1. Latent 0 is alive, latents 2 and 3 are dead."""
    cfg = SaeConfig(d_in=2, n_latents=4, k=1, aux_k=1)
    sae = TopKSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 1.0], [0.6, 0.8]]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 1.0], [0.6, 0.8]]))
        sae.b_dec.copy_(torch.tensor([1.0, 1.0]))
    x = torch.tensor([[4.0, 2.0]])  # x − b_dec = (3, 1); pre-acts (3, −1→0, 1, 2.6)
    dead = torch.tensor([False, False, True, True])
    out = sae(x, dead)
    # TopK: latent 0 with 3 → x̂ = (3, 0) + b_dec = (4, 1); e = x − x̂ = (0, 1).
    assert torch.allclose(out.x_hat, torch.tensor([[4.0, 1.0]]))
    # AuxK among dead {2: 1.0, 3: 2.6}: latent 3 → ê = 2.6·(0.6, 0.8) = (1.56, 2.08), no b_dec.
    # L_aux = ‖e − ê‖² / ‖e‖² = (1.56² + 1.08²) / 1.
    assert out.auxk_loss.item() == pytest.approx(1.56**2 + 1.08**2, rel=1e-6)
    # The residual is detached: AuxK gives no gradient to the alive latent or to b_dec via x̂.
    sae.zero_grad()
    out.auxk_loss.backward()
    assert sae.W_dec.grad is not None and torch.equal(sae.W_dec.grad[0], torch.zeros(2))
    assert torch.equal(sae.W_dec.grad[2], torch.zeros(2))  # dead but not selected
    # ∂L_aux/∂W_dec[3] = −2 · a₃ · (e − ê) = −2 · 2.6 · (−1.56, −1.08)
    assert torch.allclose(sae.W_dec.grad[3], torch.tensor([2 * 2.6 * 1.56, 2 * 2.6 * 1.08]), rtol=1e-5)


def test_auxk_zero_without_dead_latents() -> None:
    sae = _random_sae()
    x = torch.randn(10, 8, dtype=torch.float64)
    assert sae(x, torch.zeros(64, dtype=torch.bool)).auxk_loss.item() == 0.0
    assert sae(x).auxk_loss.item() == 0.0


def test_auxk_without_relu_gives_a_never_firing_dead_latent_a_gradient() -> None:
    """The case of test_auxk_hand_computed with latent 3 pointing away from every input: its
    pre-activation is -2.6, so through the ReLU AuxK has nothing to train; on the raw
    pre-activation it reconstructs e with -2.6 · w₃ and its encoder row gets a gradient."""
    grads = {}
    for relu in (True, False):
        sae = TopKSAE(SaeConfig(d_in=2, n_latents=4, k=1, aux_k=1, aux_relu=relu))
        w = torch.tensor([[1.0, 0.0], [0.0, -1.0], [-1.0, 0.0], [-0.6, -0.8]])
        with torch.no_grad():
            sae.W_enc.copy_(w)
            sae.W_dec.copy_(w)
            sae.b_dec.copy_(torch.tensor([1.0, 1.0]))
        out = sae(torch.tensor([[4.0, 2.0]]), torch.tensor([False, False, True, True]))
        out.auxk_loss.backward()
        grads[relu] = sae.W_enc.grad[3].clone()
        if not relu:
            # ê = −2.6 · (−0.6, −0.8) = (1.56, 2.08): the same loss as in the hand-computed case
            assert out.auxk_loss.item() == pytest.approx(1.56**2 + 1.08**2, rel=1e-6)
    assert torch.equal(grads[True], torch.zeros(2))
    assert grads[False].abs().sum() > 0


@pytest.mark.parametrize("aux_relu", [True, False])
@pytest.mark.parametrize("with_dead", [False, True])
def test_sparse_gradients_equal_dense_autograd(with_dead: bool, aux_relu: bool) -> None:
    sae = _random_sae(m=64, d=8, k=4, aux_k=3, aux_relu=aux_relu)
    x = torch.randn(20, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2 + 1
    dead = (torch.arange(64) % 3 == 0) if with_dead else None
    out = sae(x, dead)
    (out.fvu + sae.cfg.aux_alpha * out.auxk_loss).backward()
    fast = {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}
    sae.zero_grad()
    _dense_reference(sae, x, dead).backward()
    for n, p in sae.named_parameters():
        assert p.grad is not None
        assert torch.allclose(fast[n], p.grad, atol=1e-12), n


def test_fast_topk_matches_torch_topk() -> None:
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(300, 1024, generator=g)
    pre[:10] = -pre[:10].abs()  # rows with no positive entry
    vals, idx = topk_rows(pre, 16)
    ref_v, ref_i = pre.topk(16, dim=1)
    assert torch.equal(vals.sort(1).values, ref_v.sort(1).values)
    assert torch.equal(idx.sort(1).values, ref_i.sort(1).values)


def test_sparse_helpers_match_dense() -> None:
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 50, (30, 5), generator=g)
    vals = torch.randn(30, 5, generator=g, dtype=torch.float64)
    rhs = torch.randn(30, 7, generator=g, dtype=torch.float64)
    w = torch.randn(50, 7, generator=g, dtype=torch.float64)
    z = torch.zeros(30, 50, dtype=torch.float64)
    for j in range(5):  # duplicates within a row add up, as in the dense product
        z[torch.arange(30), idx[:, j]] += vals[:, j]
    assert torch.allclose(scatter_rows(idx, vals, rhs, 50), z.T @ rhs)
    assert torch.allclose(gather_dot(idx, w, rhs), (rhs @ w.T).gather(1, idx))


@pytest.mark.parametrize("n", [1_000, 2**15, 70_000])
@pytest.mark.parametrize("n_keys", [7, 300, 2**15 + 1])
def test_key_order_is_the_default_argsort_so_sparse_sums_keep_their_order(n: int, n_keys: int) -> None:
    # the order scatter_rows adds rows in; few distinct keys make many ties, which a sort that is
    # not the default one would order differently
    keys = torch.randint(0, n_keys, (n,), generator=torch.Generator().manual_seed(n + n_keys))
    assert torch.equal(_key_order(keys, n_keys), keys.argsort())


def test_parallel_gradient_component_removed() -> None:
    sae = _random_sae()
    x = torch.randn(16, 8, dtype=torch.float64)
    sae(x).fvu.backward()
    sae.remove_parallel_grad()
    assert sae.W_dec.grad is not None
    dots = (sae.W_dec.grad * sae.W_dec).sum(1)
    assert dots.abs().max().item() < 1e-12


def test_decoder_norms_stay_one_after_steps() -> None:
    sae = _random_sae()
    opt = Adam(list(sae.parameters()), betas=(0.9, 0.999))
    x = torch.randn(32, 8, dtype=torch.float64) * 3
    for _ in range(5):
        out = sae(x)
        opt.zero_grad()
        out.fvu.backward()
        sae.remove_parallel_grad()
        opt.step(0.05)
        sae.normalize_decoder()
        assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64, dtype=torch.float64), atol=1e-12)


def test_b_dec_init_mean_and_median() -> None:
    sae = TopKSAE(SaeConfig(d_in=2, n_latents=4, k=1))
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [100.0, 100.0]])
    sae.init_b_dec_from_data(x)
    assert torch.allclose(sae.b_dec, x.mean(0))
    sae.init_b_dec_from_data(x, method="median")
    assert sae.b_dec.norm().item() < 2.0  # the median ignores the outlier
    with pytest.raises(DataError):
        sae.init_b_dec_from_data(torch.zeros(3, 5))


def test_scale_encoder_keeps_selection_and_fits_scale() -> None:
    sae = _random_sae(m=64, d=8, k=4).float()
    with torch.no_grad():
        sae.b_enc.zero_()
    x = torch.randn(200, 8) * 3 + sae.b_dec
    before = sae.encode(x)
    c = sae.scale_encoder_to_data(x)
    after = sae.encode(x)
    assert torch.equal(before.top_indices, after.top_indices)
    assert torch.allclose(after.top_acts, before.top_acts * c, rtol=1e-5)
    # c is the least-squares scale: the residual is orthogonal to the reconstruction.
    with torch.no_grad():
        y = sae.decode_residual(*after)
        assert abs(float((y * (x - sae.b_dec - y)).sum())) < 1e-2 * float(y.pow(2).sum())


def test_save_load_round_trip(tmp_path) -> None:
    sae = _random_sae().float()
    x = torch.randn(9, 8)
    sae.save(tmp_path / "sae")
    loaded = TopKSAE.load(tmp_path / "sae")
    assert loaded.cfg == sae.cfg
    assert torch.equal(loaded(x).x_hat, sae(x).x_hat)
    assert (tmp_path / "sae" / "cfg.json").is_file() and (tmp_path / "sae" / "sae.safetensors").is_file()


def test_selection_bias_picks_latents_but_keeps_their_activations() -> None:
    """z keeps ReLU(pre) at the k largest entries of pre + selection_bias."""
    sae = _random_sae(m=16, d=8, k=3)
    x = torch.randn(12, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    bias = torch.linspace(-2.0, 2.0, 16, dtype=torch.float64)
    with torch.no_grad():
        sae.selection_bias.copy_(bias)
    pre = (x - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    want_idx = (pre + bias).topk(3, dim=1).indices
    acts, idx = sae.encode(x)
    assert torch.equal(idx.sort(1).values, want_idx.sort(1).values)
    assert torch.allclose(acts, pre.gather(1, idx).relu())


def test_sparse_gradients_equal_dense_autograd_with_selection_bias() -> None:
    sae = _random_sae(m=32, d=8, k=4)
    with torch.no_grad():
        sae.selection_bias.copy_(torch.randn(32, dtype=torch.float64, generator=torch.Generator().manual_seed(9)))
    x = torch.randn(20, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2 + 1
    sae(x).fvu.backward()
    fast = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    pre = (x - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    i = (pre + sae.selection_bias).topk(4, dim=1).indices
    z = torch.zeros_like(pre).scatter(1, i, pre.gather(1, i).relu())
    x_hat = z @ sae.W_dec + sae.b_dec
    (((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()).backward()
    for n, p in sae.named_parameters():
        assert torch.allclose(fast[n], p.grad, atol=1e-12), n


def test_balance_step_moves_bias_toward_the_uniform_share() -> None:
    sae = TopKSAE(SaeConfig(d_in=4, n_latents=4, k=1))
    # 4 rows, k=1: uniform share is 1 row per latent; latent 0 got 3, latent 1 got 1, 2 and 3 none.
    idx = torch.tensor([[0], [0], [0], [1]])
    sae.balance_step(idx, torch.full((4, 1), 2.0), rate=0.5)
    assert sae.selection_bias.tolist() == [-1.0, 0.0, 1.0, 1.0]


def test_save_load_keeps_selection_bias_and_reads_older_checkpoints(tmp_path) -> None:
    sae = _random_sae().float()
    with torch.no_grad():
        sae.selection_bias.copy_(torch.randn(64))
    x = torch.randn(9, 8)
    sae.save(tmp_path / "sae")
    loaded = TopKSAE.load(tmp_path / "sae")
    assert torch.equal(loaded.selection_bias, sae.selection_bias)
    assert torch.equal(loaded.encode(x).top_indices, sae.encode(x).top_indices)
    # a checkpoint from before the bias existed: weights only, bias zero
    from recsae.io import read_tensors, write_tensors

    weights = {n: t for n, t in read_tensors(tmp_path / "sae" / "sae.safetensors").items() if n != "selection_bias"}
    write_tensors(tmp_path / "sae" / "sae.safetensors", weights)
    assert not TopKSAE.load(tmp_path / "sae").selection_bias.any()


def test_load_rejects_bad_folder(tmp_path) -> None:
    with pytest.raises(DataError, match=r"cfg\.json"):
        TopKSAE.load(tmp_path)
    sae = _random_sae().float()
    sae.save(tmp_path / "s")
    import json

    meta = json.loads((tmp_path / "s" / "cfg.json").read_text())
    meta["format_version"] = 999
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"cfg\.json, field 'format_version': format version 999, but this recsae reads format version 1"):
        TopKSAE.load(tmp_path / "s")


@pytest.mark.parametrize("damaged", ["cfg.json", "sae.safetensors"])
def test_load_names_a_damaged_file(tmp_path, damaged: str) -> None:
    _random_sae().float().save(tmp_path)
    (tmp_path / damaged).write_bytes(b"{ damaged")
    with pytest.raises(DataError, match=rf"{damaged.replace('.', '[.]')}(, line 1)?: not (valid JSON|a readable safetensors)"):
        TopKSAE.load(tmp_path)


def test_random_like_is_seeded_and_untrained() -> None:
    cfg = SaeConfig(d_in=8, n_latents=32, k=4)
    a, b = TopKSAE.random_like(cfg, seed=7), TopKSAE.random_like(cfg, seed=7)
    c = TopKSAE.random_like(cfg, seed=8, b_dec=torch.ones(8))
    assert torch.equal(a.W_enc, b.W_enc) and not torch.equal(a.W_enc, c.W_enc)
    assert torch.equal(c.b_dec, torch.ones(8))
    x = torch.randn(100, 8) + 3
    d = TopKSAE.random_like(cfg, seed=7, x_sample=x)
    assert torch.allclose(d.b_dec, x.mean(0))
    assert torch.allclose(d.W_enc, a.W_enc * (d.W_enc.norm() / a.W_enc.norm()))  # same directions, rescaled


def test_untrained_baseline_is_random_like_on_a_seeded_sample_of_the_rows() -> None:
    import numpy as np

    cfg = SaeConfig(d_in=8, n_latents=32, k=4)
    x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32) + 3
    every = untrained_baseline(cfg, x, seed=7)  # the sample holds every row
    want = TopKSAE.random_like(cfg, seed=7, x_sample=torch.from_numpy(x))
    assert all(torch.allclose(every.state_dict()[n], t) for n, t in want.state_dict().items())
    part, again = untrained_baseline(cfg, x, seed=7, sample_rows=10), untrained_baseline(cfg, x, seed=7, sample_rows=10)
    assert torch.equal(part.b_dec, again.b_dec)  # the sample is seeded
    assert not torch.allclose(part.b_dec, every.b_dec)  # fitted to its 10 rows, not to all of them
    assert not torch.equal(untrained_baseline(cfg, x, seed=8, sample_rows=10).b_dec, part.b_dec)


@pytest.mark.parametrize(("sae", "message"), [({"d_in": 10**9, "expansion": 10**6, "k": 1}, "do not match the config's shapes"),
                                              ({"d_in": "8", "k": 4}, "malformed sae config"),
                                              (["d_in"], "malformed sae config")])
def test_a_damaged_config_is_a_data_error_before_the_sae_is_built(tmp_path, sae: object, message: str) -> None:
    # a config asking for 10^15 weights must be refused, not allocated
    import json

    _random_sae().float().save(tmp_path)
    meta = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps(meta | {"sae": sae}))
    with pytest.raises(DataError, match=message):
        TopKSAE.load(tmp_path)
