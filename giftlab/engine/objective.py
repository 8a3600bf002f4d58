"""The objective on a model, shared by the trainer, drift, evaluation and GIFTTrainer: a response
batch's hidden states at the response positions only, the objective's sum over those tokens, and
per-token statistics of the policy, the reference and GIFT's target.

`settings` is any object with the objective's settings (giftlab.losses.settings.ObjectiveSettings:
objective, beta, eta, smoothing, ...) and the head's (chunked, chunk_size, kernel, top_k):
a TrainConfig, a GIFTConfig, or `head_settings(...)`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from giftlab.data import collate
from giftlab.diagnostics import topk_overlap
from giftlab.losses import (
    OBJECTIVES,
    CachedReference,
    Objective,
    cached_reference_logp,
    fused_linear_gift_loss,
    fused_linear_sequence_consistent_gift_loss,
    gift_token_stats,
    sequence_gains_from_logits,
)
from giftlab.losses.gift import DEFAULT_BETA
from giftlab.models.head import Head, lm_head
from giftlab.models.kv import CACHE_KEY


class CausalLMBody(torch.nn.Module):
    """The model without its head: forward returns the final hidden states (B, T, H). Wrapped by
    DDP, so that the chunked loss can use the lm_head weight directly.

    shared_prefix: when every row of a batch starts with the same tokens (>= 8, unpadded: a
    few-shot prompt's demonstrations, a chat template's system prompt), they run once (with grad
    when grad is on: their KV cache is repeated for the rows, so their gradient sums the rows')
    and each row runs only the tokens after them. The same hidden states and gradients to float
    precision (tests/engine/test_shared_prefix_body.py). Off under gradient checkpointing (no
    KV cache there). Naive equivalent: decoder(input_ids, attention_mask).last_hidden_state."""

    def __init__(self, model, shared_prefix: bool = True):
        super().__init__()
        self.model = model
        self.shared_prefix = shared_prefix

    def _base(self):
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def head(self) -> Head:
        """The model's head: output embedding, bias and logit map (giftlab.models.head)."""
        return lm_head(self._base())

    def prefix_length(self, input_ids, attention_mask, min_tokens: int = 8) -> int:
        """The number of leading columns every row shares, unpadded (0: none worth sharing);
        each row keeps at least one column of its own."""
        b, t = input_ids.shape
        if not self.shared_prefix or b < 2 or _checkpointing(self._base()):
            return 0
        same = (input_ids == input_ids[:1]).all(0) & attention_mask.bool().all(0)  # (T,)
        differs = (~same[: t - 1]).nonzero()
        n = int(differs[0]) if differs.numel() else t - 1
        return n if n >= min_tokens else 0

    def forward(self, input_ids, attention_mask):
        decoder = self._base().get_decoder()
        n = self.prefix_length(input_ids, attention_mask)
        if n:
            out = decoder(input_ids=input_ids[:1, :n], use_cache=True)
            cache = getattr(out, CACHE_KEY, None)
            if cache is not None:
                return after_prefix(
                    decoder, out.last_hidden_state, cache, input_ids, attention_mask
                )
        return decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def after_prefix(decoder, prefix_hidden, cache, input_ids, attention_mask):
    """(B, T, H) hidden states of right-padded rows that all start with a prefix of n tokens
    whose hidden states (1, n, H) and KV cache (batch 1, consumed) are given: the cache is
    repeated for the B rows and only columns n.. run, at positions n.. T-1."""
    b, t = input_ids.shape
    n = prefix_hidden.shape[1]
    cache.batch_repeat_interleave(b)
    positions = torch.arange(n, t, device=input_ids.device).expand(b, t - n)
    rest = decoder(
        input_ids=input_ids[:, n:],
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=True,
        **{CACHE_KEY: cache},
    ).last_hidden_state  # (B, T - n, H)
    return torch.cat([prefix_hidden.expand(b, n, -1), rest], 1)


def _checkpointing(model) -> bool:
    """Activation (gradient) checkpointing is on: the model keeps no KV cache in training."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # 5.x, older
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


@dataclass
class StatsSettings:
    """The settings `token_stats` and `objective_sum` read, given explicitly (a TrainConfig or a
    GIFTConfig has them too): the GIFT target the statistics describe and the fused head's."""

    objective: str = "sft"
    beta: float = DEFAULT_BETA
    eta: float = 20.0
    smoothing: float = 0.0
    top_k: int = 10
    chunked: bool = True
    chunk_size: int = 0
    kernel: str = "auto"
    hyper: dict | None = None


@dataclass(kw_only=True)
class Models:
    """The policy and the reference as the objective sees them (built by keyword only: a field
    added later cannot shift the others)."""

    policy: torch.nn.Module  # the HF model (FSDP-sharded in fsdp mode)
    body: torch.nn.Module  # CausalLMBody(policy), DDP-wrapped in ddp mode
    ref: torch.nn.Module | None  # the reference HF model (the policy itself with LoRA)
    ref_body: CausalLMBody | None
    lora: bool = False
    fsdp: bool = False
    ref_cache: object = None  # a giftlab.engine.cache.RefCache: no reference model runs

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
    ref_cached: object = None  # giftlab.engine.cache.CachedRows of the n tokens (ref_cache runs)

    @property
    def n(self) -> int:
        return self.labels.shape[0]


def forward(m: Models, batch: dict, with_ref: bool, split: str = "train") -> Forward:
    """Hidden states (or logits) at the response positions: only these reach the head, so its
    (tokens x V) work scales with response tokens, not with prompt length. With a reference
    cache the reference's rows of the batch's examples (batch["example_index"], in `split`) are
    read instead of running a reference model."""
    labels = batch["labels"][:, 1:]
    valid = labels != -100
    rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)[valid]
    f = Forward(labels=labels[valid], rows=rows)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if m.fsdp:
        f.logits = m.policy(input_ids=ids, attention_mask=mask).logits[:, :-1][valid]  # (n, V)
    else:
        f.hidden = m.body(ids, mask)[:, :-1][valid]  # (n, H)
    if with_ref and m.ref_cache is not None:
        index = batch["example_index"].tolist()
        f.ref_cached = m.ref_cache.rows(split, index, labels.device)
    elif with_ref:
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
        kw = {
            "bias": head.bias,
            "logit_map": head.post,
            "chunk_size": cfg.chunk_size or None,
            "kernel": cfg.kernel,
        }
        if obj.needs_ref:
            kw |= {"stats": stats} | _fused_reference(m, f, head.weight.shape[0])
        return obj.fused(f.hidden, head.weight, labels, **kw, **hyper) * f.n
    logits = f.logits if m.fsdp else head.logits(f.hidden)  # (n, V)
    ref_logits = _dense_reference(m, f, logits) if obj.needs_ref else None
    if obj.needs_old_logp:  # the sampling policy is the current one: ratio 1, gradient of r
        z = logits.detach()
        z = z if z.dtype == torch.float64 else z.float()  # the loss's own precision
        hyper["old_logp"] = torch.log_softmax(z, -1).gather(-1, f.labels[:, None])[:, 0]
    if obj.per_sequence:
        logits, ref_logits = logits[None], ref_logits[None]
    return obj.loss(logits, ref_logits, labels, reduction="sum", **hyper)


