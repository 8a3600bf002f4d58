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

CONFIGS = [("sft", False), ("sft", True), ("gift", False), ("gift", True), ("gift_cached", True)]
CACHE_KS = (16, 64, 256)


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


def make_step(args, objective: str, chunked: bool):
    """(step, sync, meta): one optimiser step of `objective` on its own model copy and the fixed
    batch, a device sync, and the row's description (run_child times it; bench_paired_step
    alternates two of them in one process)."""
    import torch

    from giftlab.engine import CausalLMBody, Models, forward, objective_sum
    from giftlab.losses import OBJECTIVES
    from giftlab.models import load_model
    from giftlab.train import TrainConfig

    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = _random_model(args.model) if args.model != "smollm2" else load_model("smollm2")
    # SFT (and GIFT from a cache) run without a reference model in memory, as in the trainer
    ref, cache = None, None
    cached = objective == "gift_cached"
    if ":" in objective:  # a user's variant MODULE:FUNCTION, importable from the checkout
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if cached:
        objective, cache = "gift", _RowsCache(torch.load(args.cache_file), dev)
    elif objective != "sft":
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
        "example_index": torch.arange(args.batch, device=dev),
    }
    obj = OBJECTIVES[objective]
    m = Models(
        policy=model,
        body=CausalLMBody(model),
        ref=ref,
        ref_body=None if ref is None else CausalLMBody(ref),
        ref_cache=cache,
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

    meta = {
        "objective": "gift_cached" if cached else objective,
        "loss_form": "chunked" if chunked else "dense",
        "ref_weights_gib": 0.0
        if ref is None
        else sum(p.numel() * p.element_size() for p in ref.parameters()) / 2**30,
    }
    return step, sync, meta


def run_child(args, objective: str, chunked: bool) -> dict:
    import torch

    dev = torch.device(args.device)
    step, sync, meta = make_step(args, objective, chunked)
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
        "objective": meta["objective"],
        "loss_form": meta["loss_form"],
        "model": args.model,
        "device": args.device,
        "dtype": "bf16" if args.bf16 else "fp32",
        "batch": args.batch,
        "seq": args.seq,
        "step_s": best,
        "tokens_per_s": args.batch * args.seq / best,
        "peak_gib": peak / 2**30,
        "ref_weights_gib": meta["ref_weights_gib"],
    }


class _RowsCache:
    """The benchmark batch's cached reference rows (as giftlab.engine.cache.RefCache.rows gives)."""

    def __init__(self, rows: dict, device):
        from giftlab.engine.cache import CachedRows

        self._rows = CachedRows(*(rows[k].to(device) for k in ("ids", "logp", "gold", "tail")))

    def rows(self, split, index, device):
        return self._rows


