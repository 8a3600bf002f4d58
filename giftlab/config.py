"""The settings giftlab's jobs share, on the flat-config engine (giftlab.flatconfig): the
run settings of train and rl (RunSettings), the data and tokenisation settings of train and
ref-cache (DataSettings), the attention kernel, the trackers, and the inverse temperature's rule.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

from giftlab.flatconfig import (
    SEED_ALLOWED,
    FlatConfig,
    at_least,
    finite_non_negative,
    finite_positive,
    is_seed,
    one_of,
    setting,
)


def beta_value(x) -> bool:
    """An inverse temperature: 0 <= beta <= 1e30 (finite in float32 with room), or inf."""
    return not math.isnan(x) and (0 <= x <= 1e30 or x == math.inf)


BETA_ALLOWED = "in [0, 1e30] or inf (inf = one-hot SFT)"

# -- trackers: report_to names and the package each needs ------------------------------------------


def _tensorboard(folder, name):
    from accelerate.tracking import TensorBoardTracker

    return TensorBoardTracker("tb", folder)


def _wandb(folder, name):
    from accelerate.tracking import WandBTracker

    return WandBTracker(name)


def _mlflow(folder, name):
    from accelerate.tracking import MLflowTracker

    return MLflowTracker(experiment_name=name, logging_dir=str(Path(folder) / "mlruns"))


# report_to name -> the package it needs (checked before a run starts); a new tracker is one
# entry here and one in TRACKER_FACTORIES (an Accelerate tracker built for the run folder)
TRACKERS = {"none": None, "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
TRACKER_FACTORIES = {"tensorboard": _tensorboard, "wandb": _wandb, "mlflow": _mlflow}


def tracker_ready(name) -> bool:
    """A known tracker whose package imports (checked before any run folder is touched)."""
    import importlib.util

    if name not in TRACKERS:
        return False
    return TRACKERS[name] is None or importlib.util.find_spec(TRACKERS[name]) is not None


def tracker_allowed(name) -> str:
    if name in TRACKERS and TRACKERS[name]:
        return (
            f"a tracker whose package is installed; {name} needs `pip install {TRACKERS[name]}`"
            + (" (or giftlab[tracking])" if name == "tensorboard" else "")
        )
    return f"one of {list(TRACKERS)}"


# -- the attention kernel of every command that loads a model (giftlab.models.load_model) ----------

ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2", "flex_attention")
ATTENTION_HELP = (
    "attention kernel: auto (transformers' choice for the model's class: SDPA where the class "
    "supports it, eager otherwise), sdpa, eager, flash_attention_2 or flex_attention"
)
ATTENTION_RULE = ("attn_implementation", one_of(*ATTENTION), f"one of {list(ATTENTION)}")


# -- the settings every training run has (train and rl) ---------------------------------------------


@dataclasses.dataclass
class RunSettings(FlatConfig):
    """The run part of `giftlab train` and `giftlab rl`: folder, budget, checkpoints, logging.
    A subclass re-declares a field only to change its default."""

    model: str = setting(
        "smollm2",
        "policy to start from: 'smollm2' (the bundled SmolLM2-135M-Instruct), a local checkpoint "
        "folder (e.g. runs/gift/final) or a hub id",
    )
    attn_implementation: str = setting("auto", ATTENTION_HELP)
    out_dir: str = setting("runs/run", "run folder: config, metrics.jsonl, checkpoints, final/")
    overwrite: bool = setting(
        False,
        "replace a giftlab run in out_dir (only what a run writes; a folder holding other files "
        "is refused)",
    )
    seed: int = setting(0, "seed of the data order, initialisation and sampling")
    lr: float = setting(1e-5, "AdamW learning rate")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    clip_grad: float = setting(1.0, "gradient-norm clip (0: off)")
    max_steps: int = setting(20, "optimiser steps (may grow on --resume)")
    save_every: int = setting(10, "steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = setting(2, "checkpoints kept (older ones deleted)")
    save_final: bool = setting(True, "write final/ (and best/) as loadable model folders")
    save_optimizer: bool = setting(
        True,
        "keep the optimiser state in checkpoints (an exact --resume; twice the weights' size "
        "with AdamW); false: weights, data position and schedule only, and a resumed run starts "
        "a fresh optimiser (said at resume)",
    )
    save_dtype: str = setting(
        "float32",
        "dtype of the weights written to checkpoints, best/ and final/: float32, or bfloat16 "
        "(half the size; a run resumed from bf16 weights continues from their rounding)",
    )
    report_to: str = setting(
        "none", f"tracker beside metrics.jsonl (Accelerate's): one of {list(TRACKERS)}"
    )
    progress: bool = setting(True, "progress bar")

    RULES = (
        ("model", bool, "a model folder, 'smollm2' or a hub id"),
        ("out_dir", bool, "a folder path"),
        ("lr", finite_positive, "a finite number > 0"),
        ("weight_decay", finite_non_negative, "a finite number >= 0"),
        ("clip_grad", finite_non_negative, "a finite number >= 0 (0: off)"),
        ("max_steps", at_least(1), ">= 1"),
        ("seed", is_seed, SEED_ALLOWED),
        ("save_every", at_least(0), ">= 1, or 0 for only at the end"),
        ("keep_checkpoints", at_least(1), ">= 1"),
        ("save_dtype", one_of("float32", "bfloat16"), "float32 or bfloat16"),
        ("report_to", tracker_ready, tracker_allowed),
        ATTENTION_RULE,
    )
    # keys a resumed run may change (recorded in config.json's history); any other is refused
    RESUME_MUTABLE: typing.ClassVar[tuple] = (
        "max_steps",
        "save_every",
        "keep_checkpoints",
        "save_final",
        "save_optimizer",
        "save_dtype",
        "report_to",
        "progress",
        "overwrite",
        "attn_implementation",  # the kernel, not the maths: a stopped run may change it
    )


# -- the data and tokenisation settings (train and ref-cache: one declaration) ---------------------


@dataclasses.dataclass
class DataSettings:
    """The records a run trains on and how they are tokenised: `giftlab train` and
    `giftlab ref-cache` take the same keys, so a cache is built for exactly the run's examples."""

    train_file: str = setting("data/countdown/train.jsonl", "training records (.jsonl or .parquet)")
    val_file: str = setting("data/countdown/val.jsonl", "validation records; empty: no validation")
    prompt_key: str = setting("prompt", "record key of the prompt (reference trainer: sft_prompt)")
    response_key: str = setting(
        "response", "record key of the response (reference trainer: solution)"
    )
    messages_key: str = setting(
        "messages", "record key of chat messages (last one is the response)"
    )
    max_length: int = setting(256, "maximum tokens per example (prompt + response + end token)")
    overlong: str = setting(
        "skip", "over-long examples: skip (counted), fail, or truncate the response"
    )
    max_train_examples: int = setting(0, "use at most this many training records (0: all)")
    max_val_examples: int = setting(32, "use at most this many validation records (0: all)")


DATA_RULES = (
    ("overlong", one_of("skip", "fail", "truncate"), "skip, fail or truncate"),
    ("max_length", at_least(2), ">= 2"),
    ("max_train_examples", at_least(0), ">= 0 (0: all)"),
    ("max_val_examples", at_least(0), ">= 0 (0: all)"),
    ("train_file", bool, "a .jsonl or .parquet file"),
)
