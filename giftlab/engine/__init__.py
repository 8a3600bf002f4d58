"""The objective on a model: what the training loop, the RL evaluation's drift and GIFTTrainer
run. objective.py (response hidden states, the objective's sum, per-token statistics, held-out
statistics, and `Engine`, the one object the loops call), build.py (the policy and the reference
for the trainer: dtype, LoRA, DDP/FSDP2; `build_engine`), cache.py (the reference cache's folder
protocol and its reading half), drift.py (drift from the base per problem)."""

from giftlab.engine.build import build_engine, build_models
from giftlab.engine.cache import CachedRows, RefCache, RefCacheError, open_ref_cache
from giftlab.engine.drift import DRIFT_KEYS, drift_per_problem
from giftlab.engine.objective import (
    CausalLMBody,
    Engine,
    Forward,
    Models,
    StatsSettings,
    forward,
    heldout_stats,
    objective_sum,
    token_stats,
)

__all__ = [
    "DRIFT_KEYS",
    "CachedRows",
    "CausalLMBody",
    "Engine",
    "Forward",
    "Models",
    "RefCache",
    "RefCacheError",
    "StatsSettings",
    "build_engine",
    "build_models",
    "drift_per_problem",
    "forward",
    "heldout_stats",
    "objective_sum",
    "open_ref_cache",
    "token_stats",
]
