"""SAE metrics: FVU closed-form cases, batch-size independence, frequencies and histogram."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsae.sae import SaeConfig, TopKSAE
from recsae.sae.metrics import (
    RunningFvu,
    cosine,
    evaluate_sae,
    frequency_histogram,
    fvu,
    l0,
    latent_counts,
)


def _x(n: int = 500, d: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * 2 + 10  # a large mean, as in real activations


def test_fvu_mean_predictor_is_one_identity_is_zero() -> None:
    x = _x()
    assert fvu(x, x) == 0.0
    assert fvu(x, x.mean(0).expand_as(x)) == pytest.approx(1.0, abs=1e-12)
    assert fvu(x, torch.zeros_like(x), mean=torch.zeros(6)) == pytest.approx(1.0)


@pytest.mark.parametrize("batch", [1, 7, 64, 500])
def test_running_fvu_does_not_depend_on_batch_size(batch: int) -> None:
    x = _x()
    x_hat = x + 0.3 * torch.randn_like(x)
    run = RunningFvu()
    for s in range(0, len(x), batch):
        run.update(x[s : s + batch], x_hat[s : s + batch])
    assert run.value() == pytest.approx(fvu(x, x_hat), rel=1e-10)
    # the mean predictor of the whole set still gives exactly 1, batch by batch
    run1 = RunningFvu()
    mu = x.double().mean(0)
    for s in range(0, len(x), batch):
        run1.update(x[s : s + batch], mu.expand(len(x[s : s + batch]), -1))
    assert run1.value() == pytest.approx(1.0, rel=1e-10)


def test_cosine_and_l0() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert cosine(x, 3 * x) == pytest.approx(1.0)
    assert cosine(x, -x) == pytest.approx(-1.0)
    assert l0(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 5.0]])) == pytest.approx(1.5)


def test_latent_counts_ignore_zero_activations() -> None:
    acts = torch.tensor([[1.0, 0.0], [2.0, 3.0]])
    idx = torch.tensor([[0, 1], [0, 2]])
    assert latent_counts(acts, idx, 4).tolist() == [2, 0, 1, 0]


def test_frequency_histogram_counts_every_latent() -> None:
    freq = np.array([0.0, 0.0, 1e-3, 0.02, 0.5, 1.0])
    h = frequency_histogram(freq)
    assert h["never_active"] == 2
    assert sum(h["counts"]) == 4
    assert h["counts"][-1] >= 1  # frequency 1 lands in the last bin


@pytest.mark.parametrize("batch", [3, 50, 1000])
def test_evaluate_sae_batch_size_invariant(batch: int) -> None:
    sae = TopKSAE(SaeConfig(d_in=6, n_latents=24, k=3), seed=1)
    x = _x(200)
    sae.init_b_dec_from_data(x)
    ref = evaluate_sae(sae, x, batch_size=200)
    m = evaluate_sae(sae, x.numpy(), batch_size=batch)
    # float32 products may round differently per batch shape; the statistic itself is exact
    assert m.fvu == pytest.approx(ref.fvu, rel=1e-6)
    assert m.cosine == pytest.approx(ref.cosine, rel=1e-6)
    assert m.latent_freq == ref.latent_freq
    assert m.n_rows == 200 and m.l0 == pytest.approx(3.0)
    assert m.dead_fraction == pytest.approx(float(np.mean(np.array(ref.latent_freq) == 0)))


def test_evaluate_identity_sae_has_zero_fvu() -> None:
    # latents ±e_i read and write each coordinate; k = d reconstructs x exactly.
    d = 4
    sae = TopKSAE(SaeConfig(d_in=d, n_latents=2 * d, k=d))
    with torch.no_grad():
        w = torch.cat([torch.eye(d), -torch.eye(d)])
        sae.W_enc.copy_(w)
        sae.W_dec.copy_(w)
    x = _x(100, d) - 10
    m = evaluate_sae(sae, x)
    assert m.fvu == pytest.approx(0.0, abs=1e-12)
    assert m.cosine == pytest.approx(1.0)
    assert m.dense_fraction == 1.0  # each ±e_i fires on about half the rows
