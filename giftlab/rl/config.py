"""The settings of the RL jobs: `giftlab rl` (RLConfig: the shared run settings,
giftlab.config.RunSettings, plus GRPO's) and `giftlab eval` (EvalConfig)."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass

from giftlab.config import ATTENTION_HELP, ATTENTION_RULE, RunSettings
from giftlab.flatconfig import (
    SEED_ALLOWED,
    ConfigError,
    FlatConfig,
    at_least,
    finite_non_negative,
    in_unit_interval,
    is_seed,
    one_of,
)
from giftlab.flatconfig import setting as _f


@dataclass
class RLConfig(RunSettings):
    ref_model: str = _f(
        "smollm2", "the base model that KL is measured (and optionally penalised) against"
    )
    train_file: str = _f(
        "data/countdown/train.jsonl", "prompts with verifier metadata (from giftlab data)"
    )
    prompts_per_step: int = _f(4, "prompts per step")
    group_size: int = _f(8, "samples per prompt (the GRPO group)")
    max_new_tokens: int = _f(24, "completion length limit")
    temperature: float = _f(1.0, "sampling temperature (0: greedy)")
    lr: float = _f(1e-6, "AdamW learning rate")
    clip_low: float = _f(0.2, "PPO ratio clip below 1")
    clip_high: float = _f(0.2, "PPO ratio clip above 1")
    kl_coef: float = _f(0.0, "KL-to-base penalty (0: measured and logged only, as in the paper)")
    kl_estimator: str = _f("k3", "KL estimator of the penalty: k1 or k3")
    normalize_std: bool = _f(False, "divide advantages by the group std")
    binary_reward: bool = _f(True, "reward 1[score == 1] (false: the verifier's partial credit)")
    max_verifier_failures: float = _f(
        0.0,
        "fraction of a step's completions the verifier may fail on (raise) before the run stops "
        "with exit 2 naming a record and the reason; a tolerated failure gets its group's mean "
        "reward (advantage 0: it takes no part in the update), never a 0.0 reward",
    )
    bf16: bool = _f(
        False,
        "bf16 autocast for sampling and the update on the run's device (CUDA or CPU); the "
        "reference's weights in bf16",
    )
    ppo_epochs: int = _f(1, "optimisation passes per batch of samples")
    skip_zero_advantage: bool = _f(
        True,
        "with kl_coef = 0, run the backward only on samples whose advantage is not 0 (same "
        "update: the others add nothing to the loss)",
    )
    shared_prefix: bool = _f(
        True,
        "in the update, run the token prefix every prompt shares (a few-shot prompt's "
        "demonstrations) once, not once per sample (the same log-probs and gradients to float "
        "precision); false: each sequence whole",
    )
    max_steps: int = _f(10, "RL steps (may grow on --resume)")
    out_dir: str = _f("runs/rl", "run folder: config, metrics.jsonl, checkpoints, final/")
    save_every: int = _f(0, "steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = _f(1, "checkpoints kept")

    RULES = (
        *RunSettings.RULES,
        ("group_size", at_least(2), ">= 2"),
        ("prompts_per_step", at_least(1), ">= 1"),
        ("max_new_tokens", at_least(1), ">= 1"),
        ("temperature", finite_non_negative, "a finite number >= 0 (0: greedy)"),
        ("clip_low", lambda x: math.isfinite(x) and 0 <= x < 1, "in [0, 1)"),
        ("clip_high", finite_non_negative, "a finite number >= 0"),
        ("kl_coef", finite_non_negative, "a finite number >= 0"),
        ("kl_estimator", one_of("k1", "k3"), "k1 or k3"),
        ("max_verifier_failures", in_unit_interval, "in [0, 1]"),
        ("ppo_epochs", at_least(1), ">= 1"),
        ("ref_model", bool, "a model folder or 'smollm2'"),
    )
    RESUME_MUTABLE: typing.ClassVar[tuple] = (
        *RunSettings.RESUME_MUTABLE,
        "max_verifier_failures",
        "shared_prefix",  # the same update to float precision
    )

    def model_card(self) -> str:
        """The README.md of final/ (giftlab.models.card)."""
        from giftlab.models.card import model_card

        return model_card(
            objective="grpo",
            base_model=self.model,
            data=self.train_file,
            trainer="giftlab rl",
            reference=self.ref_model,
            extra={
                "steps": self.max_steps,
                "learning rate": self.lr,
                "group size": self.group_size,
            },
        )

    def check(self):
        if not self.train_file:
            raise ConfigError("train_file must name a .jsonl or .parquet file", "train_file")


def rl_config_help() -> str:
    return RLConfig.help_text()


@dataclass
class EvalConfig(FlatConfig):
    """`giftlab eval`: one checkpoint on held-out problems."""

    model: str = _f("smollm2", "model to evaluate: 'smollm2', a checkpoint folder or a hub id")
    ref_model: str = _f("smollm2", "the base model that KL is measured against")
    data: str = _f("data/countdown/val.jsonl", "held-out records (from giftlab data)")
    samples: int = _f(16, "samples per problem, >= 1")
    limit: int = _f(32, "problems, >= 0 (0: all)")
    max_new_tokens: int = _f(24, "completion length, >= 1")
    temperature: float = _f(1.0, "sampling temperature, >= 0 (0: greedy)")
    seed: int = _f(0, "sampling seed")
    bf16: bool = _f(False, "evaluate under bf16 autocast (the precision of a bf16 run)")
    sampler: str = _f(
        "fast",
        "fast (the prompts' shared prefix computed once, finished samples leave the batch) or "
        "plain (model.generate): the same distribution, greedy completions equal",
    )
    prompts_per_batch: int = _f(16, "problems sampled together (x samples rows)")
    attn_implementation: str = _f("auto", ATTENTION_HELP)
    out: str = _f(
        "",
        "also write the JSON to this file (its folder is made before any work), and every "
        "completion with its score beside it, as they are made (FILE's stem + .completions.jsonl)",
    )

    RULES = (
        ("samples", at_least(1), ">= 1"),
        ("limit", at_least(0), ">= 0 (0: all)"),
        ("seed", is_seed, SEED_ALLOWED),
        ("max_new_tokens", at_least(1), ">= 1"),
        ("temperature", finite_non_negative, "a finite number >= 0 (0: greedy)"),
        ("model", bool, "a model folder, 'smollm2' or a hub id"),
        ("ref_model", bool, "a model folder, 'smollm2' or a hub id"),
        ATTENTION_RULE,
        ("sampler", one_of("fast", "plain"), "fast or plain"),
        ("prompts_per_batch", at_least(1), ">= 1"),
    )
