"""Benchmark one GRPO update (`giftlab.rl.loop.grpo_update`: the base's and the policy's passes,
backward, optimiser step) with and without `skip_zero_advantage`, on SmolLM2-135M-Instruct and a
real countdown rollout, at several fractions of groups whose rewards differ (the others have
advantage 0 everywhere: with kl_coef = 0 they add nothing to the update).

    python scripts/bench_rl_step.py [--active 0.25 0.5 1.0] [--prompts 8 --group 8]

Prints seconds per update and the ratio skip / full at each fraction; writes
paper_figures/benchmarks/bench_rl_step_<device>.csv (with provenance).

    python scripts/bench_rl_step.py --shared-prefix --prompt-style fewshot --active 0.375

times instead the update with the prompts' shared prefix run once (`shared_prefix`, the default)
against each sequence run whole, both with skip_zero_advantage, alternating, on the RL stage's
few-shot prompts; writes bench_rl_step_shared_prefix_<device>.csv.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--active", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--prompt-style", default="short", choices=["short", "fewshot"])
    p.add_argument(
        "--shared-prefix", action="store_true", help="time shared_prefix on/off (skip on)"
    )
    args = p.parse_args()

    import tempfile

    import torch

    from giftlab.data.tasks import write_task_data
    from giftlab.models import load_model, load_tokenizer
    from giftlab.provenance import write_csv
    from giftlab.rl.loop import RLConfig, grpo_update, load_task_records
    from giftlab.rl.rollout import encode_prompts, prefix_layout, sample_groups

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_tokenizer(args.model)
    tok.padding_side = "left"
    base = load_model(args.model).to(device).eval()
    recs = load_task_records(
        write_task_data("countdown", tempfile.mkdtemp(), 64, 1, prompt_style=args.prompt_style)[
            "train"
        ]
    )
    prompts = encode_prompts(tok, recs[: args.prompts])
    ro = sample_groups(base, tok, prompts, args.group, args.new_tokens, 1.0, 0, device)
    n = args.prompts * args.group
    warm = copy.deepcopy(base).train()  # one untimed update: first-call allocations
    wparams = [q for q in warm.parameters() if q.requires_grad]
    grpo_update(
        RLConfig(),
        warm,
        base,
        ro,
        torch.ones(n, device=device),
        torch.optim.AdamW(wparams),
        wparams,
    )
    del warm, wparams
    name = "bench_rl_step_shared_prefix" if args.shared_prefix else "bench_rl_step"
    out = args.out or Path(f"paper_figures/benchmarks/{name}_{device.type}.csv")
    rows = []
    for frac in args.active:
        if rows:
            write_csv(out, rows)  # what is measured so far survives a later failure (memory)
        mixed = max(1, round(frac * args.prompts))  # groups with one correct sample
        adv = torch.zeros(args.prompts, args.group, device=device)
        adv[:mixed] = -1.0 / args.group
        adv[:mixed, 0] += 1.0
        adv = adv.view(-1)
        times = {}
        forms = (
            [(True, False), (True, True)] if args.shared_prefix else [(False, True), (True, True)]
        )
        for r in range(args.repeats):
            for skip, shared in forms if r % 2 == 0 else forms[::-1]:  # order flipped each round
                policy = copy.deepcopy(base).train()
                params = [q for q in policy.parameters() if q.requires_grad]
                opt = torch.optim.AdamW(params, lr=1e-6)
                cfg = RLConfig(skip_zero_advantage=skip, shared_prefix=shared)
                t0 = time.perf_counter()
                u = grpo_update(cfg, policy, base, ro, adv, opt, params)
                times.setdefault((skip, shared), []).append(time.perf_counter() - t0)
                assert u.partial == (skip and mixed < args.prompts)
        if args.shared_prefix:
            whole, shared = min(times[(True, False)]), min(times[(True, True)])
            rows.append(
                {
                    "active_fraction": int(u.active.sum()) / n,
                    "mixed_groups": mixed,
                    "samples": n,
                    "prompt_tokens_mean": float(ro.attention_mask.sum(1).float().mean())
                    - float(ro.completion_mask.sum(1).float().mean()),
                    "shared_prefix_tokens": len(prefix_layout(ro).prefix[0])
                    if prefix_layout(ro) is not None
                    else 0,
                    "whole_s": whole,
                    "shared_s": shared,
                    "shared_over_whole": shared / whole,
                    "rounds": args.repeats,
                    "device": device.type,
                    "threads": torch.get_num_threads(),
                }
            )
            print(
                f"{mixed}/{args.prompts} groups with a signal: each sequence whole {whole:.2f} s, "
                f"shared prefix once {shared:.2f} s, ratio {shared / whole:.2f} "
                f"(best of {args.repeats})",
                flush=True,
            )
            continue
        full, part = min(times[(False, True)]), min(times[(True, True)])
        rows.append(
            {
                "active_fraction": int(u.active.sum()) / n,
                "mixed_groups": mixed,
                "samples": n,
                "full_s": full,
                "skip_s": part,
                "skip_over_full": part / full,
                "device": device.type,
                "threads": torch.get_num_threads(),
            }
        )
        print(
            f"{mixed}/{args.prompts} groups with a signal ({int(u.active.sum())}/{n} samples "
            f"with A != 0): full {full:.2f} s, skip {part:.2f} s, ratio {part / full:.2f}",
            flush=True,
        )
    write_csv(out, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
