"""The evaluation sampler: `sample_groups` (giftlab.rl.rollout) at the speed of the work it must do.

Three costs of the plain path are not paid here:

- the token prefix every prompt shares (the few-shot demonstrations, ~150 of ~170 tokens) is
  run through the model once per evaluation (`shared_prefix`), not once per batch of prompts;
  each batch starts from a copy of its KV cache;
- each prompt's own tokens are run once and their cache repeated for the prompt's samples (as in
  `sample_groups`);
- a row that has produced its end token leaves the batch (its KV cache rows are dropped), so
  finished samples stop costing; `model.generate` keeps computing them until the last row ends.

Layout of a batch while sampling: [shared prefix | left padding | the prompt's own tokens |
completion], the padding masked out and the positions counted over real tokens only, so each row
sees exactly the tokens and positions it would see alone. The returned Rollout has the plain
path's layout (each whole prompt left-padded, then its completion). Tokens are drawn from softmax(logits / temperature) of
the model's own logits (greedy at temperature 0) with a generator seeded per call.

Naive equivalent: sample_groups(model, tokenizer, prompt_ids, group, ...) (the same distribution;
greedy completions are equal token for token, tests/rl/test_sampler.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from giftlab.data.tokenize import common_prefix_length
from giftlab.models.kv import CACHE_KEY, attends_to_all
from giftlab.rl.rollout import Rollout, completed_rollout, left_padded, model_device


@dataclass
class SharedPrefix:
    """The KV cache (batch 1) of `ids`, a token prefix of every prompt, for one model."""

    ids: list[int]
    cache: object
    model: object


@torch.no_grad()
def shared_prefix(model, prompt_ids: list[list[int]], min_tokens: int = 8) -> SharedPrefix | None:
    """The shared prefix of `prompt_ids` run once through `model`; None when it is shorter than
    `min_tokens` (nothing worth sharing)."""
    n = common_prefix_length(prompt_ids)
    if n < min_tokens:
        return None
    ids = torch.tensor([prompt_ids[0][:n]], dtype=torch.long, device=model_device(model))
    was_training = model.training
    model.eval()
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    model.train(was_training)
    return SharedPrefix(list(prompt_ids[0][:n]), getattr(out, CACHE_KEY), model)


@torch.no_grad()
def sample_groups_fast(
    model, tokenizer, prompt_ids, group, max_new_tokens, temperature, seed, prefix=None
) -> Rollout:
    """`group` completions of every prompt (module docstring); the same Rollout as
    giftlab.rl.rollout.sample_groups (left-padded prompt + completion, masks, texts), with its
    arguments (prompt_ids: list[list[int]], temperature 0: greedy) and the prompts' shared
    prefix (a SharedPrefix of this model, or None)."""
    device = model_device(model)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    n_pre = _check_prefix(model, prompt_ids, prefix)
    if n_pre and not attends_to_all(model, max(map(len, prompt_ids)) + max_new_tokens):
        prefix, n_pre = None, 0  # a sliding window shorter than the rows: prefill each whole
    was_training = model.training
    model.eval()
    ids, mask, positions, cache = _prefill(model, prompt_ids, prefix, n_pre, pad, device)
    # the group's samples of each prompt share its cache rows
    if cache is not None:
        cache.batch_repeat_interleave(group)
    ids, mask = ids.repeat_interleave(group, 0), mask.repeat_interleave(group, 0)
    pos = positions[:, -1].repeat_interleave(group, 0)
    rows = ids.shape[0]
    completion = torch.full((rows, max_new_tokens), pad, dtype=torch.long, device=device)
    comp_logp = torch.zeros((rows, max_new_tokens), dtype=torch.float32, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    active = torch.arange(rows, device=device)
    cur, cur_mask = ids[:, -1], mask
    for t in range(max_new_tokens):
        out = model(
            input_ids=cur[:, None],
            attention_mask=cur_mask,
            position_ids=pos[:, None],
            use_cache=True,
            **({CACHE_KEY: cache} if cache is not None else {}),
        )
        cache = getattr(out, CACHE_KEY)
        logits = out.logits[:, -1].float()  # (rows still running, V)
        if temperature > 0:
            probs = torch.softmax(logits / temperature, -1)
            nxt = torch.multinomial(probs, 1, generator=gen)[:, 0]
        else:
            nxt = logits.argmax(-1)
        completion[active, t] = nxt
        comp_logp[active, t] = torch.log_softmax(logits, -1).gather(-1, nxt[:, None])[:, 0]
        running = nxt != eos
        if t + 1 == max_new_tokens or not bool(running.any()):
            break
        if not bool(running.all()):  # finished rows leave the batch and its cache
            keep = running.nonzero()[:, 0]
            cache.batch_select_indices(keep)
            active, nxt, cur_mask, pos = active[keep], nxt[keep], cur_mask[keep], pos[keep]
        cur = nxt
        cur_mask = torch.cat([cur_mask, torch.ones_like(cur_mask[:, :1])], 1)
        pos = pos + 1
    model.train(was_training)
    completion, comp_logp = completion[:, : t + 1], comp_logp[:, : t + 1]
    # the Rollout's layout is the plain path's: each whole prompt left-padded, then its completion
    ids, mask = left_padded(prompt_ids, pad, device)
    ids, mask = ids.repeat_interleave(group, 0), mask.repeat_interleave(group, 0)
    return completed_rollout(ids, mask, completion, tokenizer, group, comp_logp)


def _check_prefix(model, prompt_ids, prefix) -> int:
    """The shared prefix's length (0 without one); ValueError when it is another model's or a
    prompt does not start with it."""
    if prefix is None:
        return 0
    if prefix.model is not model:
        raise ValueError("the shared prefix was computed with another model")
    n_pre = len(prefix.ids)
    if any(p[:n_pre] != prefix.ids or len(p) <= n_pre for p in prompt_ids):
        raise ValueError("a prompt does not start with the shared prefix (or is no longer)")
    return n_pre


def _prefill(model, prompt_ids, prefix, n_pre: int, pad: int, device):
    """(ids, mask, positions, cache) of the prompts, one row each: the shared prefix (from its
    cache), then each prompt's own tokens left-padded to end at the right, all but the last run
    once through the model (the last is the first decoding step's input)."""
    own = [p[n_pre:] for p in prompt_ids]
    width = max(len(p) for p in own)
    n = len(prompt_ids)
    ids = torch.full((n, n_pre + width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((n, n_pre + width), dtype=torch.long, device=device)
    if n_pre:
        ids[:, :n_pre] = torch.tensor(prefix.ids, dtype=torch.long, device=device)
        mask[:, :n_pre] = 1
    for i, p in enumerate(own):
        ids[i, n_pre + width - len(p) :] = torch.tensor(p, dtype=torch.long, device=device)
        mask[i, n_pre + width - len(p) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = None
    if n_pre:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(n)
    if width > 1:
        out = model(
            input_ids=ids[:, n_pre:-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, n_pre:-1],
            use_cache=True,
            logits_to_keep=1,
            **({CACHE_KEY: cache} if cache is not None else {}),
        )
        cache = getattr(out, CACHE_KEY)
    return ids, mask, positions, cache
