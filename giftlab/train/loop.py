"""The SFT / GIFT / baselines training loop: one explicit loop, no trainer class.

    for each optimiser step:
        take grad_accum micro-batches (each process its slice of the global batch)
        loss = sum over response tokens of the objective / response tokens in the global batch
        backward, clip, AdamW step, schedule step
        log loss/, perf/ (and diag/ every diag_every steps), held-out statistics, checkpoint

Run it directly (`giftlab train`) or under torchrun (DDP; FSDP2 with GIFTLAB_DISTRIBUTED=fsdp).
Elsewhere: the run folder (giftlab.runtime.RunDir), distributed plumbing (runtime.distributed),
the objective on a model (giftlab.engine: Engine, build_engine), the objectives
(losses.OBJECTIVES).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext

import torch

from giftlab.data import encode_records, read_records
from giftlab.diagnostics import summarize_token_stats
from giftlab.engine.build import build_engine
from giftlab.engine.cache import open_ref_cache
from giftlab.engine.objective import indexed_batch, to_device
from giftlab.errors import InputError, NonFiniteError
from giftlab.losses.variant import VARIANT_PATHS
from giftlab.models import load_tokenizer
from giftlab.provenance import provenance
from giftlab.runtime import (
    DataOrder,
    RunDir,
    check_resume_config,
    progress_bar,
    rng_state,
    seed_all,
    set_rng_state,
)
from giftlab.runtime.distributed import (
    all_sum,
    barrier,
    dist_setup,
    full_weights,
    load_model_state,
    load_optimizer_state,
    optimizer_state,
    precision,
)
from giftlab.train.config import TrainConfig

NonFiniteLossError = NonFiniteError  # the name earlier versions raised

RESUME_KEYS = ("world_size",)  # checked on resume; the settings are checked by RunDir


def train(
    cfg: TrainConfig, resume: bool = False, model=None, tokenizer=None, ref_model=None
) -> dict:
    """Train per `cfg`; returns the last metrics. `model`/`tokenizer` override cfg.model (tests)."""
    rank, world, device, mode = dist_setup()
    is_main = rank == 0
    log = print if is_main else (lambda *a, **k: None)
    # every check that needs no training runs before the run folder is touched: a refused run
    # leaves no trace, so the corrected command just works
    _preflight(cfg, device, model, ref_model)
    if cfg.objective in VARIANT_PATHS:  # a user's MODULE:FUNCTION: which path it trains on
        log(VARIANT_PATHS[cfg.objective])
    train_records = _read(cfg, cfg.train_file, cfg.max_train_examples)
    val_records = _read(cfg, cfg.val_file, cfg.max_val_examples) if cfg.val_file else None
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model)
    cache = open_ref_cache(cfg, tokenizer, ref_model if ref_model is not None else model)
    with RunDir(
        cfg.out_dir,
        resume=resume,
        overwrite=cfg.overwrite,
        is_main=is_main,
        log=log,
        config=cfg.to_dict(),
        mutable=cfg.RESUME_MUTABLE,
        max_steps=cfg.max_steps,
        inputs={"train_file": cfg.train_file, "val_file": cfg.val_file},
    ) as run:
        barrier(world)
        seed_all(cfg.seed)
        engine = build_engine(
            cfg, model, ref_model, tokenizer, device=device, mode=mode, ref_cache=cache
        )
        m = engine.models
        train_examples, train_stats = _encode(cfg, train_records, tokenizer, cfg.train_file, log)
        val = _encode(cfg, val_records, tokenizer, cfg.val_file, log) if val_records else None
        val_examples = val[0] if val else None
        order = DataOrder(len(train_examples), cfg.batch_size, world, rank, cfg.seed)
        params = [p for p in m.policy.parameters() if p.requires_grad]
        opt, sched = _optimiser(cfg, params)
        start_step, best_val = _resume(run, resume, m, opt, sched, order, world, log)
        run.start_metrics(start_step if run.last_checkpoint else None)
        info = {"config": cfg.to_dict(), "provenance": provenance(), "world_size": world}
        run.write_config(info | {"distributed": mode, "resumed_at": start_step})
        run.track(cfg.report_to, cfg.to_dict())
        pad_id = tokenizer.pad_token_id
        bar = progress_bar(
            cfg.max_steps, start_step, f"train {cfg.objective}", cfg.progress and is_main
        )
        last, card = {}, cfg.model_card()
        if start_step == 0 and val_examples:  # the base line: the initial model on held-out data
            row0 = {"step": 0} | engine.heldout(val_examples, pad_id, device)
            best_val = row0["val/ce"]
            run.log_metrics(row0)
        for step in range(start_step, cfg.max_steps):
            row = _step(cfg, step, engine, train_examples, order, pad_id, device, world, mode, run)
            row = _optimise(cfg, step, m, opt, sched, params, run, world, row)
            final = step + 1 == cfg.max_steps
            if val_examples and ((cfg.eval_every and (step + 1) % cfg.eval_every == 0) or final):
                row |= engine.heldout(val_examples, pad_id, device)
            if (step + 1) % cfg.log_every == 0 or "val/ce" in row or final:
                run.log_metrics(row)
            bar.update(1)
            bar.set_postfix(
                loss=f"{row['loss/train']:.4f}", tok_s=f"{row['perf/tokens_per_s']:.0f}"
            )
            state_of = (opt, sched, order, world)
            best_val = _save(cfg, run, step, row, best_val, m, tokenizer, card, state_of)
            last = row
        bar.close()
        if cfg.save_final:
            run.save_model("final", m.policy, tokenizer, full_weights(m), m.lora, card)
    last["data/train_examples"] = train_stats.kept
    last["data/skipped_overlong"] = train_stats.skipped_overlong
    return last


def _optimiser(cfg, params):
    """AdamW and the learning-rate schedule of `cfg`."""
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay
    )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))


def _save(cfg, run, step, row, best_val, m, tokenizer, card, state_of) -> float:
    """After step `step`: the best model when the held-out CE improved (save_final), the
    checkpoint every save_every steps and at the last; returns the best held-out CE."""
    if "val/ce" in row and row["val/ce"] < best_val:
        best_val = row["val/ce"]
        if cfg.save_final:
            run.save_model("best", m.policy, tokenizer, full_weights(m), m.lora, card)
    if (cfg.save_every and (step + 1) % cfg.save_every == 0) or step + 1 == cfg.max_steps:
        opt, sched, order, world = state_of
        state = _state(cfg, step + 1, m, opt, sched, order, best_val, world)
        run.save_checkpoint(
            step + 1, m.policy, tokenizer, state, cfg.keep_checkpoints, full_weights(m)
        )
    return best_val


def _resume(run, resume, m, opt, sched, order, world, log) -> tuple[int, float]:
    """(start step, best held-out CE) from the newest valid checkpoint, or (0, inf)."""
    found = run.load_resume_checkpoint() if resume else None
    if resume and found is None:
        log(f"--resume: no checkpoint in {run.path}, starting from scratch")
    if found is None:
        return 0, math.inf
    path, weights, state = found
    check_resume_config(  # settings were compared before the claim; this is the world
        {"world_size": state["world_size"]}, {"world_size": world}, RESUME_KEYS, run.path
    )
    load_model_state(m, weights)
    if state["optimizer"] is None:  # saved with save_optimizer=false
        log(f"{path} holds no optimiser state (save_optimizer=false): a fresh AdamW state")
    else:
        load_optimizer_state(m, opt, state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    order.load(state["data"])
    set_rng_state(state["rng"])
    log(f"resumed from {path} at step {state['step']}")
    return state["step"], state["best_val"]


def _state(cfg, step, m, opt, sched, order, best_val, world) -> dict:
    """What a checkpoint's trainer_state.pt holds besides the weights."""
    return {
        "optimizer": optimizer_state(m, opt) if cfg.save_optimizer else None,
        "scheduler": sched.state_dict(),
        "data": order.state(),
        "step": step,
        "best_val": best_val,
        "config": cfg.to_dict(),
        "world_size": world,
        "rng": rng_state(),
    }


