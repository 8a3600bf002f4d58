"""Distributed set-up and state for the loops: the process group from torchrun's environment,
sums across processes, and the FSDP2 state (full weights, per-rank optimiser shards) that
checkpoints hold. One process: every function is the identity or a plain call."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from giftlab.errors import InputError
from giftlab.runtime.rundir import load_weights


def default_device() -> torch.device:
    """The device a single-process run uses: the first CUDA device when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def precision(bf16: bool, device: torch.device):
    """bf16 autocast on `device` (CUDA or CPU: torch runs bfloat16 on both), else a no-op."""
    from contextlib import nullcontext

    return torch.autocast(device.type, torch.bfloat16) if bf16 else nullcontext()


def dist_setup():
    """(rank, world, device, mode) from torchrun's environment; mode: none, ddp or fsdp."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    if world == 1:
        return 0, 1, device, "none"
    mode = os.environ.get("GIFTLAB_DISTRIBUTED", "ddp")
    if mode not in ("ddp", "fsdp"):
        raise InputError(f"GIFTLAB_DISTRIBUTED must be ddp or fsdp, got {mode!r}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return dist.get_rank(), world, device, mode


def all_sum(x: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(x)
    return x


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _local(p):
    return p.to_local() if hasattr(p, "to_local") else p


def full_weights(m):
    """FSDP: the gathered full state dict (every rank takes part); otherwise None (the model's own)."""
    if not m.fsdp:
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    weights = get_model_state_dict(
        m.policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    if getattr(
        m.policy.config, "tie_word_embeddings", False
    ):  # saved once, as save_pretrained does
        for tied in getattr(m.policy, "_tied_weights_keys", None) or {}:
            weights.pop(tied, None)
    return weights


def optimizer_state(m, opt):
    """The optimiser state to checkpoint. DDP ranks hold the same state; FSDP ranks each hold
    their shard, so every rank's (as plain CPU tensors) is gathered into one list by rank."""
    if not m.fsdp:
        return opt.state_dict()
    local = _map_tensors(opt.state_dict(), lambda t: _local(t).detach().cpu())
    shards = [None] * dist.get_world_size()
    dist.all_gather_object(shards, local)
    return {"fsdp_rank_shards": shards}


def load_optimizer_state(m, opt, state):
    if not m.fsdp:
        opt.load_state_dict(state)
        return
    shards = state["fsdp_rank_shards"]
    if len(shards) != dist.get_world_size():
        raise InputError(
            f"--resume: the checkpoint holds {len(shards)} optimiser shards, not "
            f"{dist.get_world_size()}"
        )
    opt.load_state_dict(shards[dist.get_rank()])
    from torch.distributed.tensor import DTensor

    for p, st in opt.state.items():  # re-wrap each shard like its parameter
        if not isinstance(p, DTensor):
            continue
        for k, v in st.items():
            if torch.is_tensor(v) and not isinstance(v, DTensor) and v.dim() > 0:
                st[k] = DTensor.from_local(
                    v.to(p.device),
                    p.device_mesh,
                    p.placements,
                    run_check=False,
                    shape=p.shape,
                    stride=p.stride(),
                )


def _map_tensors(x, fn):
    if torch.is_tensor(x):
        return fn(x)
    if isinstance(x, dict):
        return {k: _map_tensors(v, fn) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_map_tensors(v, fn) for v in x)
    return x


def load_model_state(m, weights):
    if m.fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(
            m.policy, weights, options=StateDictOptions(full_state_dict=True, strict=False)
        )
        return
    load_weights(m.policy, weights, m.lora)
