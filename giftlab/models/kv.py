"""The KV cache's name in the installed transformers (sampling and the shared-prefix passes)."""

from __future__ import annotations


def _cache_key() -> str:
    """The name transformers gives the KV cache: `cache` (5.x, where `past_key_values` is a
    deprecated alias) or `past_key_values` (older releases)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    fields = getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
    return "cache" if "cache" in fields else "past_key_values"


CACHE_KEY = _cache_key()
