"""Drift from the base on held-out demonstrations, per problem: teacher-forced on each record's
demonstration, the mean over its response tokens of

    KL(policy || base) = sum_v p(v) (log p(v) - log q(v))      (full next-token distributions)
    top-K overlap      = |topK(p) & topK(q)| / K
    policy entropy     = -sum_v p(v) log p(v)

One value per record, in record order, so that differences between two models can be paired on
the same problems (clustered intervals: `giftlab.stats.clustered_mean_ci`)."""

from __future__ import annotations

import torch

from giftlab.data.tokenize import collate, encode_records
from giftlab.runtime.objective import (
    CausalLMBody,
    Models,
    StatsSettings,
    forward,
    to_device,
    token_stats,
)

DRIFT_KEYS = ("kl_to_base", "topk_overlap", "policy_entropy")


@torch.no_grad()
def drift_per_problem(
    policy, base, tokenizer, records, top_k: int = 10, batch: int = 16, max_length: int = 256
) -> dict[str, list[float]]:
    """{key: [value per record]} for the keys of DRIFT_KEYS (see the module docstring)."""
    cfg = StatsSettings(top_k=top_k)
    device = next(policy.parameters()).device  # the batches go where the model is
    m = Models(policy, CausalLMBody(policy), base, CausalLMBody(base), lora=False, fsdp=False)
    examples, _ = encode_records(records, tokenizer, max_length, overlong="truncate")
    if len(examples) != len(records):
        raise ValueError(
            f"{len(records) - len(examples)} record(s) have a prompt of {max_length} tokens or "
            "more: every record needs a value (raise max_length)"
        )
    out = {k: [] for k in DRIFT_KEYS}
    for s in range(0, len(examples), batch):
        b = to_device(collate(examples[s : s + batch], tokenizer.pad_token_id), device)
        f = forward(m, b, with_ref=True)
        st = token_stats(cfg, m, f)
        for row in range(b["input_ids"].shape[0]):
            sel = f.rows == row
            for k in DRIFT_KEYS:
                out[k].append(float(st[k][sel].double().mean()))
    return out
