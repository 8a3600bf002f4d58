"""GIFT in TRL: `GIFTTrainer`, a `trl.SFTTrainer` whose loss is any objective of
giftlab.losses.OBJECTIVES (GIFT by default), computed by giftlab's fused loss from hidden states.

    from giftlab.integrations.trl import GIFTConfig, GIFTTrainer
    trainer = GIFTTrainer(model="path/or/hub-id", args=GIFTConfig(output_dir="out", beta=5.0),
                          train_dataset=dataset)
    trainer.train()

Why SFTTrainer and not TRL's distillation trainers: GIFT is supervised fine-tuning on the
demonstrations with a reshaped target; SFTTrainer already owns everything a user expects of SFT
(chat templates, completion-only masks, packing and padding-free batches, its metrics), while the
distillation trainers sample from the student or mix in generated data, which GIFT does not do.

What the trainer adds to SFTTrainer:
- a frozen reference (the initial model, a path, or a given model; with PEFT the same weights
  with the adapters off), prepared by the Accelerator in evaluation mode so it is placed and
  sharded like the policy (DDP, FSDP, DeepSpeed);
- the loss from the final hidden states at the response positions only (labels shifted as HF's
  own loss shifts them), with giftlab's chunked fused-linear loss: no (tokens, V) logits;
- `num_items_in_batch` (gradient accumulation) and `average_tokens_across_devices` honoured as in
  `Trainer.compute_loss`;
- TRL's metrics (entropy, mean_token_accuracy, num_tokens) plus GIFT's: gift/gate_w_mean,
  gift/gate_w_frac_below_half, gift/target_entropy, gift/kl_to_base.
"""

from giftlab.integrations.trl.config import GIFTConfig
from giftlab.integrations.trl.trainer import GIFTTrainer, add_response_hidden

__all__ = ["GIFTConfig", "GIFTTrainer", "add_response_hidden"]
