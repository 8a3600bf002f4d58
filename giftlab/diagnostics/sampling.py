"""Estimators over samples: unbiased pass@k, majority vote, distinct correct answers."""

from __future__ import annotations

import numpy as np


def pass_at_k(n, c, k) -> np.ndarray:
    """Unbiased pass@k from n samples with c correct: 1 - C(n - c, k) / C(n, k).

    Computed as -expm1(sum_i log1p(-k / i)) over i in (n - c, n] (stable for n in the thousands);
    1 when n - c < k.
    Arrays broadcast. Never max-over-n, never a bootstrap.

    Raises ValueError when k > n, k < 1, or c outside [0, n].
    """
    n, c, k = (np.asarray(a) for a in (n, c, k))
    if np.any(k < 1):
        raise ValueError(f"k must be >= 1, got {k.min()}")
    if np.any(k > n):
        raise ValueError(f"pass@k needs n >= k samples: got n = {n.min()} < k = {k.max()}")
    if np.any((c < 0) | (c > n)):
        raise ValueError("c (correct samples) must be in [0, n]")
    n, c, k = np.broadcast_arrays(n.astype(np.int64), c.astype(np.int64), k.astype(np.int64))
    out = np.empty(n.shape, dtype=np.float64)
    for idx in np.ndindex(n.shape):
        nn, cc, kk = int(n[idx]), int(c[idx]), int(k[idx])
        if nn - cc < kk:
            out[idx] = 1.0
            continue
        # C(n-c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i): log1p and -expm1 keep full
        # relative precision even when pass@k is tiny (n in the thousands)
        i = np.arange(nn - cc + 1, nn + 1, dtype=np.float64)
        out[idx] = -np.expm1(np.log1p(-kk / i).sum())
    return out


def majority_at_k(
    answers: list, correct: list[bool], k: int, draws: int = 200, seed: int = 0
) -> float:
    """maj@k: probability that the most frequent answer among k samples (drawn without replacement
    from the n given) is correct, averaged over `draws` seeded subsets; ties go to the answer seen
    first in the subset. Exact (one subset) when k = n."""
    n = len(answers)
    if k > n:
        raise ValueError(f"maj@k needs n >= k samples: got n = {n} < k = {k}")
    ok = {a: bool(c) for a, c in zip(answers, correct)}
    rng = np.random.default_rng(seed)
    subsets = [np.arange(n)] if k == n else [rng.choice(n, k, replace=False) for _ in range(draws)]
    wins = 0
    for s in subsets:
        counts: dict = {}
        for i in s:
            counts[answers[i]] = counts.get(answers[i], 0) + 1
        top = max(counts.values())
        winner = next(answers[i] for i in s if counts[answers[i]] == top)
        wins += ok[winner]
    return wins / len(subsets)


def distinct_correct(answers: list, correct: list[bool]) -> int:
    """Number of distinct answers (after stripping whitespace) among the correct samples."""
    return len({str(a).strip() for a, c in zip(answers, correct) if c})
