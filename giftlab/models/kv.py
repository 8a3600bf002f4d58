"""The KV cache's name in the installed transformers (sampling and the shared-prefix passes)."""

from __future__ import annotations


def _cache_key() -> str:
    """The name transformers gives the KV cache: `cache` (5.x, where `past_key_values` is a
    deprecated alias) or `past_key_values` (older releases)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    fields = getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
    return "cache" if "cache" in fields else "past_key_values"


CACHE_KEY = _cache_key()


def attends_to_all(model, length: int) -> bool:
    """True when every attention layer of `model` sees the whole of a `length`-token sequence:
    no sliding window shorter than it (Mistral, Gemma-2/3 and others set one). Only then is a
    token prefix run once and its KV cache reused exact: with a window, a prefix's cache and the
    padding after it fill the window's slots differently from the sequence run whole."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None:
        return True
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    window = getattr(config, "sliding_window", None)
    if window is None or getattr(config, "use_sliding_window", True) is False:
        return True
    return length <= int(window)
