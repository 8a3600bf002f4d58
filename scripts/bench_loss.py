"""Benchmark the token objectives from hidden states: forward + backward time and peak extra memory.

Methods, all from policy hidden states (N, H) and lm_head (V, H) (plus the reference's, for GIFT):
  naive_gift   the reference trainer's formula on materialised logits (softmax, mix, log, +beta, softmax)
  torch_ce     torch.nn.functional.cross_entropy on materialised logits (what SFT pays)
  dense_gift   giftlab.losses.gift_loss on materialised logits
  chunked_gift giftlab.losses.fused_linear_gift_loss, the torch chunk (no (N, V) tensor outlives a chunk)
  chunked_sft  giftlab.losses.fused_linear_sft_loss, the torch chunk
  triton_gift  fused_linear_gift_loss with the Triton loss-head kernel (CUDA, or TRITON_INTERPRET=1)
  triton_sft   fused_linear_sft_loss with the Triton kernel
  liger_ce     Liger-Kernel's fused-linear cross-entropy (when liger_kernel is importable)
  liger_jsd    Liger-Kernel's fused-linear JSD, two heads (the nearest peer for a soft target)
  cut_ce       Cut Cross-Entropy (when cut_cross_entropy is importable)

Each (method, N) runs in a fresh subprocess. Time: best of --repeats after one warm-up. Peak extra
memory: on CUDA, max_memory_allocated minus what was allocated before the call; on CPU, the growth
of the process's peak RSS over its RSS before the call (inputs already allocated).

    python scripts/bench_loss.py                       # CPU: N = 2048 and 4096, V = 49152, H = 576
    python scripts/bench_loss.py --device cuda --n 16384 --vocab 151936 --hidden 3584 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

METHODS = ["naive_gift", "torch_ce", "dense_gift", "chunked_gift", "chunked_sft"]
TRITON_METHODS = ["triton_gift", "triton_sft"]
PEER_METHODS = {
    "liger_ce": "liger_kernel",
    "liger_jsd": "liger_kernel",
    "cut_ce": "cut_cross_entropy",
}
ALL_METHODS = METHODS + TRITON_METHODS + list(PEER_METHODS)


def available(method: str) -> bool:
    """A peer library's method runs only where that library is importable."""
    import importlib.util

    module = PEER_METHODS.get(method) or ("triton" if method in TRITON_METHODS else None)
    return module is None or importlib.util.find_spec(module) is not None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run_one(
    method: str, n: int, v: int, h: int, device: str, dtype_name: str, repeats: int, beta: float
) -> dict:
    import torch
    import torch.nn.functional as F

    from giftlab.losses import fused_linear_gift_loss, fused_linear_sft_loss, gift_loss

    dtype = getattr(torch, dtype_name)
    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    hid = (torch.randn(n, h, generator=g) / 2).to(dev, dtype).requires_grad_(True)
    w = (torch.randn(v, h, generator=g) / math.sqrt(h)).to(dev, dtype).requires_grad_(True)
    rh = (torch.randn(n, h, generator=g) / 2).to(dev, dtype)
    rw = (torch.randn(v, h, generator=g) / math.sqrt(h)).to(dev, dtype)
    labels = torch.randint(0, v, (n,), generator=g).to(dev)

    def naive():
        logits = (hid @ w.T).float()
        with torch.no_grad():
            probs = torch.softmax((rh @ rw.T).float(), -1)
            target = torch.softmax(torch.log(probs) + beta * F.one_hot(labels, v), -1)
        return -(target * torch.log_softmax(logits, -1)).sum(-1).mean()

    fns = {
        "naive_gift": naive,
        "torch_ce": lambda: F.cross_entropy((hid @ w.T).float(), labels),
        "dense_gift": lambda: gift_loss(hid @ w.T, (rh @ rw.T).detach(), labels, beta),
        "chunked_gift": lambda: fused_linear_gift_loss(
            hid, w, labels, ref_hidden=rh, ref_weight=rw, beta=beta, kernel="torch"
        ),
        "chunked_sft": lambda: fused_linear_sft_loss(hid, w, labels, kernel="torch"),
        "triton_gift": lambda: fused_linear_gift_loss(
            hid, w, labels, ref_hidden=rh, ref_weight=rw, beta=beta, kernel="triton"
        ),
        "triton_sft": lambda: fused_linear_sft_loss(hid, w, labels, kernel="triton"),
    }
    if method in PEER_METHODS:
        fns[method] = _peer(method, hid, w, rh, rw, labels)
    fn = fns[method]

    def step():
        hid.grad = None
        w.grad = None
        fn().backward()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    sync()
    hid.grad = None
    w.grad = None
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        sync()
        peak_extra = torch.cuda.max_memory_allocated() - before
    else:
        before = _rss_bytes()
        step()
        peak_extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return {
        "method": method,
        "n_tokens": n,
        "vocab": v,
        "hidden": h,
        "dtype": dtype_name,
        "device": device,
        "ms": 1000 * min(times),
        "peak_extra_gib": max(0, peak_extra) / 2**30,
    }


