"""The SFT / GIFT / baselines training loop: one explicit loop, no trainer class.

    for each optimiser step:
        take grad_accum micro-batches (each process its slice of the global batch)
        loss = sum over response tokens of the objective / response tokens in the global batch
        backward, clip, AdamW step, schedule step
        log loss/, perf/ (and diag/ every diag_every steps), validate, checkpoint

Run it directly (`giftlab train`) or under torchrun (DDP by default; FSDP2 with
GIFTLAB_DISTRIBUTED=fsdp). The run folder (claiming, locking, checkpoints, resume) is
giftlab.runtime.RunDir; the objective and its hyper-parameters come from giftlab.losses.OBJECTIVES.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from giftlab.data import collate, encode_records, read_records
from giftlab.diagnostics import summarize_token_stats, topk_overlap
from giftlab.errors import InputError, NonFiniteError
from giftlab.losses import (
    OBJECTIVES,
    Objective,
    fused_linear_gift_loss,
    fused_linear_sequence_consistent_gift_loss,
    gift_token_stats,
    sequence_gains_from_logits,
)
from giftlab.provenance import provenance
from giftlab.runtime import (
    DataOrder,
    RunDir,
    check_resume_config,
    load_weights,
    progress_bar,
    rng_state,
    seed_all,
    set_rng_state,
)
from giftlab.train.config import TrainConfig

NonFiniteLossError = NonFiniteError  # the name earlier versions raised

# A resumed run must keep its world size (its settings: TrainConfig.RESUME_MUTABLE, RunDir).
RESUME_KEYS = ("world_size",)


# -- distributed ----------------------------------------------------------------------------------


def _dist_setup():
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


def _all_sum(x: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(x)
    return x


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


# -- model pieces ---------------------------------------------------------------------------------


class CausalLMBody(torch.nn.Module):
    """The model without its head: forward returns the final hidden states (B, T, H). Wrapped by
    DDP, so that the chunked loss can use the lm_head weight directly."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def _base(self):
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def head(self):
        return self._base().get_output_embeddings()

    def forward(self, input_ids, attention_mask):
        decoder = self._base().get_decoder()
        return decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


@dataclass
class Models:
    """The policy and the reference as the objective sees them."""

    policy: torch.nn.Module  # the HF model (FSDP-sharded in fsdp mode)
    body: torch.nn.Module  # CausalLMBody(policy), DDP-wrapped in ddp mode
    ref: torch.nn.Module  # the reference HF model (the policy itself with LoRA)
    ref_body: CausalLMBody
    lora: bool
    fsdp: bool

    def head(self):
        return (self.body.module if hasattr(self.body, "module") else self.body).head()

    def ref_context(self):
        return self.ref.disable_adapter() if self.lora else nullcontext()


@dataclass
class Forward:
    """One micro-batch's pass, at the response positions only (n of them).

    hidden / ref_hidden: (n, H), or logits / ref_logits: (n, V) in FSDP mode (the sharded head
    is only whole inside the root's forward). labels, rows: (n,) gold ids and row of each token.
    """

    labels: torch.Tensor
    rows: torch.Tensor
    hidden: torch.Tensor | None = None
    ref_hidden: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    ref_logits: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.labels.shape[0]


def forward(m: Models, batch: dict, with_ref: bool) -> Forward:
    """Hidden states (or logits) at the response positions: only these reach the head, so its
    (tokens x V) work scales with response tokens, not with prompt length."""
    labels = batch["labels"][:, 1:]
    valid = labels != -100
    rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)[valid]
    f = Forward(labels=labels[valid], rows=rows)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if m.fsdp:
        f.logits = m.policy(input_ids=ids, attention_mask=mask).logits[:, :-1][valid]  # (n, V)
    else:
        f.hidden = m.body(ids, mask)[:, :-1][valid]  # (n, H)
    if with_ref:
        with torch.no_grad(), m.ref_context():
            if m.fsdp:
                f.ref_logits = m.ref(input_ids=ids, attention_mask=mask).logits[:, :-1][valid]
            else:
                f.ref_hidden = m.ref_body(ids, mask)[:, :-1][valid]
    return f


