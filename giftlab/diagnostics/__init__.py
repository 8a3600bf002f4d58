"""Pure diagnostic functions: summaries of per-token statistics, top-K overlap with the base,
and (for evaluation) the unbiased pass@k estimator. The token functions need torch and load on
first use; the sample estimators are numpy only."""

from giftlab.diagnostics.sampling import distinct_correct, majority_at_k, pass_at_k

__all__ = [
    "distinct_correct",
    "majority_at_k",
    "pass_at_k",
    "summarize_token_stats",
    "topk_overlap",
]


def __getattr__(name):
    if name in ("summarize_token_stats", "topk_overlap"):
        from giftlab.diagnostics import tokens

        return getattr(tokens, name)
    raise AttributeError(f"module 'giftlab.diagnostics' has no attribute {name!r}")
