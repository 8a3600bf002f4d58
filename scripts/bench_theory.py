"""Benchmark soft_bellman on random TabularLMs (V = 8, T = 3..8: 512 to 16.7M leaves).

For each size: the best-of-k wall time of `soft_bellman` (log pi0 cached, as after a first call),
the time of a first call that also computes log pi0, the time of one plain numpy log-sum-exp pass
over the leaf values reshaped to (V^(T-1), V) (the least work an exact solver must do), their
ratio, nanoseconds per leaf (flat when cost is linear in leaves), and the peak memory soft_bellman
allocates (tracemalloc, which numpy reports to), in MiB and bytes per leaf.

    python scripts/bench_theory.py [--max-horizon 8] [--out paper_figures/benchmarks/bench_theory.csv]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

from giftlab.provenance import provenance, write_csv
from giftlab.theory import TabularLM, soft_bellman


def lse_pass(x: np.ndarray) -> np.ndarray:
    m = x.max(1)
    return np.log(np.exp(x - m[:, None]).sum(1)) + m


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=8)
    parser.add_argument("--min-horizon", type=int, default=3)
    parser.add_argument("--max-horizon", type=int, default=8)
    parser.add_argument(
        "--out", type=Path, default=Path("paper_figures/benchmarks/bench_theory.csv")
    )
    args = parser.parse_args()

    rows = []
    v = args.vocab_size
    for t in range(args.min_horizon, args.max_horizon + 1):
        lm = TabularLM.random(v, t, seed=0)
        reward = np.random.default_rng(1).uniform(0, 1, size=lm.n_sequences)
        leaves = reward.reshape(-1, v)
        repeats = 3 if lm.n_sequences > 1e6 else 7
        t0 = time.perf_counter()
        soft_bellman(lm, reward, 2.0)  # first call: includes log pi0
        first = time.perf_counter() - t0
        solve = best_time(lambda lm=lm, r=reward: soft_bellman(lm, r, 2.0), repeats)
        lse = best_time(lambda x=leaves: lse_pass(x), repeats)
        tracemalloc.start()
        soft_bellman(lm, reward, 2.0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        row = {
            "vocab_size": v,
            "horizon": t,
            "leaves": lm.n_sequences,
            "soft_bellman_s": solve,
            "first_call_s": first,
            "lse_pass_s": lse,
            "ratio_to_lse": solve / lse,
            "ns_per_leaf": 1e9 * solve / lm.n_sequences,
            "peak_mib": peak / 2**20,
            "peak_bytes_per_leaf": peak / lm.n_sequences,
        }
        rows.append(row)
        print(
            f"V={v} T={t} leaves={lm.n_sequences:>9,d}  soft_bellman {solve:8.4f} s "
            f"(first {first:7.4f})  lse pass {lse:8.4f} s  ratio {solve / lse:5.2f}  "
            f"{row['ns_per_leaf']:6.1f} ns/leaf  peak {row['peak_mib']:8.1f} MiB",
            flush=True,
        )
        del lm, reward, leaves

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(args.out, rows)
    print(f"wrote {args.out}  ({provenance()['code_version']})")


if __name__ == "__main__":
    main()
