"""The trainer's flat config: one dataclass whose field help is the `giftlab train --help` text.

Load from YAML (`TrainConfig.from_yaml`), override with `key=value` strings (`with_overrides`);
unknown keys and bad values are errors that name the key (and the YAML file and line).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from giftlab.config import DATA_RULES, DataSettings, RunSettings
from giftlab.flatconfig import ConfigError, at_least, finite_positive, one_of
from giftlab.flatconfig import setting as _f
from giftlab.losses.fused import KERNELS
from giftlab.losses.settings import (
    OBJECTIVE_RULES,
    ObjectiveSettings,
    check_objective_settings,
)

# the fused loss heads (giftlab.losses.fused)
# keys a resumed run may change (recorded in config.json's history); any other is refused
TRAIN_RESUME_MUTABLE = (
    *RunSettings.RESUME_MUTABLE,
    "log_every",
    "diag_every",
    "eval_every",
    "top_k",
    "chunk_size",
)


@dataclass
class TrainConfig(RunSettings, ObjectiveSettings, DataSettings):
    # -- model (model: giftlab.config.RunSettings)
    ref_model: str = _f(
        "", "reference (base) model folder; empty: the initial policy (or, with LoRA, adapters off)"
    )
    lora_rank: int = _f(0, "LoRA rank (0: full fine-tuning)")
    lora_alpha: float = _f(16.0, "LoRA alpha")
    grad_checkpointing: bool = _f(False, "gradient checkpointing in the policy")
    bf16: bool = _f(
        False, "bf16 autocast on the run's device (CUDA or CPU); the reference is kept in bf16"
    )
    bf16_weights: bool = _f(
        False, "keep the policy's and the reference's weights in bf16 (AdamW on bf16 weights)"
    )
    ref_cache: str = _f(
        "",
        "a giftlab ref-cache folder built for this run: the reference's top-K distribution is "
        "read from it and no reference model is loaded (memory as SFT's)",
    )
    # -- data: train_file, val_file, prompt_key, response_key, messages_key, max_length,
    #    overlong, max_train_examples, max_val_examples (giftlab.config.DataSettings)
    # -- objective: objective, beta, eta, smoothing, alpha, label_eps, clip_low, clip_high
    #    (giftlab.losses.settings.ObjectiveSettings)
    chunked: bool = _f(True, "chunked fused-linear loss (sft, gift, gift_seq); false: dense logits")
    chunk_size: int = _f(0, "tokens per chunk of the fused loss (0: from the free memory)")
    kernel: str = _f(
        "auto",
        "fused loss head: auto (the Triton kernel on CUDA, torch elsewhere), torch or triton",
    )
    # -- optimisation (lr, clip_grad, seed, max_steps: giftlab.config.RunSettings)
    weight_decay: float = _f(0.01, "AdamW weight decay")
    adam_beta1: float = _f(0.9, "AdamW beta1")
    adam_beta2: float = _f(0.95, "AdamW beta2")
    schedule: str = _f("constant", "learning-rate schedule: constant or cosine (both after warmup)")
    warmup_steps: int = _f(0, "linear warmup steps")
    batch_size: int = _f(4, "examples per micro-batch per process")
    grad_accum: int = _f(1, "micro-batches per optimiser step")
    # -- logging, evaluation, checkpoints (save_every, keep_checkpoints, save_final, report_to,
    #    progress: giftlab.config.RunSettings)
    out_dir: str = _f(
        "runs/train", "run folder: config, metrics.jsonl, checkpoints, best/ and final/"
    )
    log_every: int = _f(1, "steps between metric lines")
    diag_every: int = _f(
        5, "steps between teacher-forced diagnostics on the training batch (0: never)"
    )
    eval_every: int = _f(10, "steps between validations (0: only at the end)")
    top_k: int = _f(10, "K of the top-K overlap with the reference")

    RULES = (
        *RunSettings.RULES,
        *OBJECTIVE_RULES,
        *DATA_RULES,
        ("schedule", one_of("constant", "cosine"), "constant or cosine"),
        ("adam_beta1", lambda x: 0 <= x < 1, "in [0, 1)"),
        ("adam_beta2", lambda x: 0 <= x < 1, "in [0, 1)"),
        ("lora_alpha", finite_positive, "a finite number > 0"),
        ("batch_size", at_least(1), ">= 1"),
        ("grad_accum", at_least(1), ">= 1"),
        ("chunk_size", at_least(0), ">= 0 (0: automatic)"),
        ("warmup_steps", at_least(0), ">= 0"),
        ("lora_rank", at_least(0), ">= 0 (0: full fine-tuning)"),
        ("log_every", at_least(1), ">= 1"),
        ("diag_every", at_least(0), ">= 1, or 0 for never"),
        ("eval_every", at_least(0), ">= 1, or 0 for only at the end"),
        ("top_k", at_least(1), ">= 1"),
        ("kernel", one_of(*KERNELS), f"one of {list(KERNELS)}"),
    )

    RESUME_MUTABLE: typing.ClassVar[tuple] = TRAIN_RESUME_MUTABLE

    def model_card(self) -> str:
        """The README.md of final/ and best/ (giftlab.models.card)."""
        from giftlab.models.card import model_card

        return model_card(
            objective=self.objective,
            base_model=self.model,
            data=self.train_file,
            trainer="giftlab train",
            settings=self,
            reference=self.ref_model or None,
            extra={
                "steps": self.max_steps,
                "learning rate": self.lr,
                "batch size": self.batch_size,
                "LoRA rank": self.lora_rank,
                "bf16": self.bf16 or self.bf16_weights,
            },
            selection="best/: the step with the lowest held-out one-hot cross-entropy (val/ce); "
            "final/: the last step.",
        )

    def check(self):
        check_objective_settings(self)
        if self.lora_rank > 0 and self.ref_model:
            raise ConfigError(
                "ref_model must be empty with lora_rank > 0 (the reference is the policy with its "
                f"adapters off), got {self.ref_model!r}",
                "ref_model",
            )


def config_help(cls=TrainConfig) -> str:
    return cls.help_text()
