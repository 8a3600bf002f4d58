"""`giftlab eval`: n samples per held-out problem; pass@k (unbiased, k = 1..n), mean@k, maj@k,
distinct correct answers, sampled-token entropy and KL to the base on the samples."""

from __future__ import annotations

import time

import numpy as np
import torch

from giftlab.data.verifiers import score
from giftlab.diagnostics import distinct_correct, majority_at_k, pass_at_k
from giftlab.losses import kl_estimate
from giftlab.rl.rollout import (
    encode_prompts,
    sample_groups,
    token_logp_and_entropy,
    verifier_rewards,
)


@torch.no_grad()
def evaluate(
    model,
    ref_model,
    tokenizer,
    records,
    n_samples=16,
    max_new_tokens=32,
    temperature=1.0,
    seed=0,
    prompts_per_batch=16,
    device="cpu",
    progress=None,
    stats_samples=None,
) -> dict:
    """Metrics over `records` (each needs task/index/seed/config for the verifier).

    stats_samples: how many samples of each problem (the first ones) the teacher-forced passes
    for entropy and KL to the base run on; None: all n_samples; 0: none (entropy and KL are then
    NaN). These passes cost about as much as sampling itself, and pass@k, maj@k and distinct
    correct answers need only the verifier.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    s_stats = n_samples if stats_samples is None else min(int(stats_samples), n_samples)
    if s_stats < 0:
        raise ValueError(f"stats_samples must be >= 0 or None, got {stats_samples}")
    per_problem, ent_sum, kl_sum, tok, kl_seq = [], 0.0, 0.0, 0, []
    errors = empty = 0
    gen_time, gen_tokens = 0.0, 0
    for b in range(0, len(records), prompts_per_batch):
        recs = records[b : b + prompts_per_batch]
        t0 = time.perf_counter()
        ro = sample_groups(
            model,
            tokenizer,
            encode_prompts(tokenizer, recs),
            n_samples,
            max_new_tokens,
            temperature,
            seed + b,
            device,
        )
        gen_time += time.perf_counter() - t0
        mask = ro.completion_mask[:, 1:]
        gen_tokens += int(mask.sum())
        _, scores, failures = verifier_rewards(recs, ro, score)
        if failures:  # an evaluation never counts a verifier failure as a wrong answer
            from giftlab.data.verifiers import VerifierError

            raise VerifierError(
                f"{failures[0]} ({len(failures)} of {len(scores)} completions of this batch "
                "failed); nothing was scored as wrong in their place"
            )
        empty += sum(1 for t in ro.texts if not t)
        if s_stats:
            sub = ro.select([i for i in range(len(ro.texts)) if i % n_samples < s_stats])
            m = sub.completion_mask[:, 1:].float()
            logp, entropy = token_logp_and_entropy(model, sub, with_entropy=True)
            ref_logp, _ = token_logp_and_entropy(ref_model, sub)
            ent_sum += float((entropy * m).sum())
            kl_tok = kl_estimate(logp, ref_logp, "k1") * m
            kl_sum += float(kl_tok.sum())
            kl_seq += kl_tok.sum(1).tolist()
            tok += int(m.sum())
        for j in range(len(recs)):
            rows = [i for i in range(len(ro.texts)) if int(ro.prompt_index[i]) == j]
            answers = [ro.texts[i] for i in rows]
            correct = [scores[i] == 1.0 for i in rows]
            per_problem.append({"c": sum(correct), "answers": answers, "correct": correct})
        if progress is not None:
            progress(len(per_problem), len(records))
    n = n_samples
    ks = np.arange(1, n + 1)
    c = np.array([p["c"] for p in per_problem])
    pak = pass_at_k(n, c[:, None], ks[None, :]).mean(0)
    out = {
        "n_problems": len(per_problem),
        "per_problem_correct": c.tolist(),  # correct samples of each problem, for clustered CIs
        "per_problem_distinct_correct": [
            distinct_correct(p["answers"], p["correct"]) for p in per_problem
        ],
        "n_samples": n,
        "pass_at_k": {int(k): float(v) for k, v in zip(ks, pak)},
        "mean_at_k": float(c.mean() / n),
        "maj_at_n": float(
            np.mean([majority_at_k(p["answers"], p["correct"], n) for p in per_problem])
        ),
        "distinct_correct": float(
            np.mean([distinct_correct(p["answers"], p["correct"]) for p in per_problem])
        ),
        "sample_entropy": ent_sum / max(tok, 1) if s_stats else float("nan"),
        "kl_to_base_per_token": kl_sum / max(tok, 1) if s_stats else float("nan"),
        "stats_samples": s_stats,
        "kl_to_base_per_sequence": float(np.mean(kl_seq)) if kl_seq else float("nan"),
        "verifier_errors": errors,
        "empty_completions": empty,
        "generation_tokens_per_s": gen_tokens / max(gen_time, 1e-9),
    }
    for k in (1, 4, 8):
        if k <= n:
            out[f"maj_at_{k}"] = float(
                np.mean([majority_at_k(p["answers"], p["correct"], k) for p in per_problem])
            )
    return out
