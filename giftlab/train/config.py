"""The trainer's flat config: one dataclass whose field help is the `giftlab train --help` text.

Load from YAML (`TrainConfig.from_yaml`), override with `key=value` strings (`with_overrides`);
unknown keys and bad values are errors that name the key (and the YAML file and line).
"""

from __future__ import annotations

from dataclasses import dataclass

from giftlab.config import (
    ConfigError,
    FlatConfig,
    at_least,
    finite_non_negative,
    finite_positive,
    in_unit_interval,
    non_negative_or_inf,
    one_of,
)
from giftlab.config import setting as _f
from giftlab.losses import OBJECTIVES


@dataclass
class TrainConfig(FlatConfig):
    # -- model
    model: str = _f(
        "smollm2", "'smollm2' (the bundled SmolLM2-135M-Instruct) or a local checkpoint folder"
    )
    ref_model: str = _f(
        "", "reference (base) model folder; empty: the initial policy (or, with LoRA, adapters off)"
    )
    lora_rank: int = _f(0, "LoRA rank (0: full fine-tuning)")
    lora_alpha: float = _f(16.0, "LoRA alpha")
    grad_checkpointing: bool = _f(False, "gradient checkpointing in the policy")
    bf16: bool = _f(False, "bf16 autocast (CUDA only); the reference is then kept in bf16")
    bf16_weights: bool = _f(
        False, "keep the policy's and the reference's weights in bf16 (CUDA; AdamW on bf16 weights)"
    )
    attn_implementation: str = _f(
        "sdpa", "attention kernel passed to from_pretrained: sdpa, eager or flash_attention_2"
    )
    # -- data
    train_file: str = _f("data/countdown/train.jsonl", "training records (.jsonl or .parquet)")
    val_file: str = _f("data/countdown/val.jsonl", "validation records; empty: no validation")
    prompt_key: str = _f("prompt", "record key of the prompt (reference trainer: sft_prompt)")
    response_key: str = _f("response", "record key of the response (reference trainer: solution)")
    messages_key: str = _f("messages", "record key of chat messages (last one is the response)")
    max_length: int = _f(256, "maximum tokens per example (prompt + response + end token)")
    overlong: str = _f("skip", "over-long examples: skip (counted), fail, or truncate the response")
    max_train_examples: int = _f(0, "use at most this many training records (0: all)")
    max_val_examples: int = _f(32, "use at most this many validation records (0: all)")
    # -- objective
    objective: str = _f("gift", f"one of {sorted(OBJECTIVES)}")
    beta: float = _f(
        20.0, "GIFT inverse temperature (also the gate reported for other objectives); inf = SFT"
    )
    eta: float = _f(20.0, "sequence reward scale of gift_seq")
    smoothing: float = _f(0.0, "uniform mixing of the reference in GIFT's target, [0, 1]")
    alpha: float = _f(0.01, "entropy bonus (sft_entropy) or KL weight (asft)")
    label_eps: float = _f(0.1, "label smoothing epsilon (label_smoothing)")
    clip_low: float = _f(0.2, "PSFT ratio clip below 1")
    clip_high: float = _f(0.2, "PSFT ratio clip above 1")
    chunked: bool = _f(True, "chunked fused-linear loss (sft, gift, gift_seq); false: dense logits")
    chunk_size: int = _f(0, "tokens per chunk of the fused loss (0: from the free memory)")
    kernel: str = _f(
        "auto",
        "fused loss head: auto (the Triton kernel on CUDA, torch elsewhere), torch or triton",
    )
    # -- optimisation
    lr: float = _f(1e-5, "AdamW learning rate")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    adam_beta1: float = _f(0.9, "AdamW beta1")
    adam_beta2: float = _f(0.95, "AdamW beta2")
    schedule: str = _f("constant", "learning-rate schedule: constant or cosine (both after warmup)")
    warmup_steps: int = _f(0, "linear warmup steps")
    batch_size: int = _f(4, "examples per micro-batch per process")
    grad_accum: int = _f(1, "micro-batches per optimiser step")
    max_steps: int = _f(20, "optimiser steps")
    clip_grad: float = _f(1.0, "gradient-norm clip (0: off)")
    seed: int = _f(0, "seed of the data order and initialisation")
    # -- logging, evaluation, checkpoints
    out_dir: str = _f(
        "runs/train", "run folder: config, metrics.jsonl, checkpoints, best/ and final/"
    )
    overwrite: bool = _f(False, "replace a finished or abandoned run in out_dir (else refused)")
    log_every: int = _f(1, "steps between metric lines")
    diag_every: int = _f(
        5, "steps between teacher-forced diagnostics on the training batch (0: never)"
    )
    eval_every: int = _f(10, "steps between validations (0: only at the end)")
    save_every: int = _f(10, "steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = _f(2, "checkpoints kept (older ones deleted)")
    top_k: int = _f(10, "K of the top-K overlap with the reference")
    save_final: bool = _f(True, "write final/ (and best/) as loadable model folders")
    report_to: str = _f(
        "none", "tracker beside metrics.jsonl (Accelerate's): none, tensorboard, wandb or mlflow"
    )
    progress: bool = _f(True, "progress bar")

    RULES = (
        ("objective", one_of(*OBJECTIVES), f"one of {sorted(OBJECTIVES)}"),
        ("overlong", one_of("skip", "fail", "truncate"), "skip, fail or truncate"),
        ("schedule", one_of("constant", "cosine"), "constant or cosine"),
        (
            "report_to",
            one_of("none", "tensorboard", "wandb", "mlflow"),
            "none, tensorboard, wandb or mlflow",
        ),
        ("beta", non_negative_or_inf, "in [0, inf]"),
        ("eta", non_negative_or_inf, "in [0, inf]"),
        ("smoothing", in_unit_interval, "in [0, 1]"),
        ("label_eps", in_unit_interval, "in [0, 1]"),
        ("alpha", finite_non_negative, "a finite number >= 0"),
        ("clip_low", finite_non_negative, "a finite number >= 0"),
        ("clip_high", finite_non_negative, "a finite number >= 0"),
        ("lr", finite_positive, "a finite number > 0"),
        ("weight_decay", finite_non_negative, "a finite number >= 0"),
        ("adam_beta1", lambda x: 0 <= x < 1, "in [0, 1)"),
        ("adam_beta2", lambda x: 0 <= x < 1, "in [0, 1)"),
        ("lora_alpha", finite_positive, "a finite number > 0"),
        ("clip_grad", finite_non_negative, "a finite number >= 0 (0: off)"),
        ("batch_size", at_least(1), ">= 1"),
        ("grad_accum", at_least(1), ">= 1"),
        ("max_steps", at_least(1), ">= 1"),
        ("max_length", at_least(2), ">= 2"),
        ("max_train_examples", at_least(0), ">= 0 (0: all)"),
        ("max_val_examples", at_least(0), ">= 0 (0: all)"),
        ("chunk_size", at_least(0), ">= 0 (0: automatic)"),
        ("warmup_steps", at_least(0), ">= 0"),
        ("lora_rank", at_least(0), ">= 0 (0: full fine-tuning)"),
        ("log_every", at_least(1), ">= 1"),
        ("diag_every", at_least(0), ">= 1, or 0 for never"),
        ("eval_every", at_least(0), ">= 1, or 0 for only at the end"),
        ("save_every", at_least(0), ">= 1, or 0 for only at the end"),
        ("keep_checkpoints", at_least(1), ">= 1"),
        ("top_k", at_least(1), ">= 1"),
        ("model", bool, "a model folder or 'smollm2'"),
        ("train_file", bool, "a .jsonl or .parquet file"),
        ("out_dir", bool, "a folder path"),
    )

    def check(self):
        if self.lora_rank > 0 and self.ref_model:
            raise ConfigError(
                "ref_model must be empty with lora_rank > 0 (the reference is the policy with its "
                f"adapters off), got {self.ref_model!r}",
                "ref_model",
            )


def config_help(cls=TrainConfig) -> str:
    return cls.help_text()