def objective_sum(cfg, obj: Objective, m: Models, f: Forward, stats: dict | None = None):
    """Sum over the response tokens of the objective's per-token loss (a scalar with gradient).

    The chunked fused form is used when the objective has one (and `cfg.chunked`); a GIFT fused
    pass fills `stats` with its per-token statistics (same target as the loss).
    """
    hyper = obj.hyper_values(cfg)
    labels = f.labels[None] if obj.per_sequence else f.labels
    if obj.per_sequence:  # gains reset at each row: a token's row is its segment
        hyper["segment_ids"] = f.rows[None]
    head = m.head()
    if cfg.chunked and obj.fused is not None and not m.fsdp:
        kw = {"bias": head.bias, "chunk_size": cfg.chunk_size or None, "kernel": cfg.kernel}
        if obj.needs_ref:
            ref_head = m.ref_body.head()
            kw |= {
                "ref_hidden": f.ref_hidden,
                "ref_weight": ref_head.weight.detach(),
                "ref_bias": _detached(ref_head.bias),
                "stats": stats,
            }
        return obj.fused(f.hidden, head.weight, labels, **kw, **hyper) * f.n
    logits = f.logits if m.fsdp else head(f.hidden)  # (n, V)
    ref_logits = None
    if obj.needs_ref:
        ref_logits = f.ref_logits if m.fsdp else m.ref_body.head()(f.ref_hidden)
    if obj.needs_old_logp:  # the sampling policy is the current one: ratio 1, gradient of r
        z = logits.detach()
        z = z if z.dtype == torch.float64 else z.float()  # the loss's own precision
        hyper["old_logp"] = torch.log_softmax(z, -1).gather(-1, f.labels[:, None])[:, 0]
    if obj.per_sequence:
        logits, ref_logits = logits[None], ref_logits[None]
    return obj.loss(logits, ref_logits, labels, reduction="sum", **hyper)


@torch.no_grad()
def token_stats(cfg, m: Models, f: Forward) -> dict:
    """Per-token statistics (n,) of the policy, the reference and the GIFT target the config
    describes (gift_seq: the exact gains at eta; otherwise beta), from this forward's hidden
    states: no model pass of its own."""
    per_sequence = cfg.objective == "gift_seq"
    if m.fsdp:
        beta = cfg.beta
        if per_sequence:
            beta = sequence_gains_from_logits(
                f.ref_logits[None], f.labels[None], cfg.eta, cfg.smoothing, segment_ids=f.rows[None]
            )[0]
        stats = gift_token_stats(f.logits, f.ref_logits, f.labels, beta, cfg.smoothing)
        stats["topk_overlap"] = topk_overlap(f.logits, f.ref_logits, cfg.top_k)
        return stats
    head, ref_head = m.head(), m.ref_body.head()
    stats = {}
    kw = {
        "ref_hidden": f.ref_hidden,
        "ref_weight": ref_head.weight,
        "ref_bias": ref_head.bias,
        "bias": head.bias,
        "smoothing": cfg.smoothing,
        "stats": stats,
        "kernel": cfg.kernel,
    }
    hidden = f.hidden.detach()
    if per_sequence:
        fused_linear_sequence_consistent_gift_loss(
            hidden,
            head.weight.detach(),
            f.labels[None],
            eta=cfg.eta,
            segment_ids=f.rows[None],
            **kw,
        )
    else:
        fused_linear_gift_loss(hidden, head.weight.detach(), f.labels, beta=cfg.beta, **kw)
    stats["topk_overlap"] = _topk_from_hidden(hidden, f.ref_hidden, head, ref_head, cfg.top_k)
    return stats


def _topk_from_hidden(hidden, ref_hidden, head, ref_head, k, rows=256):
    parts = [
        topk_overlap(head(hidden[s : s + rows]), ref_head(ref_hidden[s : s + rows]), k)
        for s in range(0, hidden.shape[0], rows)
    ]
    return torch.cat(parts) if parts else hidden.new_zeros(0)


def _detached(t):
    return None if t is None else t.detach()


# -- validation -----------------------------------------------------------------------------------


