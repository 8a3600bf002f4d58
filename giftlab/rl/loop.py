"""`giftlab rl`: GRPO from any checkpoint, one explicit loop.

for each step:
    take prompts_per_step prompts; sample group_size completions each (one batched generate)
    rewards from the task's verifier (correct = score 1.0); A = r - group mean
    ppo_epochs passes of the token-level PPO-clip loss (+ kl_coef KL to the base model)
    log rl/ (reward, correct fraction, verifier errors, KL to base, entropy, clip fraction) and perf/
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from giftlab.data import read_records
from giftlab.data.tasks import score
from giftlab.losses import group_advantages, grpo_loss, kl_estimate
from giftlab.provenance import provenance
from giftlab.rl.rollout import (
    encode_prompts,
    sample_groups,
    token_logp_and_entropy,
    verifier_rewards,
)
from giftlab.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from giftlab.train.config import FlatConfig
from giftlab.train.loop import DataOrder


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class RLConfig(FlatConfig):
    model: str = _f(
        "smollm2", "policy to start from: 'smollm2' or a checkpoint folder (e.g. runs/gift/final)"
    )
    ref_model: str = _f(
        "smollm2", "the base model that KL is measured (and optionally penalised) against"
    )
    train_file: str = _f(
        "data/countdown/train.jsonl", "prompts with verifier metadata (from giftlab data)"
    )
    prompts_per_step: int = _f(4, "prompts per step")
    group_size: int = _f(8, "samples per prompt (the GRPO group)")
    max_new_tokens: int = _f(24, "completion length limit")
    temperature: float = _f(1.0, "sampling temperature")
    lr: float = _f(1e-6, "AdamW learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    clip_low: float = _f(0.2, "PPO ratio clip below 1")
    clip_high: float = _f(0.2, "PPO ratio clip above 1")
    kl_coef: float = _f(0.0, "KL-to-base penalty (0: measured and logged only, as in the paper)")
    kl_estimator: str = _f("k3", "KL estimator: k1 or k3")
    normalize_std: bool = _f(False, "divide advantages by the group std")
    binary_reward: bool = _f(True, "reward 1[score == 1] (false: the verifier's partial credit)")
    ppo_epochs: int = _f(1, "optimisation passes per batch of samples")
    max_steps: int = _f(10, "RL steps")
    clip_grad: float = _f(1.0, "gradient-norm clip (0: off)")
    seed: int = _f(0, "seed of prompt order and sampling")
    out_dir: str = _f("runs/rl", "run folder: config, metrics.jsonl, checkpoints, final/")
    save_every: int = _f(0, "steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = _f(1, "checkpoints kept")
    save_final: bool = _f(True, "write final/ as a loadable model folder")
    progress: bool = _f(True, "progress bar")

    def __post_init__(self):
        checks = [
            (self.group_size >= 2, f"group_size must be >= 2, got {self.group_size}"),
            (self.prompts_per_step >= 1, f"prompts_per_step must be >= 1, got {self.prompts_per_step}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (self.kl_estimator in ("k1", "k3"), f"kl_estimator must be k1 or k3, got {self.kl_estimator!r}"),
            (self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}"),
            (self.ppo_epochs >= 1, f"ppo_epochs must be >= 1, got {self.ppo_epochs}"),
            (self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


def rl_config_help() -> str:
    return "\n".join(
        f"  {f.name} (default {f.default!r}): {f.metadata['help']}"
        for f in dataclasses.fields(RLConfig)
    )


def load_task_records(path, limit=None) -> list[dict]:
    """Records with their verifier fields (reasoning-gym: task, index, seed, config; user math:
    task "math" and answer) and chat messages."""
    recs = read_records(path, limit=limit)

    def verifiable(raw):
        return (raw.get("task") == "math" and "answer" in raw) or {
            "task",
            "index",
            "seed",
            "config",
        } <= set(raw)

    missing = [r["where"] for r in recs if not verifiable(r["raw"])]
    if missing:
        raise ValueError(
            f"{missing[0]}: RL and eval need records from `giftlab data` (task, index, seed, config) "
            'or user math records {"task": "math", "prompt": ..., "answer": ...}'
        )
    return [dict(r["raw"]) | {"messages": r["messages"]} for r in recs]


def rl(
    cfg: RLConfig, resume: bool = False, model=None, tokenizer=None, ref_model=None, score_fn=score
) -> dict:
    from giftlab.models import load_model, load_tokenizer

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"
    policy = (model if model is not None else load_model(cfg.model)).to(device)
    ref = (
        (ref_model if ref_model is not None else load_model(cfg.ref_model))
        .to(device)
        .eval()
        .requires_grad_(False)
    )
    if (
        policy.get_output_embeddings().weight.shape[0]
        != ref.get_output_embeddings().weight.shape[0]
    ):
        raise ValueError("policy and base model vocabularies differ")
    records = load_task_records(cfg.train_file)
    order = DataOrder(len(records), cfg.prompts_per_step, 1, 0, cfg.seed)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    metrics_path = out_dir / "metrics.jsonl"
    start = 0
    ckpt = latest_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        policy.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        order.load(state["data"])
        start = state["step"]
        keep = [
            x
            for x in metrics_path.read_text().splitlines()
            if x.strip() and json.loads(x)["step"] <= start
        ]
        metrics_path.write_text("".join(x + "\n" for x in keep))
    else:
        metrics_path.write_text("")
    (out_dir / "config.json").write_text(
        json.dumps({"config": cfg.to_dict(), "provenance": provenance()}, indent=2)
    )
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start, desc="rl grpo", unit="step")
    last = {}
    for step in range(start, cfg.max_steps):
        recs = [records[i] for i in order.next_indices()]
        t0 = time.perf_counter()
        ro = sample_groups(policy, tokenizer, encode_prompts(tokenizer, recs), cfg.group_size, cfg.max_new_tokens,
                           cfg.temperature, cfg.seed * 1_000_003 + step, device)  # fmt: skip
        t_gen = time.perf_counter() - t0
        rewards, scores, errors = verifier_rewards(recs, ro, score_fn, binary=cfg.binary_reward)
        adv = (
            group_advantages(rewards.view(len(recs), cfg.group_size), cfg.normalize_std)
            .view(-1)
            .to(device)
        )
        mask = ro.completion_mask[:, 1:]
        t1 = time.perf_counter()
        with torch.no_grad():
            ref_logp, _ = token_logp_and_entropy(ref, ro)
            old_logp = None
        stats_acc = {}
        for _epoch in range(cfg.ppo_epochs):
            logp, entropy = token_logp_and_entropy(policy, ro, with_entropy=True)
            if old_logp is None:  # the sampling policy: the first pass's log-probabilities
                old_logp = logp.detach()
            loss, stats = grpo_loss(
                logp,
                old_logp,
                adv,
                mask,
                cfg.clip_low,
                cfg.clip_high,
                cfg.kl_coef,
                ref_logp,
                cfg.kl_estimator,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                params, cfg.clip_grad if cfg.clip_grad > 0 else math.inf
            )
            opt.step()
            stats_acc = stats
        t_train = time.perf_counter() - t1
        m = mask.float()
        n_tok = int(m.sum())
        kl_k1 = float((kl_estimate(old_logp, ref_logp, "k1") * m).sum() / max(n_tok, 1))
        row = {
            "step": step + 1,
            "loss/grpo": float(loss.detach()),
            "rl/reward_mean": float(rewards.mean()),
            "rl/reward_std": float(rewards.view(len(recs), -1).std(-1, unbiased=False).mean()),
            "rl/correct_frac": float(np.mean([s == 1.0 for s in scores])),
            "rl/score_mean": float(np.mean(scores)),
            "rl/zero_variance_groups": int((rewards.view(len(recs), -1).std(-1) == 0).sum()),
            "rl/verifier_errors": errors,
            "rl/empty_completions": sum(1 for t in ro.texts if not t),
            "rl/kl_to_base_k3": float(stats_acc.get("kl", torch.tensor(0.0))),
            "rl/kl_to_base_k1": kl_k1,
            "rl/sample_entropy": float((entropy.detach() * m).sum() / max(n_tok, 1)),
            "rl/clip_frac": float(stats_acc["clip_frac"]),
            "rl/completion_tokens": n_tok,
            "perf/grad_norm": float(grad_norm),
            "perf/gen_s": t_gen,
            "perf/train_s": t_train,
            "perf/gen_share": t_gen / (t_gen + t_train),
            "perf/rollout_tokens_per_s": n_tok / t_gen,
        }
        with metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        final = step + 1 == cfg.max_steps
        if (cfg.save_every and (step + 1) % cfg.save_every == 0) or final:
            state = {"model": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()},
                     "optimizer": opt.state_dict(), "data": order.state(), "step": step + 1, "config": cfg.to_dict()}  # fmt: skip
            save_checkpoint(out_dir, step + 1, state, cfg.keep_checkpoints)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                reward=f"{row['rl/reward_mean']:.3f}", kl=f"{row['rl/kl_to_base_k3']:.4f}"
            )
        last = row
    if bar is not None:
        bar.close()
    if cfg.save_final:
        tmp = out_dir / "final.tmp"
        policy.save_pretrained(tmp)
        tokenizer.padding_side = "right"
        tokenizer.save_pretrained(tmp)
        import os
        import shutil

        if (out_dir / "final").exists():
            shutil.rmtree(out_dir / "final")
        os.replace(tmp, out_dir / "final")
    return last


__all__ = ["RLConfig", "load_task_records", "rl", "rl_config_help"]
