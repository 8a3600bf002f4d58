"""Each baseline against its formula in paper-notes.md, written plainly here (value and gradient)."""

import pytest
import torch
import torch.nn.functional as F

from giftlab.losses import (
    OBJECTIVES,
    asft_loss,
    dft_loss,
    label_smoothing_loss,
    ppo_clip_token_loss,
    psft_loss,
    sft_entropy_loss,
    sft_loss,
)

# float64 paths held to each other or to the naive formula at 1e-9 or tighter: CI also runs
# them under other CPU capabilities (make test-exact-cpus)
pytestmark = pytest.mark.exact


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(3)
    z = (torch.randn(3, 4, 17, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    zr = torch.randn(3, 4, 17, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, 17, (3, 4), generator=g)
    labels[1, :2] = -100
    return z, zr, labels


def _mean(per_token, labels):
    keep = labels != -100
    return per_token[keep].mean()


def _gold(t, labels):
    return t.gather(-1, torch.where(labels != -100, labels, 0)[..., None]).squeeze(-1)


def test_sft_equals_torch_cross_entropy(batch):
    z, _, labels = batch
    torch.testing.assert_close(
        sft_loss(z, None, labels), F.cross_entropy(z.reshape(-1, 17), labels.reshape(-1))
    )


def test_label_smoothing_equals_torch(batch):
    z, _, labels = batch
    torch.testing.assert_close(
        label_smoothing_loss(z, None, labels, eps=0.1),
        F.cross_entropy(z.reshape(-1, 17), labels.reshape(-1), label_smoothing=0.1),
    )


def test_sft_entropy_is_ce_minus_alpha_entropy(batch):
    z, _, labels = batch
    p = torch.softmax(z, -1)
    h = -(p * torch.log(p)).sum(-1)
    naive = _mean(-torch.log(_gold(p, labels)) - 0.05 * h, labels)
    torch.testing.assert_close(sft_entropy_loss(z, None, labels, alpha=0.05), naive)


def test_dft_value_and_stop_gradient(batch):
    z, _, labels = batch
    loss = dft_loss(z, None, labels)
    p_gold = _gold(torch.softmax(z, -1), labels)
    torch.testing.assert_close(loss, _mean(-p_gold * torch.log(p_gold), labels))
    (grad,) = torch.autograd.grad(loss, z)
    # d/dz [-sg(p) log p] = -sg(p) (onehot - softmax), per token / count
    keep = labels != -100
    onehot = F.one_hot(torch.where(keep, labels, 0), 17).double()
    expected = -p_gold.detach()[..., None] * (onehot - torch.softmax(z.detach(), -1)) / keep.sum()
    torch.testing.assert_close(grad, torch.where(keep[..., None], expected, 0.0))


def test_asft_adds_full_vocabulary_kl_to_base(batch):
    z, zr, labels = batch
    p, p0 = torch.softmax(z, -1), torch.softmax(zr, -1)
    kl = (p0 * (torch.log(p0) - torch.log(p))).sum(-1)
    p_gold = _gold(p, labels)
    naive = _mean(-p_gold.detach() * torch.log(p_gold) + 0.3 * kl, labels)
    torch.testing.assert_close(asft_loss(z, zr, labels, alpha=0.3), naive)
    (g1,) = torch.autograd.grad(asft_loss(z, zr, labels, alpha=0.3), z)
    (g2,) = torch.autograd.grad(naive, z)
    torch.testing.assert_close(g1, g2)


def test_ppo_clip_hand_cases_both_sides():
    logp = torch.log(torch.tensor([1.5, 0.5, 1.1, 0.9, 1.5, 0.5], dtype=torch.float64))
    old = torch.zeros(6, dtype=torch.float64)
    adv = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    loss, clipped = ppo_clip_token_loss(logp, old, adv, clip_low=0.2, clip_high=0.3)
    # r = 1.5, A = +1: min(1.5, 1.3) = 1.3 (clipped); r = 0.5, A = +1: min(0.5, 0.8) = 0.5
    # r = 1.1 and 0.9 inside; r = 1.5, A = -1: min(-1.5, -1.3) = -1.5; r = 0.5, A = -1: min(-0.5, -0.8) = -0.8 (clipped)
    torch.testing.assert_close(
        loss, torch.tensor([-1.3, -0.5, -1.1, -0.9, 1.5, 0.8], dtype=torch.float64)
    )
    assert clipped.tolist() == [True, False, False, False, False, True]


def test_psft_is_ppo_clip_with_unit_advantage(batch):
    z, _, labels = batch
    gold = _gold(torch.log_softmax(z, -1), labels).detach()
    old = gold + torch.linspace(-0.5, 0.5, gold.numel(), dtype=torch.float64).reshape(gold.shape)
    r = torch.exp(_gold(torch.log_softmax(z, -1), labels) - old)
    naive = _mean(-torch.minimum(r, r.clamp(0.8, 1.2)), labels)
    torch.testing.assert_close(psft_loss(z, None, labels, old_logp=old), naive)
    with pytest.raises(ValueError, match="old_logp has shape"):
        psft_loss(z, None, labels, old_logp=old[:1])


def test_every_objective_runs_with_one_calling_convention(batch):
    z, zr, labels = batch
    old = _gold(torch.log_softmax(z, -1), labels).detach()
    for name, obj in OBJECTIVES.items():
        kwargs = {"old_logp": old} if obj.needs_old_logp else {}
        loss = obj.loss(z, zr if obj.needs_ref else None, labels, **kwargs)
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), name
        assert torch.all(grad[labels == -100] == 0), name