def _step(cfg, step, engine, examples, order, pad_id, device, world, mode, run) -> dict:
    """Forward and backward of one optimiser step's micro-batches; the loss row (and the
    diagnostics every diag_every steps). Raises NonFiniteError before the optimiser step."""
    t0 = time.perf_counter()
    m, obj = engine.models, engine.objective
    micro = [
        to_device(indexed_batch(examples, order.next_indices(), pad_id), device)
        for _ in range(cfg.grad_accum)
    ]
    local_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
    global_tokens = int(all_sum(torch.tensor(float(local_tokens), device=device), world).item())
    diag = cfg.diag_every > 0 and (step + 1) % cfg.diag_every == 0
    autocast = precision(cfg.bf16, device)
    stats, loss_sum = None, torch.zeros((), device=device)
    for i, batch in enumerate(micro):
        sync = nullcontext() if (mode != "ddp" or i == len(micro) - 1) else m.body.no_sync()
        want = diag and i == 0
        with sync, autocast:
            f = engine.forward(batch, with_ref=obj.needs_ref or want)
            fused_stats = {} if want else None
            total = engine.loss(f, fused_stats)
            # DDP and FSDP average gradients over processes: scale by world for the global mean
            (total * world / max(global_tokens, 1)).backward()
        if want:
            stats = engine.stats(f, fused_stats)
        loss_sum += total.detach().float()
    loss = all_sum(loss_sum, world) / max(global_tokens, 1)
    if not torch.isfinite(loss):
        raise NonFiniteError(
            f"step {step + 1}: the loss is {loss.item()}; stopped before the optimiser step. "
            f"Last good checkpoint: {run.last_checkpoint or 'none yet'} (lower lr, then --resume)"
        )
    n_in = sum(int(b["attention_mask"].sum()) for b in micro) * world
    row = {"step": step + 1, "epoch": order.epoch, "loss/train": loss.item()}
    row |= {"perf/response_tokens": global_tokens, "perf/input_tokens": n_in, "perf/t0": t0}
    if stats is not None:
        valid = torch.ones_like(next(iter(stats.values())), dtype=torch.bool)
        row |= summarize_token_stats(stats, valid, prefix="diag/")
    return row


