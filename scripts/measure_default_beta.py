"""Where GIFT differs from SFT on the bundled model and task: the gate and the target's entropy per
beta, measured on the base model (the gate w_t = sigmoid(log(e^beta - 1) + log pi0(y_t)) depends on
the base alone, so the step-0 statistics decide the default).

    python scripts/measure_default_beta.py                    # smollm2, data/countdown/val.jsonl
    python scripts/measure_default_beta.py --csv paper_figures/default_beta.csv

Prints, per beta: the mean gate over response tokens (1 = one-hot SFT), the share of tokens with
w < 1/2 (where the target keeps more of the base than of the one-hot) and the mean entropy of the
target (0 = SFT) beside the base's. Every number is giftlab.losses.gift_token_stats on the base
model's logits (policy = reference = the base)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import torch

    from giftlab.data import collate, read_records
    from giftlab.data.tokenize import encode_records
    from giftlab.losses import gift_token_stats
    from giftlab.models import load_model, load_tokenizer
    from giftlab.provenance import write_csv

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--data", default="data/countdown/val.jsonl")
    p.add_argument("--betas", default="1,2,3,5,10,20")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    tok = load_tokenizer(args.model)
    model = load_model(args.model, dtype=torch.float32).eval()
    examples, _ = encode_records(read_records(args.data), tok, args.max_length)
    logits, labels = [], []
    with torch.no_grad():
        for s in range(0, len(examples), 8):
            b = collate(examples[s : s + 8], tok.pad_token_id)
            z = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            lab = b["labels"][:, 1:]
            keep = lab != -100
            logits.append(z[:, :-1][keep].float())
            labels.append(lab[keep])
    z, y = torch.cat(logits), torch.cat(labels)
    rows = []
    for beta in [float(b) for b in args.betas.split(",")]:
        st = gift_token_stats(z, z, y, beta)
        w = st["gate_w"].double()
        rows.append(
            {
                "beta": beta,
                "tokens": int(y.numel()),
                "gate_mean": float(w.mean()),
                "gate_below_half": float((w < 0.5).double().mean()),
                "target_entropy": float(st["target_entropy"].double().mean()),
                "ref_entropy": float(st["ref_entropy"].double().mean()),
            }
        )
    print(
        f"{args.model} on {args.data}: {len(examples)} examples, {int(y.numel())} response tokens"
    )
    print("| beta | mean gate w | tokens with w < 1/2 | target entropy | base entropy |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['beta']:g} | {r['gate_mean']:.3f} | {r['gate_below_half']:.1%} | "
            f"{r['target_entropy']:.3f} | {r['ref_entropy']:.3f} |"
        )
    if args.csv:
        write_csv(Path(args.csv), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
