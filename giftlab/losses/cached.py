"""The reference from a cache: GIFT's target when only the reference's top-K tokens, the gold
token and the remaining (tail) mass are stored (`giftlab ref-cache`; docs/theory.md section 4b).

Per token, S = top-K ids and the gold y, with the reference's log-probabilities log pi0(a) for
a in S, and the tail T = V \\ S with mass tau = 1 - sum_{a in S} pi0(a). The tail is spread in
proportion to the policy's own tail (p = softmax(z), detached):

    pi0~(a) = pi0(a)                       a in S
    pi0~(a) = tau p(a) / p(T)              a in T

and GIFT's target is built from pi0~ exactly as from pi0: q~ = softmax(log pi0~ + beta onehot(y)).
On S the target is exact (pi0~(y) = pi0(y), so the normaliser Z = 1 + (e^beta - 1) pi0(y) is
exact too); the two targets differ only on T, where q puts tau/Z in the reference's tail shape
and q~ in the policy's. Hence, per token (r = pi0|T, u = p|T the two tail shapes):

    || grad_z L~ - grad_z L ||_1 = ||q - q~||_1 = (tau / Z) ||r - u||_1  <=  2 tau / Z  <=  2 tau
    | L~ - L | = (tau / Z) | H(u) - CE(r, u) |  <=  (tau / Z) (log |T| + max_T z - min_T z)

with Z = 1 + (e^beta - 1) pi0(y) >= 1. With K >= V (or tau = 0) both are exact; at beta = inf
(SFT) Z is infinite and the cache does not matter.

Naive equivalent: gift_loss(z, cached_reference_logp(z, ...), labels, beta).
"""

from __future__ import annotations

import torch

from giftlab.losses._common import safe_labels, upcast
from giftlab.losses.gift import gift_log_target

__all__ = ["CachedReference", "cached_gift_chunk", "cached_reference_logp", "truncation_bounds"]


def _in_support(v: int, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(c, V) bool: True at the cached top-K ids and the gold token of each row."""
    s = torch.zeros(ids.shape[0], v, dtype=torch.bool, device=ids.device)
    s.scatter_(-1, ids.long(), True)
    s.scatter_(-1, labels.long().clamp(min=0).unsqueeze(-1), True)
    return s


@torch.no_grad()
def cached_reference_logp(
    policy_logits: torch.Tensor,
    ids: torch.Tensor,
    logp: torch.Tensor,
    gold_logp: torch.Tensor,
    log_tail: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """log pi0~ (c, V) of the module docstring, in the policy logits' precision (float32 for
    half / bf16, float64 kept).

    policy_logits: (c, V) the policy's logits (after its logit map; no gradient is taken).
    ids, logp: (c, K) the reference's top-K token ids and log-probabilities.
    gold_logp: (c,) log pi0(y).  log_tail: (c,) log tau (-inf: no tail).  labels: (c,) y.
    """
    z = upcast(policy_logits.detach())
    v = z.shape[-1]
    support = _in_support(v, ids, labels)
    lp = torch.log_softmax(z, -1)
    tail_lp = lp.masked_fill(support, float("-inf"))
    log_pt = torch.logsumexp(tail_lp, -1, keepdim=True)  # log p(T); -inf when T is empty
    lt = log_tail.to(z.dtype).unsqueeze(-1)
    has_tail = torch.isfinite(log_pt) & torch.isfinite(lt)
    row = torch.where(has_tail & ~support, tail_lp - log_pt + lt, float("-inf"))
    row.scatter_(-1, ids.long(), logp.to(z.dtype))
    row.scatter_(-1, labels.long().clamp(min=0).unsqueeze(-1), gold_logp.to(z.dtype).unsqueeze(-1))
    return row


@torch.no_grad()
def truncation_bounds(
    policy_logits: torch.Tensor,
    ids: torch.Tensor,
    gold_logp: torch.Tensor,
    log_tail: torch.Tensor,
    labels: torch.Tensor,
    beta,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token (c,), the bounds of the module docstring on the error of the gradient w.r.t. the
    logits (L1 norm) and of the loss, for a GIFT target at `beta` (a float or (c,) gains)."""
    z = upcast(policy_logits.detach())
    support = _in_support(z.shape[-1], ids, labels)
    tau = log_tail.to(z.dtype).exp()
    b = torch.as_tensor(beta, dtype=z.dtype, device=z.device).expand_as(tau)
    finite = torch.isfinite(b)
    z_norm = torch.where(
        finite, 1 + torch.expm1(b.where(finite, 0)) * gold_logp.to(z.dtype).exp(), torch.inf
    )
    share = tau / z_norm
    n_tail = (~support).sum(-1).to(z.dtype)
    zt_max = z.masked_fill(support, float("-inf")).amax(-1)
    zt_min = z.masked_fill(support, float("inf")).amin(-1)
    spread = torch.where(n_tail > 0, zt_max - zt_min, 0.0)
    grad_bound = 2 * share
    loss_bound = share * (torch.log(n_tail.clamp(min=1)) + spread)
    return grad_bound, loss_bound


