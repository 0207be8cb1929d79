from __future__ import annotations

import numpy as np
import pytest
import torch

from recsae.errors import ConfigError
from recsae.steer.edit import (
    Ablate,
    AblateRandomActive,
    AddDirection,
    Chain,
    Clamp,
    Mix,
    Scale,
    apply,
    latent_delta,
    steered_score_fn,
)


def _batch(world) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    users = torch.arange(1, 41)
    seqs = torch.zeros(40, 3, dtype=torch.long)
    return users, seqs, world.model.represent(users, seqs)

def _inactive_latent(world, h: torch.Tensor) -> int:
    z = world.sae.dense_latents(h)
    return int(torch.nonzero((z == 0).all(dim=0))[0, 0])

@pytest.mark.parametrize(
    "edit",
    [Scale((0, 3), 1.0), Mix((0, 1), 0.0), AddDirection((0,), 0.0), Chain(()), Clamp((0,), 0.0)],
    ids=["scale-1", "mix-0", "add-0", "empty-chain", "clamp-inactive"],
)
def test_edit_that_changes_nothing_returns_original_scores_bitwise(world, edit) -> None:
    users, seqs, h = _batch(world)
    if isinstance(edit, Clamp):
        edit = Clamp((_inactive_latent(world, h),), 0.0)
    original = world.model.score(world.model.represent(users, seqs))
    steered = steered_score_fn(world.model, world.sae, edit)(users, seqs)
    assert torch.equal(apply(world.sae, h, edit), h)
    assert torch.equal(steered, original)

def test_ablating_an_inactive_latent_changes_nothing(world) -> None:
    _, _, h = _batch(world)
    j = _inactive_latent(world, h)
    assert torch.equal(apply(world.sae, h, Ablate((j,))), h)

def test_ablation_removes_exactly_the_latents_decoder_contribution(world) -> None:
    _, _, h = _batch(world)
    z = world.sae.dense_latents(h)
    expected = h - z[:, [0]] * world.sae.W_dec[0]
    assert torch.allclose(apply(world.sae, h, Ablate((0,))), expected, atol=1e-6)
    assert (z[:, 0] > 0).any()  # the case is not vacuous

def test_edits_keep_the_reconstruction_error(world) -> None:
    _, _, h = _batch(world)
    sae = world.sae
    for edit in (Ablate((0, 1)), Scale((2,), 3.0), Mix((0,), 0.4), AddDirection((1,), 0.2)):
        z = sae.dense_latents(h)
        z_new = edit.edit_latents(z, h)
        h_new = apply(sae, h, edit)
        err_before = h - (z @ sae.W_dec + sae.b_dec)
        err_after = h_new - (z_new @ sae.W_dec + sae.b_dec)
        assert torch.allclose(err_before, err_after, atol=1e-5)

def test_mix_preserves_activation_mass(world) -> None:
    _, _, h = _batch(world)
    z = world.sae.dense_latents(h)
    for alpha in (0.1, 0.5, 1.0):
        z_new = Mix((0, 7), alpha).edit_latents(z, h)
        assert torch.allclose(z_new.sum(dim=1), z.sum(dim=1), rtol=1e-5)
    full = Mix((0, 7), 1.0).edit_latents(z, h)
    assert torch.allclose(full[:, 0], z.sum(dim=1) / 2) and torch.allclose(full[:, 7], z.sum(dim=1) / 2)
    assert torch.count_nonzero(full[:, [j for j in range(z.shape[1]) if j not in (0, 7)]]) == 0

def test_add_direction_adds_alpha_times_norm_times_summed_decoder_rows(world) -> None:
    _, _, h = _batch(world)
    alpha = 0.3
    expected = h + alpha * h.norm(dim=1, keepdim=True) * (world.sae.W_dec[0] + world.sae.W_dec[4])
    assert torch.allclose(apply(world.sae, h, AddDirection((0, 4), alpha)), expected, atol=1e-5)

def test_scale_and_clamp_set_the_latent_values(world) -> None:
    _, _, h = _batch(world)
    z = world.sae.dense_latents(h)
    assert torch.equal(Scale((0,), 2.5).edit_latents(z, h)[:, 0], 2.5 * z[:, 0])
    clamped = Clamp((3, 4), 1.25).edit_latents(z, h)
    assert torch.all(clamped[:, [3, 4]] == 1.25)
    delta = latent_delta(world.sae, h, Clamp((3,), 1.25))
    assert torch.equal(delta[:, 3], 1.25 - z[:, 3])

def test_chain_applies_edits_in_order(world) -> None:
    _, _, h = _batch(world)
    z = world.sae.dense_latents(h)
    chained = Chain((Scale((0,), 2.0), Ablate((0,)))).edit_latents(z, h)
    assert torch.all(chained[:, 0] == 0)
    reversed_ = Chain((Ablate((0,)), Clamp((0,), 1.0))).edit_latents(z, h)
    assert torch.all(reversed_[:, 0] == 1.0)

def test_random_active_ablation_drops_count_active_latents_per_row_never_excluded(world) -> None:
    _, _, h = _batch(world)
    z = world.sae.dense_latents(h)
    edit = AblateRandomActive(count=2, exclude=(0,), seed=3)
    z_new = edit.edit_latents(z, h)
    eligible = ((z > 0).sum(dim=1) - (z[:, 0] > 0).long()).clamp(max=2)
    assert torch.equal(((z > 0) & (z_new == 0)).sum(dim=1), eligible)
    assert torch.equal(z_new[:, 0], z[:, 0])
    assert torch.equal(z_new, edit.edit_latents(z, h))  # seeded: same draw again
    assert not torch.equal(z_new, AblateRandomActive(2, (0,), seed=4).edit_latents(z, h))

def test_unknown_latent_or_bad_strength_is_a_config_error(world) -> None:
    _, _, h = _batch(world)
    with pytest.raises(ConfigError, match="out of range"):
        apply(world.sae, h, Ablate((world.sae.cfg.m,)))
    with pytest.raises(ConfigError, match="alpha"):
        Mix((0,), 1.5)
    with pytest.raises(ConfigError, match="at least one latent"):
        Scale((), 0.0)
    with pytest.raises(ConfigError, match="distinct"):
        Ablate((1, 1))


@pytest.mark.parametrize("edit", [Scale, Clamp, AddDirection, Mix])
@pytest.mark.parametrize("strength", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_strength_is_a_config_error(edit: type, strength: float) -> None:
    # NaN or infinite strengths would make every score NaN and give all users one arbitrary list
    with pytest.raises(ConfigError, match=r"finite|alpha must be in"):
        edit((0,), strength)

def test_apply_is_batched_row_independent(world) -> None:
    _, _, h = _batch(world)
    edit = AddDirection((0, 1), 0.2)
    full = apply(world.sae, h, edit)
    parts = torch.cat([apply(world.sae, h[:7], edit), apply(world.sae, h[7:], edit)])
    np.testing.assert_allclose(full.numpy(), parts.numpy(), atol=1e-6)


def test_apply_with_the_codes_the_caller_kept_equals_encoding_again_bitwise(world) -> None:
    _, _, h = _batch(world)
    edit = Chain((AddDirection((0, 1), 0.2), Scale((2,), 0.0)))
    codes = tuple(world.sae.encode(h))[:2]
    assert torch.equal(apply(world.sae, h, edit, codes), apply(world.sae, h, edit))
    assert torch.equal(latent_delta(world.sae, h, edit, codes), latent_delta(world.sae, h, edit))