@torch.no_grad()
def validate(cfg, m: Models, examples, pad_id, device) -> dict:
    """Held-out means over response tokens of every statistic; val/ce is the one-hot CE."""
    sums, gates, n = {}, [], 0
    m.policy.eval()
    for s in range(0, len(examples), cfg.batch_size):
        batch = _to(collate(examples[s : s + cfg.batch_size], pad_id), device)
        f = forward(m, batch, with_ref=True)
        stats = token_stats(cfg, m, f)
        for k, t in stats.items():
            sums[k] = sums.get(k, 0.0) + float(t.double().sum())
        gates.append(stats["gate_w"].double())
        n += f.n
    m.policy.train()
    out = {f"val/{k}": v / max(n, 1) for k, v in sums.items()}
    out["val/ce"] = out.pop("val/ce_gold")
    w = torch.cat(gates)
    out["val/gate_w_frac_below_half"] = float((w < 0.5).double().mean()) if len(w) else 0.0
    out["val/tokens"] = n
    return out


# -- set-up ---------------------------------------------------------------------------------------


def _lr_lambda(cfg):
    def f(step):
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            span = max(1, cfg.max_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
        return 1.0

    return f


def _read(cfg, path, limit):
    return read_records(
        path, cfg.prompt_key, cfg.response_key, cfg.messages_key, limit=limit or None
    )


def _encode(cfg, records, tokenizer, path, log):
    examples, stats = encode_records(records, tokenizer, cfg.max_length, cfg.overlong)
    log(
        f"{path}: {stats.kept} examples, {stats.skipped_overlong} skipped as over-long, "
        f"{stats.truncated} truncated"
    )
    if not examples:
        raise InputError(
            f"{path}: every example was skipped (max_length={cfg.max_length}, overlong={cfg.overlong})"
        )
    return examples, stats


def _build_models(cfg, model, ref_model, tokenizer, device, mode) -> Models:
    from giftlab.models import check_same_vocabulary, load_model

    on_gpu = device.type == "cuda"
    dtype = torch.bfloat16 if (cfg.bf16_weights and on_gpu) else None
    ref_dtype = torch.bfloat16 if ((cfg.bf16 or cfg.bf16_weights) and on_gpu) else None
    attn = {"attn_implementation": cfg.attn_implementation}
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
    else:
        if ref_model is None:
            ref_model = (
                load_model(cfg.ref_model, dtype=ref_dtype, **attn)
                if cfg.ref_model
                else _frozen_copy(policy)
            )
        ref_model.requires_grad_(False).eval()
        if ref_dtype is not None:  # the reference only runs forward: bf16 halves its memory
            ref_model.to(ref_dtype)
    check_same_vocabulary(
        policy,
        ref_model,
        (f"model={cfg.model}", f"ref_model={cfg.ref_model or cfg.model}"),
        tokenizer,
    )
    if cfg.grad_checkpointing:
        policy.gradient_checkpointing_enable()
    policy.to(device).train()
    if not lora:
        ref_model.to(device)
    body = CausalLMBody(policy)
    ref_body = body if lora else CausalLMBody(ref_model)
    if mode == "ddp":
        body = torch.nn.parallel.DistributedDataParallel(
            body, device_ids=[device.index] if device.type == "cuda" else None
        )
    elif mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in policy.get_decoder().layers:
            fully_shard(layer)
        fully_shard(policy)
    return Models(policy, body, ref_model, ref_body, lora, mode == "fsdp")


# -- the loop -------------------------------------------------------------------------------------


def train(
    cfg: TrainConfig, resume: bool = False, model=None, tokenizer=None, ref_model=None
) -> dict:
    """Train per `cfg`; returns the last metrics. `model`/`tokenizer` override cfg.model (tests)."""
    rank, world, device, mode = _dist_setup()
    is_main = rank == 0
    log = print if is_main else (lambda *a, **k: None)
    obj = OBJECTIVES[cfg.objective]
    # every check that needs no training runs before the run folder is touched: a refused run
    # leaves no trace, so the corrected command just works
    _preflight(cfg, device, model, ref_model)
    train_records = _read(cfg, cfg.train_file, cfg.max_train_examples)
    val_records = _read(cfg, cfg.val_file, cfg.max_val_examples) if cfg.val_file else None
    with RunDir(
        cfg.out_dir,
        resume=resume,
        overwrite=cfg.overwrite,
        is_main=is_main,
        log=log,
        config=cfg.to_dict(),
        mutable=cfg.RESUME_MUTABLE,
        max_steps=cfg.max_steps,
    ) as run:
        _barrier(world)
        seed_all(cfg.seed)
        if tokenizer is None:
            from giftlab.models import load_tokenizer

            tokenizer = load_tokenizer(cfg.model)
        m = _build_models(cfg, model, ref_model, tokenizer, device, mode)
        train_examples, train_stats = _encode(cfg, train_records, tokenizer, cfg.train_file, log)
        val_examples = None
        if val_records:
            val_examples, _ = _encode(cfg, val_records, tokenizer, cfg.val_file, log)
        order = DataOrder(len(train_examples), cfg.batch_size, world, rank, cfg.seed)
        params = [p for p in m.policy.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(
            params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))

        start_step, best_val = 0, math.inf
        found = run.load_resume_checkpoint() if resume else None
        if resume and found is None:
            log(f"--resume: no checkpoint in {run.path}, starting from scratch")
        if found is not None:
            path, weights, state = found
            check_resume_config(  # settings were compared before the claim; this is the world
                {"world_size": state["world_size"]}, {"world_size": world}, RESUME_KEYS, run.path
            )
            _load_model_state(m, weights)
            _load_optimizer_state(m, opt, state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            order.load(state["data"])
            set_rng_state(state["rng"])
            start_step, best_val = state["step"], state["best_val"]
            log(f"resumed from {path} at step {start_step}")
        run.start_metrics(start_step if found else None)
        run.write_config(
            {
                "config": cfg.to_dict(),
                "provenance": provenance(),
                "world_size": world,
                "distributed": mode,
                "resumed_at": start_step,
            }
        )
        run.track(cfg.report_to, cfg.to_dict())

        pad_id = tokenizer.pad_token_id
        bar = progress_bar(
            cfg.max_steps, start_step, f"train {cfg.objective}", cfg.progress and is_main
        )
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if (cfg.bf16 and device.type == "cuda")
            else nullcontext()
        )
        last = {}
        if start_step == 0 and val_examples:  # the base line: the initial model on held-out data
            row0 = {"step": 0} | validate(cfg, m, val_examples, pad_id, device)
            best_val = row0["val/ce"]
            run.log_metrics(row0)
        for step in range(start_step, cfg.max_steps):
            t0 = time.perf_counter()
            micro = [
                _to(collate([train_examples[i] for i in order.next_indices()], pad_id), device)
                for _ in range(cfg.grad_accum)
            ]
            local_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
            global_tokens = int(
                _all_sum(torch.tensor(float(local_tokens), device=device), world).item()
            )
            diag = cfg.diag_every > 0 and (step + 1) % cfg.diag_every == 0
            stats = None
            loss_sum = torch.zeros((), device=device)
            for i, batch in enumerate(micro):
                sync = nullcontext() if (mode != "ddp" or i == len(micro) - 1) else m.body.no_sync()
                want = diag and i == 0
                with sync, autocast:
                    f = forward(m, batch, with_ref=obj.needs_ref or want)
                    fused_stats = {} if want else None
                    total = objective_sum(cfg, obj, m, f, fused_stats)
                    # DDP and FSDP average gradients over processes: scale by world for the global mean
                    (total * world / max(global_tokens, 1)).backward()
                if want:
                    stats = (
                        _with_topk(cfg, m, f, fused_stats)
                        if fused_stats
                        else token_stats(cfg, m, f)
                    )
                loss_sum += total.detach().float()
            loss = _all_sum(loss_sum, world) / max(global_tokens, 1)
            if not torch.isfinite(loss):
                raise NonFiniteError(
                    f"step {step + 1}: the loss is {loss.item()}; stopped before the optimiser step. "
                    f"Last good checkpoint: {run.last_checkpoint or 'none yet'} (lower lr, then --resume)"
                )
            grad_norm = (
                torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                if cfg.clip_grad > 0
                else _grad_norm(params)
            )
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            run.check_weights(params, step + 1, cfg.lr, world)
            dt = time.perf_counter() - t0
            n_in = sum(int(b["attention_mask"].sum()) for b in micro) * world
            row = {
                "step": step + 1,
                "epoch": order.epoch,
                "loss/train": loss.item(),
                "perf/lr": sched.get_last_lr()[0],
                "perf/grad_norm": float(grad_norm),
                "perf/step_s": dt,
                "perf/tokens_per_s": n_in / dt,
                "perf/response_tokens": global_tokens,
            }
            if stats is not None:
                valid = torch.ones_like(next(iter(stats.values())), dtype=torch.bool)
                row |= summarize_token_stats(stats, valid, prefix="diag/")
            final = step + 1 == cfg.max_steps
            if val_examples and ((cfg.eval_every and (step + 1) % cfg.eval_every == 0) or final):
                row |= validate(cfg, m, val_examples, pad_id, device)
            if (step + 1) % cfg.log_every == 0 or "val/ce" in row or final:
                run.log_metrics(row)
            bar.update(1)
            bar.set_postfix(
                loss=f"{row['loss/train']:.4f}", tok_s=f"{row['perf/tokens_per_s']:.0f}"
            )
            if "val/ce" in row and row["val/ce"] < best_val:
                best_val = row["val/ce"]
                if cfg.save_final:
                    run.save_model("best", m.policy, tokenizer, _full_weights(m), merge_lora=m.lora)
            if (cfg.save_every and (step + 1) % cfg.save_every == 0) or final:
                state = {
                    "optimizer": _optimizer_state(m, opt),
                    "scheduler": sched.state_dict(),
                    "data": order.state(),
                    "step": step + 1,
                    "best_val": best_val,
                    "config": cfg.to_dict(),
                    "world_size": world,
                    "rng": rng_state(),
                }
                run.save_checkpoint(
                    step + 1, m.policy, tokenizer, state, cfg.keep_checkpoints, _full_weights(m)
                )
            last = row
        bar.close()
        if cfg.save_final:
            run.save_model("final", m.policy, tokenizer, _full_weights(m), merge_lora=m.lora)
    last["data/train_examples"] = train_stats.kept
    last["data/skipped_overlong"] = train_stats.skipped_overlong
    return last


def _preflight(cfg, device, model, ref_model) -> None:
    """The checks that need no model and no folder: paths, device, kernel."""
    from giftlab.models import check_model_name

    if model is None:
        check_model_name(cfg.model, "model")
    if cfg.ref_model and ref_model is None:
        check_model_name(cfg.ref_model, "ref_model")
    for key in ("bf16", "bf16_weights"):
        if getattr(cfg, key) and device.type != "cuda":
            raise InputError(
                f"{key}=true needs a CUDA device; this run would be on {device.type} in float32 "
                f"while its config said bf16: set {key}=false"
            )
    if cfg.kernel == "triton" and device.type != "cuda":
        import os

        if os.environ.get("TRITON_INTERPRET") != "1":
            raise InputError(
                f"kernel=triton needs a CUDA device (this run is on {device.type}); use "
                "kernel=auto or kernel=torch"
            )


def _with_topk(cfg, m, f, stats):
    """The fused loss pass's statistics, plus top-K overlap from the same hidden states."""
    stats["topk_overlap"] = _topk_from_hidden(
        f.hidden.detach(), f.ref_hidden, m.head(), m.ref_body.head(), cfg.top_k
    )
    return stats


def _to(batch, device):
    return {k: v.to(device) for k, v in batch.items()}


def _frozen_copy(model):
    import copy

    return copy.deepcopy(model)


def _grad_norm(params):
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros(())


def _local(p):
    return p.to_local() if hasattr(p, "to_local") else p


def _full_weights(m: Models):
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


def _optimizer_state(m: Models, opt):
    """The optimiser state to checkpoint. DDP ranks hold the same state; FSDP ranks each hold
    their shard, so every rank's (as plain CPU tensors) is gathered into one list by rank."""
    if not m.fsdp:
        return opt.state_dict()
    local = _map_tensors(opt.state_dict(), lambda t: _local(t).detach().cpu())
    shards = [None] * dist.get_world_size()
    dist.all_gather_object(shards, local)
    return {"fsdp_rank_shards": shards}


def _load_optimizer_state(m: Models, opt, state):
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


def _load_model_state(m: Models, weights):
    if m.fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(
            m.policy, weights, options=StateDictOptions(full_state_dict=True, strict=False)
        )
        return
    load_weights(m.policy, weights, m.lora)