@torch.no_grad()
def token_stats(cfg, m: Models, f: Forward) -> dict:
    """Per-token statistics (n,) of the policy, the reference and the GIFT target the objective
    describes, from this forward's hidden states: no model pass of its own. The target's
    parameters come from the objective's own hyper-parameters (the registry's mapping, as its
    loss reads them: a registered objective whose temperature is its own setting describes that
    temperature); settings it does not take (SFT and the baselines) fall back to the config's
    beta, eta and smoothing. A per-sequence objective's target is the exact gains at eta."""
    obj = OBJECTIVES.get(cfg.objective)
    if obj is not None and obj.target is not None and obj.fused is not None and not m.fsdp:
        return _target_stats(cfg, obj, m, f)
    target = target_settings(cfg, obj)
    per_sequence = obj is not None and obj.per_sequence
    if m.fsdp:
        beta = target["beta"]
        ref_logits = _dense_reference(m, f, f.logits)
        if per_sequence:
            beta = sequence_gains_from_logits(
                ref_logits[None],
                f.labels[None],
                target["eta"],
                target["smoothing"],
                segment_ids=f.rows[None],
            )[0]
        stats = gift_token_stats(f.logits, ref_logits, f.labels, beta, target["smoothing"])
        stats["topk_overlap"] = topk_overlap(f.logits, ref_logits, cfg.top_k)
        return stats
    head = m.head()
    stats = {}
    kw = {
        **_fused_reference(m, f, head.weight.shape[0], detach=False),
        "bias": head.bias,
        "logit_map": head.post,
        "smoothing": target["smoothing"],
        "stats": stats,
        "kernel": cfg.kernel,
    }
    hidden = f.hidden.detach()
    if per_sequence:
        fused_linear_sequence_consistent_gift_loss(
            hidden,
            head.weight.detach(),
            f.labels[None],
            eta=target["eta"],
            segment_ids=f.rows[None],
            **kw,
        )
    else:
        fused_linear_gift_loss(hidden, head.weight.detach(), f.labels, beta=target["beta"], **kw)
    stats["topk_overlap"] = _topk(cfg, m, f, hidden)
    return stats


