"""`giftlab pipeline`'s settings (PipelineConfig) and its start specs: 'gift:5', 'sft',
'gift:5@k16' (from a reference cache of the top 16 tokens), 'MODULE:FUNCTION[:VALUE]' (a user's
variant)."""

from __future__ import annotations

from dataclasses import dataclass

from giftlab.config import ATTENTION_HELP, ATTENTION_RULE
from giftlab.data.tasks import TASK_DEFAULTS
from giftlab.flatconfig import (
    SEED_ALLOWED,
    ConfigError,
    FlatConfig,
    at_least,
    finite_non_negative,
    finite_positive,
    is_seed,
    one_of,
)
from giftlab.flatconfig import setting as _f
from giftlab.losses import HYPER_SETTINGS, OBJECTIVES
from giftlab.losses.settings import OBJECTIVE_RULES
from giftlab.losses.variant import objective_problem
from giftlab.variants import is_variant_spec


@dataclass
class PipelineConfig(FlatConfig):
    out_dir: str = _f(
        "runs/pipeline", "report folder: data, one run folder per init and seed, report.md"
    )
    overwrite: bool = _f(False, "replace an earlier pipeline in out_dir (else refused)")
    task: str = _f("countdown", f"reasoning-gym task, one of {sorted(TASK_DEFAULTS)}")
    prompt_style: str = _f(
        "short", "short, or fewshot (two solved examples first: the base then solves some)"
    )
    n_train: int = _f(256, "training problems")
    n_val: int = _f(16, "held-out problems")
    inits: list[str] = _f(
        ["sft", "gift:5"],
        "initialisations: objective[:value] (the value sets its main parameter: beta of gift, "
        "eta of gift_seq, alpha of sft_entropy, beta of a variant MODULE:FUNCTION), e.g. "
        "sft,gift:5,dft,myvariants:half_mix:5",
    )
    seeds: list[int] = _f([0, 1], "training seeds, e.g. 0,1,2")
    sft_steps: int = _f(20, "fine-tuning steps")
    sft_batch: int = _f(4, "fine-tuning batch size")
    sft_lr: float = _f(1e-5, "fine-tuning learning rate")
    select: str = _f(
        "best",
        "fine-tuned model passed to RL: best (lowest held-out one-hot CE, the paper's rule) or final",
    )
    select_every: int = _f(10, "fine-tuning steps between held-out CE checks (select=best)")
    select_examples: int = _f(64, "held-out problems the CE is measured on (the first ones)")
    rl_steps: int = _f(8, "GRPO steps (0: the fine-tuning stage only, e.g. an SFT-stage sweep)")
    rl_prompts: int = _f(4, "GRPO prompts per step")
    group_size: int = _f(8, "GRPO group size")
    rl_lr: float = _f(5e-6, "GRPO learning rate")
    eval_samples: int = _f(8, "samples per held-out problem")
    eval_temperature: float = _f(0.6, "sampling temperature of the evaluation (the paper's 0.6)")
    eval_stats_samples: int = _f(
        1, "samples per problem the entropy / KL-to-base passes run on (0: none; costly)"
    )
    eval_sampler: str = _f(
        "fast",
        "fast (the prompts' shared prefix computed once, finished samples leave the batch) or "
        "plain (model.generate, the sampler of results before 2026-12): the same distribution",
    )
    eval_batch: int = _f(16, "held-out problems sampled together (x eval_samples rows)")
    max_new_tokens: int = _f(16, "completion length limit")
    max_length: int = _f(256, "fine-tuning sequence limit in tokens (prompt + response)")
    model: str = _f("smollm2", "base model: 'smollm2' or a local folder")
    bf16: bool = _f(
        False, "every stage under bf16 autocast (CUDA or CPU), the references' weights in bf16"
    )
    attn_implementation: str = _f("auto", ATTENTION_HELP)

    RULES = (
        ATTENTION_RULE,
        ("task", one_of(*TASK_DEFAULTS), f"one of {sorted(TASK_DEFAULTS)}"),
        ("prompt_style", one_of("short", "fewshot"), "short or fewshot"),
        ("n_train", at_least(1), ">= 1"),
        ("n_val", at_least(1), ">= 1"),
        ("sft_steps", at_least(1), ">= 1"),
        ("sft_batch", at_least(1), ">= 1"),
        ("sft_lr", finite_positive, "a finite number > 0"),
        ("select", one_of("best", "final"), "best or final"),
        ("select_every", at_least(1), ">= 1"),
        ("select_examples", at_least(1), ">= 1"),
        ("eval_stats_samples", at_least(0), ">= 0"),
        ("eval_sampler", one_of("fast", "plain"), "fast or plain"),
        ("eval_batch", at_least(1), ">= 1"),
        ("rl_steps", at_least(0), ">= 0 (0: the fine-tuning stage only)"),
        ("rl_prompts", at_least(1), ">= 1"),
        ("group_size", at_least(2), ">= 2"),
        ("rl_lr", finite_positive, "a finite number > 0"),
        ("eval_samples", at_least(1), ">= 1"),
        ("eval_temperature", finite_non_negative, "a finite number >= 0 (0: greedy)"),
        ("max_new_tokens", at_least(1), ">= 1"),
        ("max_length", at_least(8), ">= 8"),
        ("inits", bool, "a non-empty list"),
        ("seeds", bool, "a non-empty list"),
        ("model", bool, "a model folder or 'smollm2'"),
    )

    def check(self):
        if self.prompt_style == "fewshot" and self.task != "countdown":
            raise ConfigError(
                f"prompt_style=fewshot has solved examples for countdown only, not {self.task!r}",
                "prompt_style",
            )
        for spec in self.inits:
            _init_args(spec)  # every init checked before any work starts
        if self.sft_batch > self.n_train:
            raise ConfigError(
                f"sft_batch ({self.sft_batch}) exceeds n_train ({self.n_train})", "sft_batch"
            )
        specs = [init_display(spec) for spec in self.inits]
        if len(set(specs)) < len(specs):
            dup = next(x for x in specs if specs.count(x) > 1)
            raise ConfigError(f"inits: {dup} is listed twice in {self.inits}", "inits")
        bad = [x for x in self.seeds if not is_seed(x)]
        if bad:
            raise ConfigError(
                f"seeds: each {SEED_ALLOWED}, got {bad[0]!r} in {self.seeds}", "seeds"
            )
        if len(set(self.seeds)) < len(self.seeds):
            dup = next(x for x in self.seeds if self.seeds.count(x) > 1)
            raise ConfigError(f"seeds: {dup} is listed twice in {self.seeds}", "seeds")
        if self.rl_prompts > self.n_train:
            raise ConfigError(
                f"rl_prompts ({self.rl_prompts}) exceeds n_train ({self.n_train})", "rl_prompts"
            )