def _optimise(cfg, step, m, opt, sched, params, run, world, row: dict) -> dict:
    """Clip, AdamW step, schedule step (stops if the step made the weights non-finite); `row`
    with the step's learning rate, gradient norm, wall time and throughput."""
    grad_norm = (
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
        if cfg.clip_grad > 0
        else _grad_norm(params)
    )
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    run.check_weights(params, step + 1, cfg.lr, world)
    dt = time.perf_counter() - row.pop("perf/t0")
    return row | {
        "perf/lr": sched.get_last_lr()[0],
        "perf/grad_norm": float(grad_norm),
        "perf/step_s": dt,
        "perf/tokens_per_s": row.pop("perf/input_tokens") / dt,
    }


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


def _preflight(cfg, device, model, ref_model) -> None:
    """The checks that need no model and no folder: paths, device, kernel."""
    from giftlab.models import check_model_name

    if model is None:
        check_model_name(cfg.model, "model", cfg.attn_implementation)
    if cfg.ref_model and ref_model is None:
        check_model_name(cfg.ref_model, "ref_model", cfg.attn_implementation)
    if cfg.kernel == "triton" and device.type != "cuda":
        import os

        if os.environ.get("TRITON_INTERPRET") != "1":
            raise InputError(
                f"kernel=triton needs a CUDA device (this run is on {device.type}); use "
                "kernel=auto or kernel=torch"
            )


def _grad_norm(params):
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros((), device=params[0].device)
