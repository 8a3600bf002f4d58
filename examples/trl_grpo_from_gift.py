"""GRPO in TRL from a GIFT checkpoint, with giftlab's verifiers as the reward.

    python examples/trl_grpo_from_gift.py --model runs/trl-gift/final --data data/countdown/train.jsonl
    python examples/trl_grpo_from_gift.py --tiny --out /tmp/grpo     # a tiny random model (CI)

With vLLM (its own environment, since vLLM pins its own torch): add `use_vllm=True` to GRPOConfig.
The reward is 1.0 for a completion the task's verifier scores exactly 1.0, else 0.0.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def prompt_dataset(path):
    """giftlab records -> TRL prompts plus the verifier's columns (config kept as JSON text)."""
    from datasets import Dataset

    from giftlab.rl.loop import load_task_records

    rows = []
    for r in load_task_records(path):
        row = {"prompt": r["messages"], "task": r["task"], "answer": str(r.get("answer", ""))}
        if r["task"] != "math":
            row |= {"index": r["index"], "seed": r["seed"], "config": json.dumps(r["config"])}
        rows.append(row)
    return Dataset.from_list(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="runs/trl-gift/final", help="the GIFT checkpoint folder")
    p.add_argument("--data", default="data/countdown/train.jsonl", help="records from giftlab data")
    p.add_argument("--out", default="runs/trl-grpo")
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--tiny", action="store_true", help="tiny random model and data (seconds)")
    args = p.parse_args()

    import torch
    from trl import GRPOConfig, GRPOTrainer

    from giftlab.rewards import correct_reward

    model, data = args.model, args.data
    if args.tiny:
        from trl_gift_sft import tiny_setup

        model, data = tiny_setup(Path(tempfile.mkdtemp()))

    config = GRPOConfig(
        output_dir=args.out,
        max_steps=args.max_steps,
        num_generations=4,
        per_device_train_batch_size=4,
        max_completion_length=16,
        learning_rate=1e-6,
        beta=0.0,
        temperature=1.0,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1,
        save_strategy="no",
        report_to=[],
    )
    trainer = GRPOTrainer(
        model=model, reward_funcs=[correct_reward], args=config, train_dataset=prompt_dataset(data)
    )
    trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    print(f"GRPO steps {len(rewards)}, mean reward per step {rewards}")
    trainer.save_model(str(Path(args.out) / "final"))


if __name__ == "__main__":
    main()
