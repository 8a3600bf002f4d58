"""Rollouts: batched sampling of whole groups with a KV cache, verifier rewards, and the
teacher-forced log-probabilities of the sampled tokens.

`sample_groups` left-pads every prompt of the step, runs the prompts through the model once each
(not once per sample: the prompt's prefill was 88% of a step's sampling time at group 8), repeats
that KV cache `group` times and calls `model.generate` once for the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from giftlab.data.tokenize import prompt_text
from giftlab.data.verifiers import VerifierError
from giftlab.models.head import lm_head
from giftlab.models.kv import CACHE_KEY, attends_to_all


@dataclass
class Rollout:
    sequences: torch.Tensor  # (N, Tp + Tc) left-padded prompt + completion
    attention_mask: torch.Tensor  # (N, Tp + Tc)
    completion_mask: torch.Tensor  # (N, Tp + Tc) True on completion tokens up to and including eos
    prompt_index: torch.Tensor  # (N,) which prompt of the step each row answers
    texts: list[str]  # decoded completions
    # (N, Tp + Tc - 1) log pi(y_t | y_<t) of the sampled tokens as the sampler saw them (float32,
    # untempered), aligned with completion_mask[:, 1:], 0 elsewhere; None: not recorded
    sample_logp: torch.Tensor | None = None

    def select(self, rows) -> Rollout:
        """The rollout of the given row indices (a 1-D index tensor or list), in that order."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.sequences.device)
        return Rollout(
            self.sequences[idx],
            self.attention_mask[idx],
            self.completion_mask[idx],
            self.prompt_index[idx],
            [self.texts[int(i)] for i in idx],
            None if self.sample_logp is None else self.sample_logp[idx],
        )


def model_device(model) -> torch.device:
    """The device of the model's first parameter: where its inputs must go."""
    return next(model.parameters()).device


def encode_prompts(tokenizer, records) -> list[list[int]]:
    return [
        tokenizer(prompt_text(tokenizer, r["messages"]), add_special_tokens=False)["input_ids"]
        for r in records
    ]


def left_padded(prompt_ids: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) (P, width): each prompt right-aligned after `pad` tokens (mask 0 there)."""
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long, device=device)
    for i, p in enumerate(prompt_ids):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long, device=device)
        mask[i, width - len(p) :] = 1
    return ids, mask


def completed_rollout(ids, mask, completion, tokenizer, group: int, sample_logp=None) -> Rollout:
    """The Rollout of left-padded prompts `ids`/`mask` (N, Tp), already repeated `group` times,
    and their sampled `completion` (N, Tc): completion tokens count up to and including the first
    end token, pad after it. sample_logp: (N, Tc) the sampler's log-probs of the completion."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    is_eos = completion == eos
    comp_mask = ~((is_eos.cumsum(1) - is_eos.long()) > 0)
    full_mask = torch.cat([mask, comp_mask.long()], dim=1)
    completion_mask = torch.cat([torch.zeros_like(mask, dtype=torch.bool), comp_mask], dim=1)
    texts = tokenizer.batch_decode(
        torch.where(comp_mask & ~is_eos, completion, pad), skip_special_tokens=True
    )
    index = torch.arange(ids.shape[0] // group, device=ids.device).repeat_interleave(group)
    sequences = torch.cat([ids, torch.where(comp_mask, completion, pad)], dim=1)
    if sample_logp is not None:
        sample_logp = torch.cat(
            [torch.zeros_like(mask[:, 1:], dtype=sample_logp.dtype), sample_logp], 1
        )
        sample_logp = sample_logp * completion_mask[:, 1:]
    texts = [t.strip() for t in texts]
    return Rollout(sequences, full_mask, completion_mask, index, texts, sample_logp)


@torch.no_grad()
def sample_groups(
    model,
    tokenizer,
    prompt_ids: list[list[int]],
    group: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    device=None,
) -> Rollout:
    """Sample `group` completions for every prompt in one batched generate call, the prompts'
    prefill computed once per prompt and its KV cache repeated for the group. Every tensor is
    made on `device` (None: the model's own device)."""
    if device is None:
        device = model_device(model)
    pad = tokenizer.pad_token_id
    ids, mask = left_padded(prompt_ids, pad, device)  # generation continues from the last column
    width = ids.shape[1]
    was_training = model.training
    model.eval()
    cache = None
    if width > 1:  # prefill all but the last prompt token, once per prompt, as generate would
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, :-1]
        prefill = model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions,
            use_cache=True,
        )
        cache = prefill.cache if CACHE_KEY == "cache" else prefill.past_key_values
        cache.batch_repeat_interleave(group)
    ids, mask = ids.repeat_interleave(group, 0), mask.repeat_interleave(group, 0)
    torch.manual_seed(seed)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        **{CACHE_KEY: cache},
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else None,
        top_p=None,
        top_k=None,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )
    model.train(was_training)
    return completed_rollout(ids, mask, out[:, width:], tokenizer, group)


