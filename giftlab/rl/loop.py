"""`giftlab rl`: GRPO from any checkpoint, one explicit loop.

for each step:
    take prompts_per_step prompts; sample group_size completions each (one batched generate)
    rewards from the task's verifier (correct = score 1.0); A = r - group mean
    ppo_epochs passes of the token-level PPO-clip loss (+ kl_coef KL to the base model)
    log rl/ (reward, correct fraction, verifier errors, KL to base, entropy, clip fraction) and perf/
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from giftlab.data import read_records
from giftlab.data.verifiers import VerifierError, check_verifiable, score
from giftlab.errors import NonFiniteError
from giftlab.losses import group_advantages, grpo_loss, kl_estimate
from giftlab.models import check_model_name, check_same_vocabulary, load_model, load_tokenizer
from giftlab.models.head import check_head
from giftlab.provenance import provenance
from giftlab.rl.config import RLConfig, rl_config_help
from giftlab.rl.rollout import (
    encode_prompts,
    prefix_layout,
    sample_groups,
    token_logp_and_entropy,
    verifier_rewards,
)
from giftlab.runtime import (
    DataOrder,
    RunDir,
    load_weights,
    progress_bar,
    rng_state,
    seed_all,
    set_rng_state,
)
from giftlab.runtime.distributed import default_device, precision


def load_task_records(path, limit=None, check: bool = True) -> list[dict]:
    """Prompt records with their verifier fields (reasoning-gym: task, index, seed, config; user
    math: task "math" and answer; a registered verifier's fields), each with its chat `messages`.
    No response is needed. check: every record's task has a verifier (giftlab.data.verifiers)."""
    recs = read_records(path, limit=limit, need_response=False)
    out = [dict(r["raw"]) | {"messages": r["messages"], "where": r["where"]} for r in recs]
    if check:
        check_verifiable(out)  # the verifier registry: known task, its fields, its extra
    return out


def rl(
    cfg: RLConfig, resume: bool = False, model=None, tokenizer=None, ref_model=None, score_fn=score
) -> dict:
    """GRPO per `cfg`; returns the last metrics. `model`/`tokenizer`/`score_fn` override (tests)."""
    device = default_device()
    # every check that needs no training runs before the run folder is touched
    records = load_task_records(cfg.train_file, check=score_fn is score)
    if model is None:
        check_model_name(cfg.model, "model", cfg.attn_implementation)
    if ref_model is None:
        check_model_name(cfg.ref_model, "ref_model", cfg.attn_implementation)
    with RunDir(
        cfg.out_dir,
        resume=resume,
        overwrite=cfg.overwrite,
        config=cfg.to_dict(),
        mutable=cfg.RESUME_MUTABLE,
        max_steps=cfg.max_steps,
        inputs={"train_file": cfg.train_file},
    ) as run:
        seed_all(cfg.seed)
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model)
        tokenizer.padding_side = "left"
        attn = cfg.attn_implementation
        policy = model if model is not None else load_model(cfg.model, attn_implementation=attn)
        ref = (
            ref_model
            if ref_model is not None
            else load_model(cfg.ref_model, attn_implementation=attn)
        )
        policy, ref = policy.to(device), ref.to(device)
        ref.eval().requires_grad_(False)
        if cfg.bf16:  # the reference only runs forward: bf16 halves its memory
            ref.to(torch.bfloat16)
        check_same_vocabulary(policy, ref, (f"model={cfg.model}", f"ref_model={cfg.ref_model}"))
        check_head(policy, name=f"model={cfg.model}")
        check_head(ref, name=f"ref_model={cfg.ref_model}")
        order = DataOrder(len(records), cfg.prompts_per_step, 1, 0, cfg.seed)
        params = [p for p in policy.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
        start = _resume(run, resume, policy, opt, order)
        run.start_metrics(start if run.last_checkpoint else None)
        run.write_config({"config": cfg.to_dict(), "provenance": provenance(), "resumed_at": start})
        run.track(cfg.report_to, cfg.to_dict())
        bar = progress_bar(cfg.max_steps, start, "rl grpo", cfg.progress)
        last, failures = {}, 0
        for step in range(start, cfg.max_steps):
            with precision(cfg.bf16, device):
                row = _step(
                    cfg,
                    step,
                    policy,
                    ref,
                    tokenizer,
                    records,
                    order,
                    opt,
                    params,
                    score_fn,
                    device,
                    run,
                )
            run.log_metrics(row)
            final = step + 1 == cfg.max_steps
            if (cfg.save_every and (step + 1) % cfg.save_every == 0) or final:
                keep = opt.state_dict() if cfg.save_optimizer else None
                state = {"optimizer": keep, "data": order.state(), "step": step + 1}
                state |= {"config": cfg.to_dict(), "rng": rng_state()}
                run.save_checkpoint(step + 1, policy, tokenizer, state, cfg.keep_checkpoints)
            bar.update(1)
            bar.set_postfix(
                reward=f"{row['rl/reward_mean']:.3f}", kl=f"{row['rl/kl_to_base_k1']:.4f}"
            )
            failures += row["rl/verifier_errors"]
            last = row | {"rl/verifier_errors_total": failures}  # this session's steps
        bar.close()
        if cfg.save_final:
            run.save_model("final", policy, tokenizer, card=cfg.model_card())
    return last


def _resume(run, resume: bool, policy, opt, order) -> int:
    """The step to start from: the newest valid checkpoint's (its weights, optimiser, data
    position and RNG loaded), or 0."""
    found = run.load_resume_checkpoint() if resume else None
    if resume and found is None:
        print(f"--resume: no checkpoint in {run.path}, starting from scratch")
    if found is None:
        return 0
    path, weights, state = found
    load_weights(policy, weights, lora=False)
    if state["optimizer"] is None:  # saved with save_optimizer=false
        print(f"{path} holds no optimiser state (save_optimizer=false): a fresh AdamW state")
    else:
        opt.load_state_dict(state["optimizer"])
    order.load(state["data"])
    set_rng_state(state["rng"])
    print(f"resumed from {path} at step {state['step']}")
    return state["step"]


@dataclass
class Update:
    loss: torch.Tensor
    stats: dict
    entropy: torch.Tensor  # (N, T - 1) the policy's entropy at the sampled positions
    old_logp: torch.Tensor  # (N, T - 1) the sampling policy's log-probabilities
    ref_logp: torch.Tensor  # (N, T - 1) the base model's
    grad_norm: torch.Tensor
    active: torch.Tensor  # (N,) bool: advantage != 0
    partial: bool  # the backward ran on the active samples only
    updated: bool = True  # False: no sample had an advantage: a zero gradient, no backward ran


def grpo_update(
    cfg, policy, ref, ro, adv, opt, params, where="", last_good="", after_opt_step=None
) -> Update:
    """cfg.ppo_epochs optimiser steps of `grpo_loss` on one rollout with advantages `adv` (N,).

    With kl_coef = 0 a sample whose advantage is 0 adds nothing to the loss or its gradient:
    every sample is scored once without grad (the sampling policy's log-probabilities and
    entropy, for the logs), and only those with A != 0 run forward and backward with grad
    (grpo_loss keeps the whole batch's token count): the same update with fewer FLOPs
    (cfg.skip_zero_advantage; scripts/bench_rl_step.py measures it).
    """
    mask = ro.completion_mask[:, 1:]
    with torch.no_grad():
        ref_logp, _ = token_logp_and_entropy(ref, ro, shared_prefix=cfg.shared_prefix)
    old_logp, stats = None, {}
    active = adv != 0
    partial = (
        cfg.skip_zero_advantage
        and cfg.kl_coef == 0
        and bool(active.any())
        and not bool(active.all())
    )
    if cfg.skip_zero_advantage and cfg.kl_coef == 0 and not bool(active.any()):
        # every group's rewards are equal: the loss and its gradient are exactly 0. No forward
        # with grad and no backward; the optimiser still steps on zero gradients (Adam's momentum
        # and weight decay act as on the full path, so the run is the same).
        with torch.no_grad():
            old_logp, entropy = token_logp_and_entropy(
                policy, ro, with_entropy=True, shared_prefix=cfg.shared_prefix
            )
        zero = torch.zeros((), device=old_logp.device)
        for _epoch in range(cfg.ppo_epochs):
            for p in params:
                p.grad = torch.zeros_like(p)
            opt.step()
            if after_opt_step is not None:
                after_opt_step()
        stats = {"clip_frac": 0.0}
        return Update(zero, stats, entropy, old_logp, ref_logp, zero, active, True, False)
    rows = slice(None)  # every sample, or (partial) the ones with A != 0
    if partial:
        with torch.no_grad():
            old_logp, entropy = token_logp_and_entropy(
                policy, ro, with_entropy=True, shared_prefix=cfg.shared_prefix
            )
        rows = active.nonzero().squeeze(-1)
    batch = ro.select(rows) if partial else ro
    # the rows scored with grad keep the whole step's shared-prefix layout (a subset of rows
    # can share a longer prefix: laid out alike, they are scored by the same arithmetic)
    layout = prefix_layout(ro) if cfg.shared_prefix else None
    if layout is not None and partial:
        layout = layout.select(rows)
    for _epoch in range(cfg.ppo_epochs):
        logp, ent = token_logp_and_entropy(
            policy, batch, with_entropy=not partial, shared_prefix=cfg.shared_prefix, layout=layout
        )
        if not partial:
            entropy = ent
            if old_logp is None:  # the sampling policy: the first pass's log-probabilities
                old_logp = logp.detach()
        loss, stats = grpo_loss(
            logp,
            old_logp[rows],
            adv[rows],
            mask[rows],
            cfg.clip_low,
            cfg.clip_high,
            cfg.kl_coef,
            ref_logp[rows],
            cfg.kl_estimator,
            n_tokens=mask.sum(),  # the whole batch's tokens: the skipped rows add 0
        )
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"{where}: the GRPO loss is {loss.item()}; stopped before the optimiser "
                f"step. Last good checkpoint: {last_good}"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            params, cfg.clip_grad if cfg.clip_grad > 0 else math.inf
        )
        opt.step()
        if after_opt_step is not None:
            after_opt_step()
    has_gradient = cfg.kl_coef != 0 or bool(active.any())  # else the loss is exactly 0
    return Update(
        loss, stats, entropy, old_logp, ref_logp, grad_norm, active, partial, has_gradient
    )


