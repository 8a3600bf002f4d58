"""Bad arguments to the public losses: a ValueError naming the argument and its allowed range,
never a NaN, a negative loss or a broadcast that silently means something else."""

import pytest
import torch

from giftlab.losses import (
    asft_loss,
    gift_loss,
    group_advantages,
    grpo_loss,
    kd_to_base_loss,
    psft_loss,
    sft_entropy_loss,
    sft_loss,
)

Z = torch.randn(2, 3, 5)
Y = torch.randint(0, 5, (2, 3))
OLD = torch.zeros(2, 3)
NAN = float("nan")

CASES = [
    (lambda: gift_loss(Z, None, Y), r"ref_logits is required .* got None"),
    (lambda: kd_to_base_loss(Z, None, Y), r"ref_logits is required"),
    (lambda: asft_loss(Z, None, Y), r"ref_logits is required"),
    (
        lambda: sft_loss(Z, None, Y[:, :2]),
        r"labels has shape \(2, 2\).*need labels of shape \(2, 3\)",
    ),
    (lambda: sft_loss(Z, None, Y.reshape(-1)), r"labels has shape \(6,\)"),
    (lambda: gift_loss(Z, Z, Y.reshape(-1)), r"labels has shape \(6,\)"),
    (lambda: sft_entropy_loss(Z, None, Y, alpha=-0.1), r"alpha must be a finite number >= 0"),
    (
        lambda: sft_entropy_loss(Z, None, Y, alpha=NAN),
        r"alpha must be a finite number >= 0, got nan",
    ),
    (lambda: asft_loss(Z, Z, Y, alpha=-1.0), r"alpha must be a finite number >= 0"),
    (lambda: psft_loss(Z, None, Y, old_logp=OLD, clip_low=-1), r"clip_low must be in \[0, 1\)"),
    (lambda: psft_loss(Z, None, Y, old_logp=OLD, clip_high=NAN), r"clip_high must be a finite"),
    (lambda: group_advantages(torch.tensor([[1.0, NAN]])), r"group 0, sample 1 is nan"),
    (
        lambda: grpo_loss(OLD, OLD, torch.tensor([NAN, 1.0]), torch.ones(2, 3, dtype=torch.bool)),
        r"advantages must be finite",
    ),
]


@pytest.mark.parametrize("call, message", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_loss_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_valid_neighbours_of_the_bad_arguments_give_finite_non_negative_losses():
    for loss in (
        sft_entropy_loss(Z, None, Y, alpha=0.0),
        asft_loss(Z, Z, Y, alpha=0.0),
        gift_loss(Z, Z, Y),
    ):
        assert torch.isfinite(loss) and loss >= 0
    # PSFT is -min(r, clip(r)): -1 at r = 1 on every token (a negative loss by design)
    psft = psft_loss(Z, None, Y, old_logp=torch.log_softmax(Z, -1).gather(-1, Y[..., None])[..., 0])
    torch.testing.assert_close(psft, torch.tensor(-1.0))
