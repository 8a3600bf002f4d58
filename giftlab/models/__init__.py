"""Loading local causal LMs (never from a hub): the bundled SmolLM2 and any checkpoint folder,
plus tiny random models and tokenizers for tests."""

from giftlab.models.head import check_head, lm_head
from giftlab.models.loading import (
    ATTENTION,
    DEFAULT_MODEL,
    attention_choices,
    check_model_name,
    check_same_vocabulary,
    config_vocab_size,
    load_model,
    load_tokenizer,
    prepare_tokenizer,
    resolve_model_path,
)
from giftlab.models.tiny import FAMILIES, tiny_llama, tiny_model, tiny_tokenizer

__all__ = [
    "ATTENTION",
    "DEFAULT_MODEL",
    "attention_choices",
    "FAMILIES",
    "check_head",
    "lm_head",
    "tiny_model",
    "check_model_name",
    "check_same_vocabulary",
    "config_vocab_size",
    "load_model",
    "load_tokenizer",
    "prepare_tokenizer",
    "resolve_model_path",
    "tiny_llama",
    "tiny_tokenizer",
]
