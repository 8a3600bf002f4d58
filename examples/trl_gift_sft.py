"""GIFT fine-tuning in TRL with giftlab's GIFTTrainer.

    python examples/trl_gift_sft.py                                  # SmolLM2 on giftlab data's countdown
    python examples/trl_gift_sft.py --model Qwen/Qwen2.5-0.5B --beta 5 --max-steps 500
    accelerate launch examples/trl_gift_sft.py ...                    # DDP / FSDP / DeepSpeed as configured
    python examples/trl_gift_sft.py --tiny --out /tmp/gift            # a tiny random model (CI)

Writes OUT/final, a checkpoint that TRL's GRPO (examples/trl_grpo_from_gift.py) starts from.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def prompt_completion_dataset(path):
    """giftlab records -> TRL's conversational prompt/completion format."""
    from datasets import Dataset

    from giftlab.data import read_records

    rows = [
        {"prompt": r["messages"], "completion": [{"role": "assistant", "content": r["response"]}]}
        for r in read_records(path)
    ]
    return Dataset.from_list(rows)


def tiny_setup(folder: Path):
    """A tiny random model and a small countdown file, for a CI run without the real model."""
    from giftlab.data.tasks import write_task_data
    from giftlab.models import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    tiny_llama(len(tok)).save_pretrained(folder / "model")
    tok.save_pretrained(folder / "model")
    paths = write_task_data("countdown", folder / "data", 16, 4, prompt_style="short")
    return str(folder / "model"), paths["train"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2", help="'smollm2', a local folder or a hub id")
    p.add_argument("--data", default="data/countdown/train.jsonl", help="records from giftlab data")
    p.add_argument("--out", default="runs/trl-gift")
    p.add_argument("--beta", type=float, default=5.0)
    p.add_argument(
        "--objective", default="gift", help="any giftlab objective: gift, gift_seq, sft, ..."
    )
    p.add_argument("--max-steps", type=int, default=20)
    p.add_argument("--tiny", action="store_true", help="tiny random model and data (seconds)")
    args = p.parse_args()

    import torch

    from giftlab.integrations.trl import GIFTConfig, GIFTTrainer
    from giftlab.models import resolve_model_path

    model, data = args.model, args.data
    if args.tiny:
        model, data = tiny_setup(Path(args.out) / "tiny")
    elif model == "smollm2":
        model = str(resolve_model_path("smollm2"))  # the bundled model, converted once

    config = GIFTConfig(
        output_dir=args.out,
        objective=args.objective,
        beta=args.beta,
        max_steps=args.max_steps,
        per_device_train_batch_size=4,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1,
        save_strategy="no",
        report_to=[],
    )
    trainer = GIFTTrainer(model=model, args=config, train_dataset=prompt_completion_dataset(data))
    trainer.train()
    trainer.save_model(str(Path(args.out) / "final"))
    print(f"wrote {Path(args.out) / 'final'}")


if __name__ == "__main__":
    main()