def token_logp_and_entropy(
    model, rollout: Rollout, with_entropy: bool = False, shared_prefix: bool = True, layout=None
):
    """log pi(y_t | y_<t) of every sampled token (N, T - 1), aligned with completion_mask[:, 1:]
    (0 elsewhere); optionally the policy's entropy there. Gradients flow when grad is enabled.

    Only completion positions reach the head (the prompt's (tokens x V) logits are never formed);
    the head is the model's own (bias, soft-capping, logit scale: giftlab.models.head).
    shared_prefix: the token prefix every row's prompt shares (a few-shot prompt's ~150 of ~170
    tokens) runs once, not once per row (`prefix_layout`); the same values to float precision,
    gradients included (tests/rl/test_shared_prefix_scoring.py). `layout`: the rollout's own,
    given (e.g. `prefix_layout(whole).select(rows)` for some rows of a step, so that they are
    laid out as in the whole step).
    Naive equivalent: log_softmax(model(sequences).logits[:, :-1]).gather(-1, sequences[:, 1:]).
    """
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    mask = rollout.completion_mask[:, 1:]
    if layout is None and shared_prefix:
        layout = prefix_layout(rollout)
    if layout is not None and not attends_to_all(m, rollout.sequences.shape[1]):
        layout = None  # a sliding window shorter than the rows: each sequence whole
    if layout is None:
        # positions count real tokens only, as when sampling (a left-padded row is scored as it
        # was sampled: models with absolute position embeddings, GPT-2, depend on it)
        positions = (rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = m.get_decoder()(
            input_ids=rollout.sequences,
            attention_mask=rollout.attention_mask,
            position_ids=positions,
        ).last_hidden_state
        at = hidden[:, :-1][mask]  # (n, H) the positions that predict completion tokens
    else:
        at = _rest_hidden(m, rollout, layout)
    logits = lm_head(m).logits(at)  # (n, V)
    logits = logits if logits.dtype == torch.float64 else logits.float()  # float64 stays
    logp_all = torch.log_softmax(logits, -1)
    targets = rollout.sequences[:, 1:][mask]
    logp = torch.zeros(mask.shape, dtype=logp_all.dtype, device=logp_all.device)
    logp = logp.masked_scatter(mask, logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1))
    entropy = None
    if with_entropy:
        ent = -(logp_all.exp() * logp_all).sum(-1)
        entropy = torch.zeros_like(logp).masked_scatter(
            mask, ent.detach() if not ent.requires_grad else ent
        )
    return logp, entropy


