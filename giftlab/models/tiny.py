"""Tiny random models and a character-level tokenizer for tests: nothing downloads."""

from __future__ import annotations

import string

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer():
    """A character-level PreTrainedTokenizerFast: printable ASCII plus specials and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|end|>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
    chars = sorted(set(string.printable) - set("\x0b\x0c"))
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        eos_token="<|end|>",
        unk_token="<unk>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_llama(
    vocab_size: int = 128, seed: int = 0, hidden_size: int = 32, layers: int = 2, tie: bool = True
):
    """A randomly initialised 2-layer Llama (float32) for tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
    )
    return LlamaForCausalLM(config)


# Tiny configurations of the model families giftlab is tested on (tests/models/test_families.py,
# scripts/gpu_check.py): config class, model class, and the keys that differ from the common
# small shape. Logit transforms are switched on at values that change the distribution (the
# head's weights are also scaled up so that logits reach the soft cap).
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 8}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 8}),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {"head_dim": 8, "final_logit_softcapping": 1.5},
    ),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {"head_dim": 8, "final_logit_softcapping": 1.5},
    ),
    "cohere": ("CohereConfig", "CohereForCausalLM", {"logit_scale": 3.0}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", {"logits_scaling": 0.25}),
    "phi": ("PhiConfig", "PhiForCausalLM", {}),  # a biased head
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {}),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {}),
    "opt": ("OPTConfig", "OPTForCausalLM", {"word_embed_proj_dim": 16, "ffn_dim": 64}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", {}),
}


def tiny_model(family: str, vocab_size: int = 128, seed: int = 0, hidden_size: int = 32):
    """A randomly initialised 2-layer model of `family` (a key of FAMILIES), float32, dropout
    off, its head's weights scaled so that logits are of order 1-10 and a bias (when the head has
    one) random. Raises ImportError naming the class when the installed transformers lacks it."""
    import torch
    import transformers

    config_name, model_name, extra = FAMILIES[family]
    config_cls = getattr(transformers, config_name, None)
    model_cls = getattr(transformers, model_name, None)
    if config_cls is None or model_cls is None:
        raise ImportError(f"transformers {transformers.__version__} has no {model_name}")
    ids = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1}
    if family == "gpt2":
        shape = {"n_embd": hidden_size, "n_layer": 2, "n_head": 4, "n_positions": 256}
        shape |= {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    elif family == "opt":
        shape = {"hidden_size": hidden_size, "num_hidden_layers": 2, "num_attention_heads": 4}
        shape |= {"max_position_embeddings": 256, "dropout": 0.0, "attention_dropout": 0.0}
    else:
        shape = {
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 256,
        }
    config = config_cls(vocab_size=vocab_size, **shape, **ids, **extra)
    torch.manual_seed(seed)
    model = model_cls(config).float()
    head = model.get_output_embeddings()
    with torch.no_grad():
        head.weight.mul_(8.0)
        if getattr(head, "bias", None) is not None:
            head.bias.normal_(0.0, 1.0)
    return model.train()
