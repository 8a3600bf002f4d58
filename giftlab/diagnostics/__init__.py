"""Pure diagnostic functions: summaries of per-token statistics, top-K overlap with the base,
and (for evaluation) the unbiased pass@k estimator."""

from giftlab.diagnostics.sampling import distinct_correct, majority_at_k, pass_at_k
from giftlab.diagnostics.tokens import summarize_token_stats, topk_overlap

__all__ = [
    "distinct_correct",
    "majority_at_k",
    "pass_at_k",
    "summarize_token_stats",
    "topk_overlap",
]
