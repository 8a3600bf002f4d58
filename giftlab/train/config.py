"""The trainer's flat config: one dataclass whose field help is the `giftlab train --help` text.

Load from YAML (`TrainConfig.from_yaml`), override with `key=value` strings (`with_overrides`);
unknown keys and bad values are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from giftlab.losses import OBJECTIVES


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


class FlatConfig:
    """Loading shared by the flat config dataclasses (TrainConfig, RLConfig): from a dict or YAML,
    `key=value` overrides; unknown keys and bad values are errors naming the key."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> FlatConfig:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; known keys: {cls.field_names()}")
        coerced = {k: _coerce(cls, k, v, source) for k, v in values.items()}
        return cls(**coerced)

    @classmethod
    def from_yaml(cls, path) -> FlatConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config must be a mapping of key: value")
        return cls.from_dict(data, source=str(path))

    def with_overrides(self, overrides: list[str]) -> FlatConfig:
        values = dataclasses.asdict(self)
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r} must look like key=value")
            key, raw = item.split("=", 1)
            if key not in values:
                raise ValueError(
                    f"override {item!r}: unknown key {key!r}; known keys: {self.field_names()}"
                )
            values[key] = _parse(type(self), key, raw)
        return type(self).from_dict(values, source="overrides")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    bf16: bool = _f(False, "bf16 autocast (CUDA only)")
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
    chunk_size: int = _f(0, "tokens per chunk of the fused loss (0: automatic)")
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
    log_every: int = _f(1, "steps between metric lines")
    diag_every: int = _f(
        5, "steps between teacher-forced diagnostics on the training batch (0: never)"
    )
    eval_every: int = _f(10, "steps between validations (0: only at the end)")
    save_every: int = _f(10, "steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = _f(2, "checkpoints kept (older ones deleted)")
    top_k: int = _f(10, "K of the top-K overlap with the reference")
    save_final: bool = _f(True, "write final/ (and best/) as loadable model folders")
    progress: bool = _f(True, "progress bar")

    def __post_init__(self):
        checks = [
            (self.objective in OBJECTIVES, f"objective must be one of {sorted(OBJECTIVES)}, got {self.objective!r}"),
            (self.overlong in ("skip", "fail", "truncate"), f"overlong must be skip, fail or truncate, got {self.overlong!r}"),
            (self.schedule in ("constant", "cosine"), f"schedule must be constant or cosine, got {self.schedule!r}"),
            (self.beta >= 0 and not math.isnan(self.beta), f"beta must be in [0, inf], got {self.beta}"),
            (self.eta >= 0 and not math.isnan(self.eta), f"eta must be in [0, inf], got {self.eta}"),
            (0 <= self.smoothing <= 1, f"smoothing must be in [0, 1], got {self.smoothing}"),
            (0 <= self.label_eps <= 1, f"label_eps must be in [0, 1], got {self.label_eps}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.lora_rank >= 0, f"lora_rank must be >= 0, got {self.lora_rank}"),
            (self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def _field_type(cls, key):
    hints = typing.get_type_hints(cls)
    t = hints[key]
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def _parse(cls, key, raw: str):
    t = _field_type(cls, key)
    if t is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected true or false, got {raw!r}")
    try:
        return t(raw)
    except ValueError:
        raise ValueError(f"{key}: expected {t.__name__}, got {raw!r}") from None


def _coerce(cls, key, value, source):
    t = _field_type(cls, key)
    if t is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    if t is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, t) or (t is int and isinstance(value, bool)):
        raise ValueError(f"{source}: {key} must be {t.__name__}, got {value!r}")
    return value


def config_help(cls=None) -> str:
    """Every key with its default and help, for `--help`."""
    fields = dataclasses.fields(cls or TrainConfig)
    return "\n".join(f"  {f.name} (default {f.default!r}): {f.metadata['help']}" for f in fields)
