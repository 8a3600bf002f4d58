"""`giftlab ref-cache`'s settings: the model, reference, data and tokenisation keys of
`giftlab train` (one declaration, giftlab.config.DataSettings), plus the cache's own."""

from __future__ import annotations

from dataclasses import dataclass

from giftlab.config import ATTENTION_HELP, ATTENTION_RULE, DATA_RULES, DataSettings
from giftlab.engine.cache import (
    DEFAULT_DTYPE,
    DEFAULT_TOP_K,
    DTYPES,
    SHARD_EXAMPLES,
)
from giftlab.flatconfig import FlatConfig, at_least, one_of
from giftlab.flatconfig import setting as _f


@dataclass
class RefCacheConfig(FlatConfig, DataSettings):
    """`giftlab ref-cache`: the model, reference, data and tokenisation keys of `giftlab train`
    (giftlab.config.DataSettings: one declaration for both), plus the cache's own."""

    model: str = _f(
        "smollm2", "the initial policy (its tokenizer; the reference when ref_model is empty)"
    )
    ref_model: str = _f("", "the reference model; empty: the initial policy, as in giftlab train")
    top_k: int = _f(DEFAULT_TOP_K, "reference tokens kept per position (>= the vocabulary: exact)")
    dtype: str = _f(DEFAULT_DTYPE, f"storage of the log-probabilities: one of {list(DTYPES)}")
    out_dir: str = _f("runs/ref-cache", "the cache folder")
    batch_size: int = _f(8, "examples per reference forward pass")
    shard_examples: int = _f(
        SHARD_EXAMPLES, "examples per shard (the unit a stopped build resumes at)"
    )
    overwrite: bool = _f(False, "replace a cache in out_dir built with other settings")
    progress: bool = _f(True, "progress bar")
    attn_implementation: str = _f("auto", ATTENTION_HELP)

    RULES = (
        ATTENTION_RULE,
        ("top_k", at_least(1), ">= 1"),
        ("dtype", one_of(*DTYPES), f"one of {list(DTYPES)}"),
        ("batch_size", at_least(1), ">= 1"),
        ("shard_examples", at_least(1), ">= 1"),
        *DATA_RULES,
        ("model", bool, "a model folder, 'smollm2' or a hub id"),
    )


def cache_config_help() -> str:
    return RefCacheConfig.help_text()