@dataclass
class PrefixLayout:
    """A rollout re-laid as [shared prefix (n tokens, once) | left padding | each prompt's own
    tokens | completion]: the rows' `rest` (N, L + Tc) after the prefix, its attention mask and
    its completion mask, and the prefix's token ids (1, n)."""

    prefix: torch.Tensor
    rest: torch.Tensor
    rest_mask: torch.Tensor
    rest_completion: torch.Tensor

    def select(self, rows) -> PrefixLayout:
        """The layout of the given rows (as Rollout.select), the same prefix and columns."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.rest.device)
        return PrefixLayout(
            self.prefix, self.rest[idx], self.rest_mask[idx], self.rest_completion[idx]
        )


def prefix_layout(rollout: Rollout, min_tokens: int = 8) -> PrefixLayout | None:
    """The rollout's shared-prefix layout, or None when its prompts share fewer than
    `min_tokens` leading tokens (each prompt keeps at least one token of its own)."""
    comp = rollout.completion_mask
    started = comp.any(0).nonzero()
    if started.numel() == 0:
        return None
    width = int(started[0])  # Tp: the completion starts in this column on every row
    pmask = rollout.attention_mask[:, :width]
    lengths = pmask.sum(1)
    shortest = int(lengths.min())
    if shortest - 1 < min_tokens:
        return None
    start = width - lengths  # the first real token of each left-padded prompt
    cols = start[:, None] + torch.arange(shortest - 1, device=comp.device)[None, :]
    heads = rollout.sequences.gather(1, cols)  # (N, shortest - 1) each prompt's leading tokens
    differs = (heads != heads[:1]).any(0).nonzero()
    n = int(differs[0]) if differs.numel() else shortest - 1
    if n < min_tokens:
        return None
    own = lengths - n  # >= 1 token of each prompt after the prefix
    keep = int(own.max())
    rest_prompt_mask = (
        torch.arange(keep, device=comp.device)[None, :] >= (keep - own)[:, None]
    ).long()
    return PrefixLayout(
        prefix=heads[:1, :n],
        rest=rollout.sequences[:, width - keep :],
        rest_mask=torch.cat([rest_prompt_mask, rollout.attention_mask[:, width:]], 1),
        rest_completion=comp[:, width - keep :],
    )


def _rest_hidden(m, rollout: Rollout, layout: PrefixLayout) -> torch.Tensor:
    """(n, H) the hidden states that predict the completion tokens, in the order of
    rollout.completion_mask[:, 1:]'s True entries: the prefix runs once (with grad when grad is
    enabled: its KV cache is repeated for the rows, so its gradient sums theirs)."""
    decoder = m.get_decoder()
    n = layout.prefix.shape[1]
    out = decoder(input_ids=layout.prefix, use_cache=True)
    cache = getattr(out, CACHE_KEY)
    rows = layout.rest.shape[0]
    cache.batch_repeat_interleave(rows)
    positions = (n + layout.rest_mask.cumsum(-1) - 1).clamp(min=n)
    full_mask = torch.cat([layout.rest_mask.new_ones(rows, n), layout.rest_mask], 1)
    hidden = decoder(
        input_ids=layout.rest,
        attention_mask=full_mask,
        position_ids=positions,
        use_cache=True,
        **{CACHE_KEY: cache},
    ).last_hidden_state  # (N, L + Tc, H)
    return hidden[:, :-1][layout.rest_completion[:, 1:]]


def verifier_rewards(records, rollout: Rollout, score_fn, binary: bool = True):
    """Score every completion (reward 1[score == 1] when `binary`, else the score).

    A verifier that raises or returns a non-finite score is a failure, never a 0.0 reward: its
    reward and score are NaN and its reason is listed, naming the record.
    Returns (rewards (N,) float tensor, scores list, failures: list of messages).
    """
    rewards, scores, failures = [], [], []
    for i, text in zip(rollout.prompt_index.tolist(), rollout.texts):
        where = records[i].get("where", f"prompt {i}")
        try:
            s = float(score_fn(records[i], text))
            if not math.isfinite(s):
                raise VerifierError(f"{where}: the verifier returned {s}; scores must be finite")
        except VerifierError as err:
            s = math.nan
            failures.append(str(err))
        except Exception as err:  # noqa: BLE001 - a user's verifier: reported, not hidden
            s = math.nan
            failures.append(f"{where}: the verifier raised {type(err).__name__}: {err}")
        scores.append(s)
        rewards.append(s if not binary or math.isnan(s) else float(s == 1.0))
    return torch.tensor(rewards, device="cpu"), scores, failures
