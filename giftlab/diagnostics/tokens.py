"""Teacher-forced token diagnostics: top-K overlap and summaries of per-token statistics."""

from __future__ import annotations

import torch


@torch.no_grad()
def topk_overlap(
    logits: torch.Tensor, ref_logits: torch.Tensor, k: int = 10, chunk_rows: int = 1024
) -> torch.Tensor:
    """|topK(pi) ∩ topK(pi0)| / K per token, (...), computed chunk by chunk over rows."""
    v = logits.shape[-1]
    k = min(k, v)
    z, zr = logits.reshape(-1, v), ref_logits.reshape(-1, v)
    out = torch.empty(z.shape[0], device=z.device)
    for s in range(0, z.shape[0], chunk_rows):
        a = z[s : s + chunk_rows].topk(k, dim=-1).indices  # (c, k)
        b = zr[s : s + chunk_rows].topk(k, dim=-1).indices
        out[s : s + chunk_rows] = (a.unsqueeze(-1) == b.unsqueeze(-2)).any(-1).float().mean(-1)
    return out.reshape(logits.shape[:-1])


def summarize_token_stats(
    stats: dict[str, torch.Tensor], valid: torch.Tensor, prefix: str = "diag/"
) -> dict[str, float]:
    """Means over valid tokens of every statistic, plus the gate's quantiles (10/50/90 %) and the
    fraction of tokens with w < 1/2 (where GIFT departs from SFT towards the base)."""
    out = {}
    n = int(valid.sum())
    if n == 0:
        return out
    for name, t in stats.items():
        out[f"{prefix}{name}"] = float(t[valid].double().mean())
    if "gate_w" in stats:
        w = stats["gate_w"][valid].double()
        q = torch.quantile(w, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, device=w.device))
        out[f"{prefix}gate_w_q10"], out[f"{prefix}gate_w_q50"], out[f"{prefix}gate_w_q90"] = map(
            float, q
        )
        out[f"{prefix}gate_w_frac_below_half"] = float((w < 0.5).double().mean())
    out[f"{prefix}tokens"] = n
    return out