# keys a resumed pipeline may change: more seeds or inits are appended; the rest must match
PIPELINE_RESUME_MUTABLE = ("seeds", "inits", "overwrite")


def _init_args(spec: str) -> tuple[str, dict]:
    """'gift:5' -> ('gift', {'beta': 5.0}): the value after the colon sets the objective's main
    parameter (beta for gift, eta for gift_seq, alpha for sft_entropy, a registered objective's
    first); errors name the init and the allowed objectives and values. A suffix '@kN'
    ('gift:5@k16') trains from a reference cache of the top N tokens (giftlab ref-cache), built
    once per N in the pipeline's folder: {'ref_cache_k': N}."""
    spec, at, cache = spec.partition("@")
    name, extra = _objective_args(spec)
    if not at:
        return name, extra
    if not (cache.startswith("k") and cache[1:].isdigit() and int(cache[1:]) >= 1):
        raise ConfigError(
            f"inits: {spec}@{cache}: after '@' give kN, the reference cache's top N (e.g. @k16)",
            "inits",
        )
    if not OBJECTIVES[name].needs_ref:
        raise ConfigError(f"inits: {spec}@{cache}: {name} uses no reference to cache", "inits")
    return name, extra | {"ref_cache_k": int(cache[1:])}


def _objective_args(spec: str) -> tuple[str, dict]:

    name, sep, raw = spec.partition(":")
    parts = spec.split(":")
    if name not in OBJECTIVES and len(parts) in (2, 3) and is_variant_spec(":".join(parts[:2])):
        # a user's variant MODULE:FUNCTION[:VALUE]
        name, sep, raw = ":".join(parts[:2]), ":" if len(parts) == 3 else "", parts[2:3] or ""
        raw = raw[0] if raw else ""
        problem = objective_problem(name)
        if problem:
            raise ConfigError(f"inits: {spec!r}: the start must be {problem}", "inits")
    if name not in OBJECTIVES:
        raise ConfigError(
            f"inits: unknown objective {name!r} in {spec!r}; allowed: {sorted(OBJECTIVES)} or a "
            "variant MODULE:FUNCTION[:VALUE]",
            "inits",
        )
    if not sep:
        return name, {}
    key = OBJECTIVES[name].main_hyper
    if key is None:
        raise ConfigError(f"inits: {spec!r}: {name} takes no parameter; give {name!r}", "inits")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"inits: {spec!r}: {key} must be a number, got {raw!r}", "inits"
        ) from None
    if key in HYPER_SETTINGS:  # a registered objective's own setting
        if not HYPER_SETTINGS[key].rule(value):
            allowed = HYPER_SETTINGS[key].allowed
            raise ConfigError(f"inits: {spec!r}: {key} must be {allowed}, got {value}", "inits")
        return name, {"hyper": {key: value}}
    ok, allowed = next((r[1], r[2]) for r in OBJECTIVE_RULES if r[0] == key)
    if not ok(value):
        raise ConfigError(f"inits: {spec!r}: {key} must be {allowed}, got {value}", "inits")
    return name, {key: value}


def init_display(spec: str) -> str:
    """One form per start: 'gift:5.0' and 'gift:5' are both 'gift:5'."""
    name, extra = _init_args(spec)
    k = extra.pop("ref_cache_k", None)
    values = list((extra.get("hyper") or extra).values())
    shown = f"{name}:{values[0]:g}" if values else name
    return shown if k is None else f"{shown}@k{k}"
