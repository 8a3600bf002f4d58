"""GRPO loss and advantages against hand-computed cases."""

import math

import torch

from giftlab.losses import group_advantages, grpo_loss, kl_estimate


def test_group_advantages_centre_and_zero_variance_groups_are_zero():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(
        group_advantages(r), torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
    )
    norm = group_advantages(r, normalize_std=True)
    assert torch.isfinite(norm).all() and torch.all(norm[1] == 0)
    torch.testing.assert_close(norm[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), rtol=1e-5, atol=1e-5)


def test_grpo_loss_hand_case_with_clipping_on_both_sides_and_mask():
    # sequence 0: A = +1, ratios 1.5 (clipped to 1.2) and 1.0; sequence 1: A = -1, ratios 0.5 (clipped to 0.8), masked token
    old = torch.zeros(2, 2, dtype=torch.float64)
    logp = torch.log(torch.tensor([[1.5, 1.0], [0.5, 3.0]], dtype=torch.float64)).requires_grad_(
        True
    )
    mask = torch.tensor([[True, True], [True, False]])
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    loss, stats = grpo_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    # tokens: -min(1.5, 1.2) = -1.2; -min(1.0, 1.0) = -1.0; -min(-0.5, -0.8) = 0.8  -> mean over 3
    torch.testing.assert_close(loss, torch.tensor((-1.2 - 1.0 + 0.8) / 3, dtype=torch.float64))
    torch.testing.assert_close(stats["clip_frac"], torch.tensor(2 / 3, dtype=torch.float64))
    loss.backward()
    # clipped tokens and the masked token get no gradient; the unclipped one: -A * rho / 3
    torch.testing.assert_close(
        logp.grad, torch.tensor([[0.0, -1.0 / 3], [0.0, 0.0]], dtype=torch.float64)
    )


def test_kl_estimators_and_kl_term():
    logp = torch.log(torch.tensor([[0.5, 0.2]]))
    ref = torch.log(torch.tensor([[0.25, 0.4]]))
    k1 = kl_estimate(logp, ref, "k1")
    k3 = kl_estimate(logp, ref, "k3")
    torch.testing.assert_close(k1, torch.tensor([[math.log(2), math.log(0.5)]]))
    torch.testing.assert_close(
        k3, torch.tensor([[0.5 - math.log(0.5) - 1, 2.0 - math.log(2.0) - 1]])
    )
    mask = torch.ones(1, 2, dtype=torch.bool)
    base, _ = grpo_loss(logp, logp, torch.zeros(1), mask, ref_logp=ref)
    with_kl, stats = grpo_loss(logp, logp, torch.zeros(1), mask, kl_coef=0.1, ref_logp=ref)
    torch.testing.assert_close(with_kl - base, 0.1 * k3.mean())
    torch.testing.assert_close(stats["kl"], k3.mean())


def test_rows_with_zero_advantage_can_be_left_out_given_the_batch_token_count():
    """kl_coef = 0: the rows with A != 0 and n_tokens = the whole batch's count give the whole
    batch's loss and gradient, at ratios away from 1 too (clipped and unclipped)."""
    g = torch.Generator().manual_seed(0)
    logp = (torch.randn(6, 5, generator=g, dtype=torch.float64) * 0.3).requires_grad_(True)
    old = torch.randn(6, 5, generator=g, dtype=torch.float64) * 0.3
    adv = torch.tensor([0.5, 0.0, -0.5, 0.0, 0.0, 1.0], dtype=torch.float64)
    mask = torch.rand(6, 5, generator=g) > 0.3
    full, _ = grpo_loss(logp, old, adv, mask)
    (grad_full,) = torch.autograd.grad(full, logp)
    rows = adv != 0
    part, _ = grpo_loss(logp[rows], old[rows], adv[rows], mask[rows], n_tokens=mask.sum())
    (grad_part,) = torch.autograd.grad(part, logp)
    torch.testing.assert_close(part, full)
    torch.testing.assert_close(grad_part, grad_full)
    assert not torch.allclose(part, grpo_loss(logp[rows], old[rows], adv[rows], mask[rows])[0])
