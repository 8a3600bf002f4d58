"""A target variant, written once: validated against the exact Gibbs policy, then trained.

    python examples/validate_then_train_variant.py                      # SmolLM2, 4 steps
    python examples/validate_then_train_variant.py --tiny --out /tmp/v  # a tiny random model (CI)

The variant mixes the one-hot into the base with weight w = 1 - exp(-eta): eta -> 0 gives the base,
eta -> inf one-hot SFT. The exact check says where it departs from pi0 exp(eta 1[y = y*]) / Z.
"""

import argparse

import numpy as np

from giftlab.losses import Hyper, register_objective
from giftlab.theory.validate import Grid, validate_variant
from giftlab.train import TrainConfig, train


def mix(base, tokens, eta):  # (L, V) base probabilities, (L,) gold tokens -> (L, V) target
    w = -np.expm1(-eta)
    return (1 - w) * base + w * np.eye(base.shape[1])[tokens]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--train-file", default="data/countdown/train.jsonl")
    p.add_argument("--out", default="runs/mix")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--tiny", action="store_true", help="a tiny random model and data (CI)")
    args = p.parse_args(argv)
    v = validate_variant(mix, Grid(seeds=(0, 1)), search=10)  # exact, seconds on a CPU
    w = v.worst
    print(
        f"exact check: {'matches' if v.passed else 'departs'}, worst KL {w['kl']:.3g} at eta "
        f"{w['eta']:g}; eta -> 0 gap {max(r['limit_zero_gap'] for r in v.rows):.1e}"
    )
    register_objective("mix", target=mix, hyper={"mix_eta": Hyper(2.0, lambda x: x >= 0, ">= 0")})
    model, data = tiny(args.out) if args.tiny else (args.model, args.train_file)
    cfg = TrainConfig(
        model=model,
        train_file=data,
        val_file="",
        out_dir=args.out + "/run",
        objective="mix",
        hyper={"mix_eta": 2.0},
        max_steps=args.steps,
        batch_size=2,
        save_every=0,
        progress=False,
        overwrite=True,
    )
    print("trained:", {k: round(x, 4) for k, x in train(cfg).items() if k.startswith("loss")})


def tiny(out):
    from giftlab.data.tasks import write_task_data
    from giftlab.models import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    tiny_llama(len(tok)).save_pretrained(f"{out}/tiny")
    tok.save_pretrained(f"{out}/tiny")
    return f"{out}/tiny", str(
        write_task_data("countdown", f"{out}/data", 8, 2, prompt_style="short")["train"]
    )


if __name__ == "__main__":
    main()