def fill_failed_rewards(groups: torch.Tensor) -> torch.Tensor:
    """(P, G) rewards with NaN where the verifier failed -> each NaN replaced by the mean of its
    group's scored rewards (0 when none was scored): a tolerated failure has advantage 0 and takes
    no part in the update, and the group's other advantages are unchanged."""
    failed = groups.isnan()
    if not bool(failed.any()):
        return groups
    scored = (~failed).sum(-1, keepdim=True)
    fill = torch.where(failed, 0.0, groups).sum(-1, keepdim=True) / scored.clamp(min=1)
    return torch.where(failed, fill.expand_as(groups), groups)


def _step(cfg, step, policy, ref, tokenizer, records, order, opt, params, score_fn, device, run):
    """One GRPO step: sample, score, ppo_epochs updates; returns the metrics row."""
    recs = [records[i] for i in order.next_indices()]
    t0 = time.perf_counter()
    ro = sample_groups(
        policy,
        tokenizer,
        encode_prompts(tokenizer, recs),
        cfg.group_size,
        cfg.max_new_tokens,
        cfg.temperature,
        cfg.seed * 1_000_003 + step,
        device,
    )
    t_gen = time.perf_counter() - t0
    rewards, scores, failures = verifier_rewards(recs, ro, score_fn, binary=cfg.binary_reward)
    if len(failures) > cfg.max_verifier_failures * len(scores):
        raise VerifierError(
            f"step {step + 1}: the verifier failed on {len(failures)} of {len(scores)} "
            f"completions (max_verifier_failures={cfg.max_verifier_failures:g}); first: "
            f"{failures[0]}. Last good checkpoint: {run.last_checkpoint or 'none yet'}"
        )
    groups = fill_failed_rewards(rewards.view(len(recs), cfg.group_size))
    rewards = groups.reshape(-1)
    scored = [s for s in scores if not math.isnan(s)]
    adv = group_advantages(groups, cfg.normalize_std).view(-1).to(device)
    t1 = time.perf_counter()
    u = grpo_update(
        cfg,
        policy,
        ref,
        ro,
        adv,
        opt,
        params,
        where=f"step {step + 1}",
        last_good=run.last_checkpoint or "none yet",
        after_opt_step=lambda: run.check_weights(params, step + 1, cfg.lr),
    )
    loss, stats, entropy, grad_norm = u.loss, u.stats, u.entropy, u.grad_norm
    old_logp, ref_logp, partial, active = u.old_logp, u.ref_logp, u.partial, u.active
    mask = ro.completion_mask[:, 1:]
    t_train = time.perf_counter() - t1
    m = mask.float()
    n_tok = int(m.sum())

    def kl_mean(estimator):  # KL(sampling policy || base) per completion token
        return float((kl_estimate(old_logp, ref_logp, estimator) * m).sum() / max(n_tok, 1))

    return {
        "step": step + 1,
        "loss/grpo": float(loss.detach()),
        # the penalty term's KL over the whole batch (partial: the no-grad pass = epoch 1's)
        f"loss/kl_{cfg.kl_estimator}": kl_mean(cfg.kl_estimator)
        if partial
        else float(stats.get("kl", 0.0)),
        "rl/reward_mean": float(rewards.mean()),
        "rl/reward_std": float(groups.std(-1, unbiased=False).mean()),
        "rl/correct_frac": float(np.mean([s == 1.0 for s in scored])) if scored else 0.0,
        "rl/score_mean": float(np.mean(scored)) if scored else 0.0,
        "rl/zero_variance_groups": int((groups.std(-1) == 0).sum()),
        "rl/verifier_errors": len(failures),
        "rl/empty_completions": sum(1 for t in ro.texts if not t),
        "rl/kl_to_base_k1": kl_mean("k1"),
        "rl/kl_to_base_k3": kl_mean("k3"),
        "rl/sample_entropy": float((entropy.detach() * m).sum() / max(n_tok, 1)),
        "rl/clip_frac": float(stats["clip_frac"]),
        "rl/completion_tokens": n_tok,
        "perf/grad_norm": float(grad_norm),
        "perf/gen_s": t_gen,
        "perf/train_s": t_train,
        "perf/gen_share": t_gen / (t_gen + t_train),
        "perf/rollout_tokens_per_s": n_tok / t_gen,
        "perf/backward_rows": int(active.sum()) if partial else len(ro.texts),
        "rl/updated": int(u.updated),
    }


__all__ = [
    "RLConfig",
    "Update",
    "fill_failed_rewards",
    "grpo_update",
    "load_task_records",
    "rl",
    "rl_config_help",
]