class CachedReference:
    """The fused losses' reference from cached rows: called per chunk of tokens [s, e) with the
    policy's logits of the chunk, it returns log pi0~ (e - s, V) (cached_reference_logp).

    rows: an object with ids (n, K), logp (n, K), gold (n,), tail (n,) (giftlab.engine.cache.CachedRows);
    labels: (n,) the gold ids of the n tokens; vocab: V."""

    needs_policy = True

    def __init__(self, rows, labels: torch.Tensor, vocab: int):
        self.rows, self.labels, self.vocab = rows, labels.reshape(-1), vocab
        if rows.gold.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"the cache holds {rows.gold.shape[0]} rows for these tokens, the batch has "
                f"{self.labels.shape[0]} response tokens: was it built from this data, tokenizer "
                "and max_length?"
            )

    def __call__(self, s: int, e: int, policy_logits: torch.Tensor) -> torch.Tensor:
        r = self.rows
        return cached_reference_logp(
            policy_logits, r.ids[s:e], r.logp[s:e], r.gold[s:e], r.tail[s:e], self.labels[s:e]
        )

    def chunk(self, s, e, z, labels, beta, row_scale):
        """The chunk's (loss, gradient) by cached_gift_chunk (smoothing 0; the fused loss uses
        the row form, cached_reference_logp, with smoothing or when statistics are asked)."""
        r = self.rows
        return cached_gift_chunk(
            z, r.ids[s:e], r.logp[s:e], r.gold[s:e], r.tail[s:e], labels, beta, row_scale
        )

    def gold_logp(self, s: int, e: int) -> torch.Tensor:
        """log pi0(y) of tokens [s, e): exact from the cache, no policy needed (gift_seq's gains)."""
        return self.rows.gold[s:e]


def cached_gift_chunk(z, ids, logp, gold, log_tail, labels, beta, row_scale):
    """The GIFT loss and gradient of a chunk from cached rows without forming log pi0~ (c, V):
    the same numbers as `_torch_chunk(z, cached_reference_logp(...), ...)` (smoothing 0), with
    four passes over (c, V) where that takes about fifteen.

    The target lives on S (top-K and gold) and the tail T as a whole: GIFT's target on the
    compressed distribution (pi0(S), tau) gives q(S) and Q_T = q(T); inside T, q~ follows the
    policy, q~(a) = Q_T p(a) / p(T). Per token:

        L = -sum_S q(a) log p(a) - (Q_T / p(T)) sum_T p(a) log p(a)
        dL/dz = p - q~:  p(a) (1 - Q_T / p(T)) on T,  p(a) - q(a) on S

    z: (c, V) policy logits (after the model's logit map); ids, logp: (c, K); gold, log_tail:
    (c,); labels: (c,) gold ids (-100: ignored); beta: (c,) gains; row_scale: (c,).
    Returns (per-token loss (c,), gradient (c, V)), float32 (float64 kept).
    """

    valid = labels != -100
    y = safe_labels(labels, valid)
    lp = torch.log_softmax(upcast(z), -1)  # (c, V)
    k = ids.shape[1]
    idx = torch.cat([ids.long(), y[:, None]], -1)  # (c, K + 1): S, the gold last
    dup = torch.cat([ids.long() == y[:, None], torch.zeros_like(y[:, None], dtype=torch.bool)], -1)
    lp_s = lp.gather(-1, idx)
    grad = lp.exp()  # becomes the gradient
    p_s = grad.gather(-1, idx)
    grad.scatter_(-1, idx, 0.0)  # p on T only
    # p(T) = 1 - p(S) without a pass over V; where that cancels (p(T) small), the tail's own sum
    p_t = (1 - torch.where(dup, 0.0, p_s).sum(-1)).clamp(min=0)
    small = p_t < 1e-3
    if bool(small.any()):
        p_t = p_t.clone()
        p_t[small] = grad[small].sum(-1)
    tail_plogp = torch.bmm(grad[:, None, :], lp[:, :, None])[:, 0, 0]  # sum_T p log p
    # GIFT's target on the compressed distribution: S (the gold's top-K copy removed), then T
    compressed = torch.cat([logp.to(lp.dtype), gold.to(lp.dtype)[:, None]], -1)
    compressed = compressed.masked_fill(dup, float("-inf"))
    compressed = torch.cat([compressed, log_tail.to(lp.dtype)[:, None]], -1)  # (c, K + 2)
    gold_pos = torch.full_like(y, k)
    log_q = gift_log_target(compressed, gold_pos, beta.to(lp.dtype))
    q_s = log_q[:, : k + 1].exp()
    q_s = torch.where(dup, q_s[:, k : k + 1], q_s)  # the top-K copy of the gold: the gold's q
    q_t = log_q[:, k + 1].exp()
    ratio = torch.where(p_t > 0, q_t / p_t.clamp(min=torch.finfo(lp.dtype).tiny), 0.0)
    per_token = -(torch.where(dup, 0.0, q_s) * lp_s).sum(-1) - ratio * tail_plogp
    scale = row_scale.to(grad.dtype)
    grad.mul_(((1 - ratio) * scale)[:, None])  # one pass: the tail's factor and the row's scale
    grad.scatter_(-1, idx, (p_s - q_s) * scale[:, None])  # duplicates write the same value
    return torch.where(valid, per_token, 0.0), grad
