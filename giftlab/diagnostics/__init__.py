"""Pure diagnostic functions: summaries of per-token statistics, top-K overlap with the base,
and (for evaluation) the unbiased pass@k estimator."""

from giftlab.diagnostics.tokens import summarize_token_stats, topk_overlap

__all__ = ["summarize_token_stats", "topk_overlap"]
