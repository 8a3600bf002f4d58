"""Benchmark one optimiser step of the trainer: SFT vs GIFT, dense vs chunked loss.

Each configuration runs in a fresh process on the same model and batch (random token ids of
length --seq, the first quarter masked as prompt): a warm-up step, then the best of --steps
timed steps of forward + (reference forward for GIFT) + loss + backward + clip + AdamW. Reports
tokens/s and the peak memory (CUDA: max_memory_allocated; CPU: peak RSS) and writes CSV.

    python scripts/bench_train.py                                   # CPU, SmolLM2, batch 2 x 128
    python scripts/bench_train.py --device cuda --model qwen0.5b --batch 8 --seq 1024 --bf16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [("sft", False), ("sft", True), ("gift", False), ("gift", True)]


def _random_model(name: str):
    """A randomly initialised model of a real shape (GPU benchmarks: weights do not change timing)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    if name == "tiny":  # a smoke-test shape (scripts/gpu_check.py --cpu-dry-run)
        from giftlab.models import tiny_llama

        return tiny_llama(128)
    shapes = {
        "qwen0.5b": dict(
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        ),
    }
    return AutoModelForCausalLM.from_config(Qwen2Config(**shapes[name]))


def run_child(args, objective: str, chunked: bool) -> dict:
    import torch

    from giftlab.losses import OBJECTIVES
    from giftlab.models import load_model
    from giftlab.train import CausalLMBody, Models, TrainConfig, forward, objective_sum

    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = _random_model(args.model) if args.model != "smollm2" else load_model("smollm2")
    # SFT runs without a reference model in memory, as in the trainer
    ref = None
    if objective != "sft":
        ref = _random_model(args.model) if args.model != "smollm2" else load_model("smollm2")
        ref.to(dev).eval().requires_grad_(False)
    model.to(dev).train()
    if args.bf16:
        model.to(torch.bfloat16)
        if ref is not None:
            ref.to(torch.bfloat16)
    cfg = TrainConfig(objective=objective, chunked=chunked, beta=20.0, progress=False)
    v = model.get_output_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, v, (args.batch, args.seq), generator=g)
    labels = ids.clone()
    labels[:, : args.seq // 4] = -100
    batch = {
        "input_ids": ids.to(dev),
        "attention_mask": torch.ones_like(ids).to(dev),
        "labels": labels.to(dev),
    }
    obj = OBJECTIVES[objective]
    m = Models(
        model,
        CausalLMBody(model),
        ref,
        None if ref is None else CausalLMBody(ref),
        lora=False,
        fsdp=False,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.95), weight_decay=0.01)

    def step():
        f = forward(m, batch, with_ref=obj.needs_ref)
        (objective_sum(cfg, obj, m, f) / f.n).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = (
        torch.cuda.max_memory_allocated()
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    best = min(times)
    return {
        "objective": objective,
        "loss_form": "chunked" if chunked else "dense",
        "model": args.model,
        "device": args.device,
        "dtype": "bf16" if args.bf16 else "fp32",
        "batch": args.batch,
        "seq": args.seq,
        "step_s": best,
        "tokens_per_s": args.batch * args.seq / best,
        "peak_gib": peak / 2**30,
        "ref_weights_gib": 0.0
        if ref is None
        else sum(p.numel() * p.element_size() for p in ref.parameters()) / 2**30,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--model",
        default="smollm2",
        help="smollm2 (real weights), qwen0.5b (random, real shape) or tiny (smoke test)",
    )
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_child(args, args.child[0], args.child[1] == "1")))
        return

    from giftlab.provenance import write_csv

    rows = []
    for objective, chunked in CONFIGS:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            objective,
            str(int(chunked)),
            "--device",
            args.device,
            "--model",
            args.model,
            "--batch",
            str(args.batch),
            "--seq",
            str(args.seq),
            "--steps",
            str(args.steps),
        ]
        cmd += ["--bf16"] if args.bf16 else []
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode != 0 or not line:
            print(f"{objective} chunked={chunked}: failed\n{out.stderr[-2000:]}")
            continue
        row = json.loads(line[0][7:])
        rows.append(row)
        print(
            f"{objective:5s} {row['loss_form']:8s} step {row['step_s']:7.3f} s  {row['tokens_per_s']:9.1f} tok/s  "
            f"peak {row['peak_gib']:6.2f} GiB",
            flush=True,
        )
    by = {(r["objective"], r["loss_form"]): r for r in rows}
    ref_gib = max((r["ref_weights_gib"] for r in rows), default=0.0)
    for form in ("dense", "chunked"):
        if ("sft", form) in by and ("gift", form) in by:
            ratio = by[("gift", form)]["step_s"] / by[("sft", form)]["step_s"]
            extra = by[("gift", form)]["peak_gib"] - by[("sft", form)]["peak_gib"]
            print(
                f"{form}: GIFT/SFT step time {ratio:.2f}x, GIFT peak - SFT peak {extra:+.2f} GiB "
                f"(reference weights: {ref_gib:.2f} GiB)"
            )
    out = args.out or Path(f"paper_figures/benchmarks/bench_train_{args.device}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
