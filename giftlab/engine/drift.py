"""Drift from the base on held-out demonstrations, per problem: teacher-forced on each record's
demonstration, the mean over its response tokens of

    KL(policy || base) = sum_v p(v) (log p(v) - log q(v))      (full next-token distributions)
    top-K overlap      = |topK(p) & topK(q)| / K
    policy entropy     = -sum_v p(v) log p(v)

One value per record, in record order, so that differences between two models can be paired on
the same problems (clustered intervals: `giftlab.stats.clustered_mean_ci`).

The token prefix every demonstration shares (the few-shot examples of a fewshot prompt) runs
through each model once (`PrefixBody`); each batch continues from a copy of its KV cache. The
hidden states are those of the whole sequence (tests/engine/test_drift_prefix.py)."""

from __future__ import annotations

import copy

import torch

from giftlab.data.tokenize import collate, common_prefix_length, encode_records
from giftlab.engine.objective import (
    CausalLMBody,
    Models,
    StatsSettings,
    after_prefix,
    forward,
    to_device,
    token_stats,
)
from giftlab.models.kv import CACHE_KEY

DRIFT_KEYS = ("kl_to_base", "topk_overlap", "policy_entropy")


class PrefixBody(torch.nn.Module):
    """CausalLMBody(model) for batches whose rows all start with the token ids `prefix` (right
    padding after): the prefix's hidden states and KV cache are computed once, and each batch
    runs only the tokens after it. Batches that do not start with the prefix run whole.

    Naive equivalent: CausalLMBody(model)(input_ids, attention_mask)."""

    def __init__(self, model, prefix: list[int]):

        super().__init__()
        self.body = CausalLMBody(model, shared_prefix=False)
        decoder = self.body._base().get_decoder()
        ids = torch.tensor([prefix], dtype=torch.long, device=next(model.parameters()).device)
        out = decoder(input_ids=ids, use_cache=True)
        self.prefix, self.hidden, self.cache = ids, out.last_hidden_state, getattr(out, CACHE_KEY)

    def head(self):
        return self.body.head()

    def forward(self, input_ids, attention_mask):
        n = self.prefix.shape[1]
        t = input_ids.shape[1]
        if t <= n or not bool((input_ids[:, :n] == self.prefix).all()):
            return self.body(input_ids, attention_mask)
        decoder = self.body._base().get_decoder()
        cache = copy.deepcopy(self.cache)  # the stored one serves every batch
        return after_prefix(decoder, self.hidden, cache, input_ids, attention_mask)


@torch.no_grad()
def drift_per_problem(
    policy,
    base,
    tokenizer,
    records,
    top_k: int = 10,
    batch: int = 16,
    max_length: int = 256,
    shared_prefix: bool = True,
) -> dict[str, list[float]]:
    """{key: [value per record]} for the keys of DRIFT_KEYS (see the module docstring);
    shared_prefix=False runs every demonstration whole (the same numbers, slower)."""
    cfg = StatsSettings(top_k=top_k)
    device = next(policy.parameters()).device  # the batches go where the model is
    examples, _ = encode_records(records, tokenizer, max_length, overlong="truncate")
    n_pre = common_prefix_length([e["input_ids"] for e in examples])
    if shared_prefix and n_pre >= 8:
        prefix = examples[0]["input_ids"][:n_pre]
        body, ref_body = PrefixBody(policy, prefix), PrefixBody(base, prefix)
    else:
        body, ref_body = CausalLMBody(policy), CausalLMBody(base)
    m = Models(policy=policy, body=body, ref=base, ref_body=ref_body)
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