def _peer(method, hid, w, rh, rw, labels):
    """The peer libraries' fused heads, called as their documentation shows."""
    if method == "liger_ce":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        loss = LigerFusedLinearCrossEntropyLoss()
        return lambda: loss(w, hid, labels)
    if method == "liger_jsd":
        from liger_kernel.transformers import LigerFusedLinearJSD

        jsd = LigerFusedLinearJSD(jsd_beta=0.5)
        return lambda: jsd(hid, w, rh, rw, labels)
    from cut_cross_entropy import linear_cross_entropy

    return lambda: linear_cross_entropy(hid, w, labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--n", type=int, nargs="+", default=[2048, 4096], help="token counts")
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--hidden", type=int, default=576)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--beta", type=float, default=20.0)
    p.add_argument(
        "--methods",
        nargs="+",
        default=METHODS,
        choices=ALL_METHODS,
        help="methods to time; a peer library's method is skipped when it is not importable",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="CSV path (default paper_figures/benchmarks/bench_loss_<device>.csv)",
    )
    p.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        row = run_one(
            args.child[0],
            int(args.child[1]),
            args.vocab,
            args.hidden,
            args.device,
            args.dtype,
            args.repeats,
            args.beta,
        )
        print("RESULT " + json.dumps(row))
        return

    from giftlab.provenance import write_csv

    rows = []
    for n in args.n:
        for method in args.methods:
            if not available(method):
                print(f"{method}: skipped (its library is not importable)")
                continue
            cmd = [
                sys.executable,
                __file__,
                "--child",
                method,
                str(n),
                "--device",
                args.device,
                "--vocab",
                str(args.vocab),
                "--hidden",
                str(args.hidden),
                "--dtype",
                args.dtype,
                "--repeats",
                str(args.repeats),
                "--beta",
                str(args.beta),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode != 0 or not line:
                print(f"{method} N={n}: failed\n{out.stderr[-2000:]}", flush=True)
                continue
            row = json.loads(line[0][7:])
            rows.append(row)
            print(
                f"N={n:6d} {method:13s} {row['ms']:9.1f} ms   peak extra {row['peak_extra_gib']:7.3f} GiB",
                flush=True,
            )
    by = {(r["method"], r["n_tokens"]): r for r in rows}
    for n in args.n:
        ce, dense, chunk = (
            by.get(("torch_ce", n)),
            by.get(("dense_gift", n)),
            by.get(("chunked_gift", n)),
        )
        if chunk and dense:
            print(f"N={n}: chunked/dense GIFT time {chunk['ms'] / dense['ms']:.2f}x", end="")
        if chunk and ce:
            print(f"; chunked GIFT / torch CE time {chunk['ms'] / ce['ms']:.2f}x", end="")
        print()
    out = args.out or Path(f"paper_figures/benchmarks/bench_loss_{args.device}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
