"""Build the policy and the reference the trainer runs: dtype (bf16 on any device), LoRA, the
frozen reference copy, the head self-check (giftlab.models.head.check_head), gradient
checkpointing, and the DDP / FSDP2 wrapping."""

from __future__ import annotations

import copy

import torch

from giftlab.engine.objective import CausalLMBody, Engine, Models
from giftlab.errors import InputError
from giftlab.models import check_same_vocabulary, load_model
from giftlab.models.head import check_head, lm_head


def build_engine(cfg, *parts, **keywords) -> Engine:
    """The engine the training loop runs: Engine(settings=cfg, models=build_models(cfg, ...))
    (parts: build_models's model, ref_model, tokenizer, device, mode and ref_cache)."""
    return Engine(settings=cfg, models=build_models(cfg, *parts, **keywords))


def build_models(cfg, model, ref_model, tokenizer, *, device, mode, ref_cache=None) -> Models:
    """The policy and the reference (none with `ref_cache`, a giftlab.engine.cache.RefCache: the
    reference's distribution is read from it, and memory is SFT's)."""

    dtype = torch.bfloat16 if cfg.bf16_weights else None
    ref_dtype = torch.bfloat16 if (cfg.bf16 or cfg.bf16_weights) else None
    attn = {"attn_implementation": getattr(cfg, "attn_implementation", "auto")}
    policy = model if model is not None else load_model(cfg.model, dtype=dtype, **attn)
    if dtype is not None:
        policy.to(dtype)
    lora = cfg.lora_rank > 0
    if lora:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(
            policy,
            LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules="all-linear"),
        )
        ref_model = policy  # same weights, adapters disabled in Models.ref_context
    elif ref_cache is not None:
        ref_model = None
    else:
        if ref_model is None:
            ref_model = (
                load_model(cfg.ref_model, dtype=ref_dtype, **attn)
                if cfg.ref_model
                else frozen_copy(policy)
            )
        ref_model.requires_grad_(False).eval()
        if ref_dtype is not None:  # the reference only runs forward: bf16 halves its memory
            ref_model.to(ref_dtype)
    if ref_model is not None:
        check_same_vocabulary(
            policy,
            ref_model,
            (f"model={cfg.model}", f"ref_model={cfg.ref_model or cfg.model}"),
            tokenizer,
        )
    elif ref_cache.manifest["vocab"] != lm_head(policy).weight.shape[0]:
        raise InputError(
            f"ref_cache={cfg.ref_cache} holds a vocabulary of {ref_cache.manifest['vocab']}, "
            f"model={cfg.model} one of {lm_head(policy).weight.shape[0]}"
        )
    if cfg.grad_checkpointing:
        policy.gradient_checkpointing_enable()
    policy.to(device).train()
    if ref_model is not None and not lora:
        ref_model.to(device)
    if mode != "fsdp":  # FSDP takes its logits from the model's own forward
        check_head(policy, name=f"model={cfg.model}")
        if ref_model is not None and not lora:
            check_head(ref_model, name=f"ref_model={cfg.ref_model or cfg.model}")
    body = CausalLMBody(policy)
    ref_body = body if lora else (CausalLMBody(ref_model) if ref_model is not None else None)
    if mode == "ddp":
        body = torch.nn.parallel.DistributedDataParallel(
            body, device_ids=[device.index] if device.type == "cuda" else None
        )
    elif mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in policy.get_decoder().layers:
            fully_shard(layer)
        fully_shard(policy)
    return Models(
        policy=policy,
        body=body,
        ref=ref_model,
        ref_body=ref_body,
        lora=lora,
        fsdp=mode == "fsdp",
        ref_cache=ref_cache,
    )


def frozen_copy(model):
    """A copy of the model on its own device (whatever torch's default device is)."""
    with torch.device(next(model.parameters()).device):
        return copy.deepcopy(model)
