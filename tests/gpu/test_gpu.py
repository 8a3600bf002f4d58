"""Checks that need a CUDA device (skipped without one; `scripts/gpu_check.py` runs them): the
compiled Triton kernel at a real vocabulary in bf16 against the torch chunk, the automatic kernel
choice, the chunk size from free memory, and trainer steps with bf16 weights, SDPA and gradient
checkpointing."""

import math

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _head(n, h, v, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    hid = (torch.randn(n, h, generator=g) / 2).cuda().to(dtype).requires_grad_(True)
    w = (torch.randn(v, h, generator=g) / math.sqrt(h)).cuda().to(dtype).requires_grad_(True)
    rh = (torch.randn(n, h, generator=g) / 2).cuda().to(dtype)
    rw = (torch.randn(v, h, generator=g) / math.sqrt(h)).cuda().to(dtype)
    labels = torch.randint(0, v, (n,), generator=g).cuda()
    labels[::7] = -100
    return hid, w, rh, rw, labels


@pytest.mark.parametrize("beta", [0.0, 5.0, 20.0, math.inf])
def test_triton_head_equals_torch_head_at_a_real_vocabulary_in_bf16(beta):
    from giftlab.losses import fused_linear_gift_loss

    hid, w, rh, rw, labels = _head(512, 256, 151_936, torch.bfloat16)
    out = {}
    for kernel in ("torch", "triton"):
        loss = fused_linear_gift_loss(
            hid,
            w,
            labels,
            ref_hidden=rh,
            ref_weight=rw,
            beta=beta,
            smoothing=0.01,
            chunk_size=128,
            kernel=kernel,
        )
        out[kernel] = (loss, *torch.autograd.grad(loss, (hid, w)))
    # both take the same bf16 products; they differ in float32 summation order and in the bf16
    # rounding of the gradient before its products: a few bf16 ulps
    torch.testing.assert_close(out["triton"][0], out["torch"][0], rtol=1e-4, atol=1e-4)
    for a, b in zip(out["triton"][1:], out["torch"][1:]):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=1e-5)


def test_auto_chooses_the_triton_kernel_on_cuda():
    from giftlab.losses.fused import _chunk_fn
    from giftlab.losses.triton_gift import triton_chunk

    assert _chunk_fn("auto", torch.device("cuda")) is triton_chunk


def test_chunk_size_comes_from_free_memory():
    from giftlab.losses import default_chunk_size

    free, _ = torch.cuda.mem_get_info()
    chunk = default_chunk_size(151_936, torch.device("cuda"))
    assert 8 <= chunk <= 2**26 // 151_936
    assert chunk * 151_936 * 4 * 4 <= free // 4 + 151_936 * 16


def test_trainer_steps_with_bf16_weights_sdpa_and_checkpointing(tmp_path):
    from giftlab.models import tiny_llama, tiny_tokenizer
    from giftlab.train import TrainConfig, train
    from tests.helpers import write_jsonl

    tok = tiny_tokenizer()
    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(6) for b in range(4)]
    data = write_jsonl(tmp_path / "t.jsonl", rows)
    model = tiny_llama(len(tok))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(
        model="tiny",
        train_file=str(data),
        val_file="",
        out_dir=str(tmp_path / "run"),
        max_steps=3,
        batch_size=4,
        lr=1e-2,
        bf16_weights=True,
        grad_checkpointing=True,
        diag_every=1,
        save_every=0,
        save_final=False,
        progress=False,
        beta=5.0,
    )
    last = train(cfg, model=model, tokenizer=tok)
    assert next(model.parameters()).dtype == torch.bfloat16 and next(model.parameters()).is_cuda
    assert math.isfinite(last["loss/train"]) and 0 <= last["diag/gate_w"] <= 1
    moved = sum(
        not torch.equal(before[k].cuda().to(v.dtype), v) for k, v in model.state_dict().items()
    )
    assert moved > 0