def target_settings(cfg, obj: Objective | None) -> dict:
    """{beta, eta, smoothing} of the GIFT target the statistics describe: the objective's own
    values for the keywords its loss takes (its registry mapping), the config's for the rest."""
    own = obj.hyper_values(cfg) if obj is not None else {}
    return {
        k: own.get(k, getattr(cfg, k, default))
        for k, default in (("beta", DEFAULT_BETA), ("eta", 20.0), ("smoothing", 0.0))
    }


def _target_stats(cfg, obj: Objective, m: Models, f: Forward) -> dict:
    """A target objective's statistics (a user's variant): its own target at its own
    hyper-parameters, from its fused pass."""
    head, stats = m.head(), {}
    hidden = f.hidden.detach()
    ref = _fused_reference(m, f, head.weight.shape[0])
    kw = {"bias": head.bias, "logit_map": head.post, "stats": stats, "kernel": cfg.kernel}
    obj.fused(hidden, head.weight.detach(), f.labels, **kw, **ref, **obj.hyper_values(cfg))
    stats["topk_overlap"] = _topk(cfg, m, f, hidden)
    return stats


def _fused_reference(m: Models, f: Forward, vocab: int, detach: bool = True) -> dict:
    """The fused losses' reference keywords: the cached rows (ref_logits_fn), or the reference
    model's hidden states, head weight, bias and logit map."""
    if f.ref_cached is not None:
        return {"ref_logits_fn": CachedReference(f.ref_cached, f.labels, vocab)}
    ref_head = m.ref_body.head()
    return {
        "ref_hidden": f.ref_hidden,
        "ref_weight": ref_head.weight.detach() if detach else ref_head.weight,
        "ref_bias": _detached(ref_head.bias) if detach else ref_head.bias,
        "ref_logit_map": ref_head.post,
    }


def _dense_reference(m: Models, f: Forward, policy_logits: torch.Tensor) -> torch.Tensor:
    """The reference's logits (n, V) for the dense losses: from the cache (log pi0~, filled from
    the policy's own tail), the FSDP forward, or the reference's head."""
    if f.ref_cached is not None:
        r = f.ref_cached
        return cached_reference_logp(policy_logits, r.ids, r.logp, r.gold, r.tail, f.labels)
    if m.fsdp:
        return f.ref_logits
    return m.ref_body.head().logits(f.ref_hidden)


