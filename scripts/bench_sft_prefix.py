"""One SFT training step on few-shot countdown batches (the RL stage's fine-tuning: SmolLM2,
batch 4, max_length 256) with the batch's shared prefix run once (giftlab.engine.objective
.CausalLMBody, shared_prefix=True, the default) against each row run whole, paired in one
process: each form its own model copy and AdamW, the same batches, steps alternating (order
flipped every round); the median over rounds of the per-round ratio with its distribution-free
95% interval (scripts/bench_paired_step.py's).

    python scripts/bench_sft_prefix.py [--rounds 15] [--batch 4] [--out FILE.csv]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None) -> int:
    import torch
    from bench_paired_step import median_interval

    from giftlab.data import collate
    from giftlab.data.tasks import write_task_data
    from giftlab.data.tokenize import encode_records
    from giftlab.engine.objective import CausalLMBody
    from giftlab.models import load_model, load_tokenizer
    from giftlab.provenance import write_csv
    from giftlab.rl.loop import load_task_records

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--model", default="smollm2")
    p.add_argument(
        "--out", type=Path, default=ROOT / "paper_figures/benchmarks/bench_sft_prefix_cpu.csv"
    )
    args = p.parse_args(argv)

    tok = load_tokenizer(args.model)
    records = load_task_records(
        write_task_data("countdown", tempfile.mkdtemp(), 64, 1, prompt_style="fewshot")["train"]
    )
    examples, _ = encode_records(records, tok, 256)
    batches = [
        collate(examples[i : i + args.batch], tok.pad_token_id)
        for i in range(0, args.rounds * args.batch, args.batch)
    ]
    base = load_model(args.model).float()
    sides = []
    for shared in (False, True):
        model = copy.deepcopy(base).train()
        body = CausalLMBody(model, shared_prefix=shared)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        sides.append((body, opt))

    def step(side, b):
        body, opt = side
        labels = b["labels"][:, 1:]
        valid = labels != -100
        hidden = body(b["input_ids"], b["attention_mask"])[:, :-1][valid]
        logits = body.head().logits(hidden).float()
        loss = torch.nn.functional.cross_entropy(logits, labels[valid])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    n = sides[1][0].prefix_length(batches[0]["input_ids"], batches[0]["attention_mask"])
    width = batches[0]["input_ids"].shape[1]
    for side in sides:  # warm-up
        step(side, batches[0])
    times = [[], []]
    for r, b in enumerate(batches):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            step(sides[i], b)
            times[i].append(time.perf_counter() - t0)
        print(
            f"round {r + 1:2d}: whole {times[0][-1]:.3f} s  shared {times[1][-1]:.3f} s", flush=True
        )
    ratios = [s / w for w, s in zip(*times, strict=True)]
    mid, lo, hi = median_interval(ratios)
    med = [sorted(t)[len(t) // 2] for t in times]
    print(
        f"shared prefix / whole: median ratio {mid:.3f} [95% CI {lo:.3f}, {hi:.3f}] over "
        f"{len(ratios)} rounds (median step {med[0]:.3f} s whole, {med[1]:.3f} s shared; batch "
        f"{args.batch} x {width} tokens, {n} shared; {torch.get_num_threads()} threads)"
    )
    rows = [
        {"round": r + 1, "whole_s": w, "shared_s": s, "ratio": s / w, "batch": args.batch,
         "width": width, "shared_tokens": n}
        for r, (w, s) in enumerate(zip(*times, strict=True))
    ]  # fmt: skip
    rows.append({"round": "median", "ratio": mid})
    rows.append({"round": "ci_low", "ratio": lo})
    rows.append({"round": "ci_high", "ratio": hi})
    write_csv(args.out, [{k: r.get(k, "") for k in rows[0]} for r in rows])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
