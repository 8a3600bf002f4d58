"""Two training-step forms timed against each other in one process, step by step.

Separate processes (scripts/bench_train.py) differ by several percent from run to run on a shared
CPU: the same configuration measured 2.04 s and 2.41 s. A ratio close to 1 needs a paired design:
both forms are built in one process (each its own model copy, the same batch), then their steps
alternate A, B, A, B, ... (the order flipped every round), and the report is the median over
rounds of the per-round ratio B / A with a 95% interval (the sign-test interval of the median,
distribution-free).

    python scripts/bench_paired_step.py                                # SFT dense vs cached GIFT
    python scripts/bench_paired_step.py --a sft@0 --b gift_cached@1 --rounds 20 --out FILE.csv
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))


def median_interval(values, level=0.95):
    """The median and its distribution-free interval [x_(j+1), x_(n-j)] (1-based order
    statistics): it misses the true median with probability 2 P(Binom(n, 1/2) <= j), and j is the
    largest with that at most 1 - level (with fewer than 6 values: the whole range)."""
    from scipy import stats

    v = sorted(values)
    n = len(v)
    j = -1
    while j + 1 < n // 2 and 2 * stats.binom.cdf(j + 1, n, 0.5) <= 1 - level:
        j += 1
    j = max(j, 0)
    mid = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    return mid, v[j], v[n - 1 - j]


def main(argv=None) -> int:
    import bench_train
    import torch

    from giftlab.provenance import write_csv

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", default="sft@0", help="objective@chunked of the baseline (SFT dense)")
    p.add_argument("--b", default="gift_cached@1", help="objective@chunked compared with it")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--cache-k", type=int, default=64)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.cache_file = str(Path(tempfile.mkdtemp(prefix="paired")) / "rows.pt")
    bench_train.build_cache_child(args)  # the cached rows for a gift_cached side
    sides = []
    for spec in (args.a, args.b):
        objective, chunked = spec.rsplit("@", 1)
        step, sync, meta = bench_train.make_step(args, objective, chunked == "1")
        step()  # warm-up
        sync()
        sides.append((step, sync, meta))
    times = [[], []]
    for r in range(args.rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            step, sync, _ = sides[i]
            t0 = time.perf_counter()
            step()
            sync()
            times[i].append(time.perf_counter() - t0)
        print(f"round {r + 1:2d}: A {times[0][-1]:.3f} s  B {times[1][-1]:.3f} s", flush=True)
    ratios = [b / a for a, b in zip(*times, strict=True)]
    mid, lo, hi = median_interval(ratios)
    a_name = f"{sides[0][2]['objective']} {sides[0][2]['loss_form']}"
    b_name = f"{sides[1][2]['objective']} {sides[1][2]['loss_form']}"
    print(
        f"{b_name} / {a_name}: median ratio {mid:.3f} [95% CI {lo:.3f}, {hi:.3f}] over "
        f"{args.rounds} paired rounds (median step A {sorted(times[0])[args.rounds // 2]:.3f} s, "
        f"B {sorted(times[1])[args.rounds // 2]:.3f} s; {args.model}, batch {args.batch} x "
        f"{args.seq}, {args.device}, {torch.get_num_threads()} threads)"
    )
    if args.out:
        rows = [
            {"round": r + 1, "a": a_name, "b": b_name, "a_s": ta, "b_s": tb, "ratio": tb / ta}
            for r, (ta, tb) in enumerate(zip(*times, strict=True))
        ]
        rows.append({"round": "median", "a": a_name, "b": b_name, "ratio": mid})
        rows.append({"round": "ci_low", "ratio": lo})
        rows.append({"round": "ci_high", "ratio": hi})
        write_csv(args.out, [{k: r.get(k, "") for k in rows[0]} for r in rows])
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
