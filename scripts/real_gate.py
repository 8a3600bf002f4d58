"""The GIFT gate w_t on real tokens: SmolLM2-135M-Instruct (Q4_1, dequantised) teacher-forced on
countdown demonstrations (forward passes only). For each response token, the base's probability of
the gold token p_t and the gate w_t = sigmoid(log(e^beta - 1) + log p_t) at beta in {2, 5, 10, 20}:
where w_t < 1/2 GIFT's target is mostly the base (distillation), where w_t ~ 1 it is SFT.

    python scripts/real_gate.py [--n 300] [--out paper_figures]

Writes OUT/real_gate.csv (per token: problem, position, p_t, w_t per beta) and OUT/real_gate.png
(the distribution of w_t per beta, and the fraction of tokens below 1/2 with a clustered 95% CI
over problems). Needs giftlab[train,data] and the bundled model.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

BETAS = (2.0, 5.0, 10.0, 20.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="countdown problems (default 300)")
    p.add_argument("--out", type=Path, default=Path("paper_figures"))
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()

    import numpy as np
    import torch

    from giftlab.data import collate, encode_records, read_records
    from giftlab.data.tasks import write_task_data
    from giftlab.losses import gate_weight
    from giftlab.models import load_model, load_tokenizer
    from giftlab.plots import caption, lines, panels
    from giftlab.provenance import write_csv
    from giftlab.stats import clustered_mean_ci

    torch.set_grad_enabled(False)
    import tempfile

    data = write_task_data("countdown", tempfile.mkdtemp(), args.n, 1, seed=7, prompt_style="short")
    tok, model = load_tokenizer("smollm2"), load_model("smollm2").eval()
    examples, _ = encode_records(read_records(data["train"]), tok, 256)
    rows = []
    for s in range(0, len(examples), args.batch):
        batch = collate(examples[s : s + args.batch], tok.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        for i in range(labels.shape[0]):
            valid = labels[i] != -100
            gold = logp[i][valid].gather(-1, labels[i][valid][:, None])[:, 0]
            for t, lp in enumerate(gold.tolist()):
                row = {"problem": s + i, "position": t, "p_gold": math.exp(lp)}
                for b in BETAS:
                    row[f"w_beta{b:g}"] = float(gate_weight(torch.tensor(lp), b))
                rows.append(row)
    write_csv(args.out / "real_gate.csv", rows)
    problems = sorted({r["problem"] for r in rows})
    fig, (a, b) = panels(2, width=5.4)
    grid = np.linspace(0, 1, 201)
    cdfs, fracs = {}, {}
    for beta in BETAS:
        w = np.array([r[f"w_beta{beta:g}"] for r in rows])
        cdfs[f"beta = {beta:g}"] = (w[None, :] <= grid[:, None]).mean(1)
        per_problem = [
            np.mean([r[f"w_beta{beta:g}"] < 0.5 for r in rows if r["problem"] == q])
            for q in problems
        ]
        fracs[beta] = clustered_mean_ci(per_problem)
    lines(
        a,
        grid,
        cdfs,
        "gate w_t",
        "fraction of response tokens with gate <= w",
        f"{len(rows)} tokens of {len(problems)} countdown demonstrations",
    )
    x = np.array(BETAS)
    mean = np.array([fracs[b]["mean"] for b in BETAS])
    err = np.array(
        [
            [fracs[b]["mean"] - fracs[b]["low"] for b in BETAS],
            [fracs[b]["high"] - fracs[b]["mean"] for b in BETAS],
        ]
    )
    b.errorbar(x, mean, yerr=err, fmt="o-", capsize=3)
    b.set_xlabel("beta")
    b.set_ylabel("fraction of tokens with w_t < 1/2")
    b.set_title("mean over problems, 95% clustered bootstrap CI", fontsize=10)
    b.grid(alpha=0.3)
    caption(
        fig, "The GIFT gate on real countdown tokens, SmolLM2-135M-Instruct (Q4_1, dequantised)"
    )
    fig.savefig(args.out / "real_gate.png", dpi=120)
    for beta in BETAS:
        f = fracs[beta]
        print(
            f"beta {beta:g}: fraction of tokens with w < 1/2 = {f['mean']:.3f} [{f['low']:.3f}, {f['high']:.3f}]"
        )


if __name__ == "__main__":
    main()