def build_cache_child(args) -> dict:
    """The reference's pass over the benchmark batch: the cache's build time per token, its rows
    at K = args.cache_k (saved to args.cache_file) and the bytes per token at each K of CACHE_KS
    (float16 log-probabilities, as giftlab ref-cache stores them by default)."""
    import tempfile

    import numpy as np
    import torch

    from giftlab.engine.objective import CausalLMBody
    from giftlab.models import load_model
    from giftlab.models.head import lm_head
    from giftlab.refcache import reference_rows

    dev = torch.device(args.device)
    torch.manual_seed(0)
    ref = _random_model(args.model) if args.model != "smollm2" else load_model("smollm2")
    ref.to(dev).eval()
    if args.bf16:
        ref.to(torch.bfloat16)
    v = ref.get_output_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, v, (args.batch, args.seq), generator=g).to(dev)
    labels = ids.clone()
    labels[:, : args.seq // 4] = -100
    out = {}
    with torch.no_grad():
        for k in (args.cache_k, *CACHE_KS):
            t0 = time.perf_counter()
            shifted = labels[:, 1:]
            valid = shifted != -100
            hidden = CausalLMBody(ref)(ids, torch.ones_like(ids))[:, :-1][valid]
            rows = reference_rows(hidden, lm_head(ref), shifted[valid], k)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            n = int(valid.sum())
            if k == args.cache_k and "build_s_per_token" not in out:
                out["build_s_per_token"] = dt / n
                names = ("ids", "logp", "gold", "tail")
                torch.save({a: t.cpu() for a, t in zip(names, rows)}, args.cache_file)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                arrays = {
                    "ids": rows[0].cpu().numpy(),
                    "logp": rows[1].half().cpu().numpy(),
                    "gold": rows[2].cpu().numpy(),
                    "tail": rows[3].cpu().numpy(),
                }
                size = 0
                for name, a in arrays.items():
                    np.save(Path(tmp) / f"{name}.npy", a)
                    size += (Path(tmp) / f"{name}.npy").stat().st_size
            out[f"bytes_per_token_k{k}"] = size / n
    return out


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
    p.add_argument("--cache-k", type=int, default=64, help="K of the cached-GIFT row")
    p.add_argument(
        "--configs",
        default=None,
        help="objective@chunked pairs separated by ';' (default: the five rows), e.g. "
        "'gift@1;examples.variants:gift_target@1;examples.variants:half_mix_numpy@0'",
    )
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--build-cache", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cache-file", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.build_cache:
        print("RESULT " + json.dumps(build_cache_child(args)))
        return
    if args.child:
        print("RESULT " + json.dumps(run_child(args, args.child[0], args.child[1] == "1")))
        return

    import tempfile

    from giftlab.provenance import write_csv

    rows = []
    common = ["--device", args.device, "--model", args.model, "--batch", str(args.batch)]
    common += ["--seq", str(args.seq), "--steps", str(args.steps), "--cache-k", str(args.cache_k)]
    common += ["--bf16"] if args.bf16 else []
    cache_dir = tempfile.mkdtemp(prefix="bench-cache")
    common += ["--cache-file", str(Path(cache_dir) / "rows.pt")]
    built = subprocess.run(
        [sys.executable, __file__, "--build-cache", *common], capture_output=True, text=True
    )
    line = [x for x in built.stdout.splitlines() if x.startswith("RESULT ")]
    cache_info = json.loads(line[0][7:]) if line else {}
    if not cache_info:
        print(f"cache build failed\n{built.stderr[-2000:]}")
    configs = CONFIGS
    if args.configs:
        configs = [
            (c.rsplit("@", 1)[0], c.rsplit("@", 1)[1] == "1") for c in args.configs.split(";")
        ]
    for objective, chunked in configs:
        if objective == "gift_cached" and not cache_info:
            continue
        cmd = [sys.executable, __file__, "--child", objective, str(int(chunked)), *common]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode != 0 or not line:
            print(f"{objective} chunked={chunked}: failed\n{out.stderr[-2000:]}")
            continue
        row = json.loads(line[0][7:]) | (cache_info if objective == "gift_cached" else {})
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
    if ("gift_cached", "chunked") in by and ("sft", "chunked") in by:
        c, sft = by[("gift_cached", "chunked")], by[("sft", "chunked")]
        live = by.get(("gift", "chunked"))
        print(
            f"cached GIFT (K = {args.cache_k}) / SFT step time {c['step_s'] / sft['step_s']:.3f}x, "
            f"peak {c['peak_gib'] - sft['peak_gib']:+.3f} GiB "
            f"({100 * (c['peak_gib'] / sft['peak_gib'] - 1):+.1f}%)"
        )
        tokens = args.batch * (args.seq - args.seq // 4)  # response tokens per step
        build = cache_info["build_s_per_token"] * tokens  # the cache's pass, per step of data
        for k in CACHE_KS:
            print(
                f"cache disk use at K = {k}: {cache_info[f'bytes_per_token_k{k}']:.0f} bytes/token"
            )
        if live:
            for e in (1, 3, 10):
                ratio = (build + e * c["step_s"]) / (e * live["step_s"])
                print(f"{e:2d} epoch(s): cache build + cached GIFT = {ratio:.2f}x live GIFT's time")
    out = args.out or Path(f"paper_figures/benchmarks/bench_train_{args.device}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = [k for r in rows for k in r]
    keys = list(dict.fromkeys(keys))  # the cache's columns are empty on the other rows
    write_csv(out, [{k: r.get(k, "") for k in keys} for r in rows])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
