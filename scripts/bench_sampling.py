"""Benchmark sampling (the rollouts of `giftlab rl` and `giftlab eval`): new tokens per second and
samples per second of `giftlab.rl.rollout.sample_groups` on SmolLM2-135M-Instruct, by batch size.

tokens/s counts the completion tokens the samples hold (up to and including their end token), as
`giftlab rl` and `giftlab eval` use them; positions/s counts every generated position of the batch.

    python scripts/bench_sampling.py [--batches 32 64 128 256] [--new-tokens 16]

Writes paper_figures/benchmarks/bench_sampling_<device>.csv (with provenance).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    import tempfile

    import torch

    from giftlab.data.tasks import write_task_data
    from giftlab.models import load_model, load_tokenizer
    from giftlab.provenance import write_csv
    from giftlab.rl.loop import load_task_records
    from giftlab.rl.rollout import encode_prompts, sample_groups

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_tokenizer("smollm2")
    tok.padding_side = "left"
    model = load_model("smollm2").to(device).eval()
    recs = load_task_records(
        write_task_data("countdown", tempfile.mkdtemp(), 64, 1, prompt_style="short")["train"]
    )
    rows = []
    for batch in args.batches:
        group = 8
        prompts = encode_prompts(tok, recs[: max(1, batch // group)])
        sample_groups(model, tok, prompts, group, 2, 1.0, 0, device)  # warm-up
        best = None
        for r in range(args.repeats):
            t0 = time.perf_counter()
            ro = sample_groups(model, tok, prompts, group, args.new_tokens, 1.0, r, device)
            dt = time.perf_counter() - t0
            if best is None or dt < best[0]:
                width = ro.sequences.shape[1] - ro.completion_mask.sum(1).max()
                best = (dt, int(ro.completion_mask.sum()), ro.sequences.shape[1] - int(width))
        dt, tokens, length = best
        n = len(prompts) * group
        rows.append(
            {
                "batch": n,
                "max_new_tokens": args.new_tokens,
                "seconds": dt,
                "tokens_per_s": tokens / dt,
                "positions_per_s": n * length / dt,
                "samples_per_s": n / dt,
                "device": device.type,
                "threads": torch.get_num_threads(),
            }
        )
        print(
            f"batch {n:4d}: {rows[-1]['tokens_per_s']:7.1f} completion tokens/s, "
            f"{rows[-1]['positions_per_s']:7.1f} positions/s, {rows[-1]['samples_per_s']:6.2f} "
            f"samples/s ({dt:.2f} s)",
            flush=True,
        )
    out = args.out or Path(f"paper_figures/benchmarks/bench_sampling_{device.type}.csv")
    write_csv(out, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