def _topk(cfg, m: Models, f: Forward, hidden) -> torch.Tensor:
    """Top-K overlap of policy and reference; from the cached ids when there is a cache (NaN
    when the cache keeps fewer than top_k tokens)."""
    if f.ref_cached is None:
        return topk_from_hidden(hidden, f.ref_hidden, m.head(), m.ref_body.head(), cfg.top_k)
    ids, logits = f.ref_cached.ids, m.head().logits(hidden)
    k = min(cfg.top_k, logits.shape[-1])
    if ids.shape[1] < k:
        return torch.full((f.n,), float("nan"), device=hidden.device)
    pol = logits.topk(k, -1).indices
    ref = ids[:, :k].long()  # the cache's ids are sorted by the reference's probability
    return (pol[:, :, None] == ref[:, None, :]).any(-1).float().mean(-1)


def topk_from_hidden(hidden, ref_hidden, head, ref_head, k, rows=256):
    parts = [
        topk_overlap(
            head.logits(hidden[s : s + rows]), ref_head.logits(ref_hidden[s : s + rows]), k
        )
        for s in range(0, hidden.shape[0], rows)
    ]
    return torch.cat(parts) if parts else hidden.new_zeros(0)


def _detached(t):
    return None if t is None else t.detach()


@torch.no_grad()
def heldout_stats(cfg, m: Models, examples, pad_id, device) -> dict:
    """Held-out means over response tokens of every statistic; val/ce is the one-hot CE."""
    sums, gates, n = {}, [], 0
    m.policy.eval()
    for s in range(0, len(examples), cfg.batch_size):
        batch = indexed_batch(examples, range(s, min(s + cfg.batch_size, len(examples))), pad_id)
        f = forward(m, to_device(batch, device), with_ref=True, split="val")
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


def with_topk(cfg, m, f, stats):
    """The fused loss pass's statistics, plus top-K overlap from the same hidden states."""
    stats["topk_overlap"] = _topk(cfg, m, f, f.hidden.detach())
    return stats


def indexed_batch(examples, indices, pad_id) -> dict:
    """collate of examples[i] for i in indices, with their indices as example_index (B,): the
    rows a reference cache holds for them."""
    indices = list(indices)
    batch = collate([examples[i] for i in indices], pad_id)
    batch["example_index"] = torch.tensor(indices, dtype=torch.long, device="cpu")
    return batch


def to_device(batch, device):
    return {k: v.to(device) for k, v in batch.items()}


class Engine:
    """The objective on a model: what the training loop, GIFTTrainer and drift call.

        engine = Engine(settings=cfg, models=m)           # settings: objective + head settings
        f = engine.forward(batch)                          # response hidden states (and reference)
        total = engine.loss(f, stats)                      # sum of the objective over f's tokens
        stats = engine.stats(f, stats)                     # per-token statistics of f
        row = engine.heldout(examples, pad_id, device)     # held-out means (val/...)

    The objective is the registry's entry for settings.objective (or `objective` given)."""

    def __init__(self, *, settings, models: Models, objective: Objective | None = None):
        self.settings = settings
        self.models = models
        self.objective = objective if objective is not None else OBJECTIVES[settings.objective]

    def forward(self, batch: dict, *, with_ref: bool | None = None, split: str = "train"):
        """Forward of `batch`; the reference runs when the objective needs it (or with_ref)."""
        with_ref = self.objective.needs_ref if with_ref is None else with_ref
        return forward(self.models, batch, with_ref, split)

    def loss(self, f: Forward, stats: dict | None = None) -> torch.Tensor:
        """objective_sum: the sum over f's response tokens (a dict `stats` is filled by a fused
        GIFT pass with that pass's statistics)."""
        return objective_sum(self.settings, self.objective, self.models, f, stats)

    def stats(self, f: Forward, fused_stats: dict | None = None) -> dict:
        """Per-token statistics of f: the fused loss pass's (plus top-K overlap) when it filled
        any, else a pass of their own (token_stats)."""
        if fused_stats:
            return with_topk(self.settings, self.models, f, fused_stats)
        return token_stats(self.settings, self.models, f)

    def heldout(self, examples, pad_id, device) -> dict:
        return heldout_stats(self.settings, self.models, examples, pad_id, device)
