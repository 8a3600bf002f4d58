"""The GRPO update's scoring with the prompts' shared prefix run once (`token_logp_and_entropy`,
shared_prefix=True, the default) against each sequence run whole: the same log-probabilities,
entropies and gradients, on left-padded prompts of different lengths and completions that end at
different steps, for a RoPE model, one with absolute positions (GPT-2) and one with soft-capped
logits and sliding-window layers (Gemma-2)."""

import pytest
import torch

from giftlab.data.tokenize import common_prefix_length
from giftlab.models import tiny_model, tiny_tokenizer
from giftlab.models.tiny import FAMILIES
from giftlab.rl.rollout import prefix_layout, sample_groups, token_logp_and_entropy
from giftlab.rl.sampler import sample_groups_fast, shared_prefix

DEMO = "Q: add 1 2\nA: 3\nQ: add 2 2\nA: 4\n"
QUESTIONS = ["add 3 4", "add 10 20", "sub 7 2", "mul 3 3 and more", "x"]
# float64 where transformers' eager attention allows it (Gemma-2: NaN on left padding in float64)
DTYPE = {"llama": torch.float64, "gpt2": torch.float64, "gemma2": torch.float32}
GRAD_TOL = {torch.float64: 1e-7, torch.float32: 2e-6}
TOL = {torch.float64: {"rtol": 1e-9, "atol": 1e-10}, torch.float32: {"rtol": 2e-5, "atol": 2e-5}}


def _rollout(family, questions=QUESTIONS, demo=DEMO):
    tok = tiny_tokenizer()
    model = tiny_model(family, len(tok), seed=3).to(DTYPE[family])
    prompts = [tok(demo + f"Q: {q}\nA:", add_special_tokens=False)["input_ids"] for q in questions]
    prefix = shared_prefix(model, prompts)
    ro = sample_groups_fast(model, tok, prompts, 3, 8, 1.0, 5, prefix=prefix)
    # make the end token one the completions reach at different steps, and sample again
    comp = ro.sequences[:, -8:]
    firsts = {
        t: {int((row == t).nonzero()[0, 0]) if (row == t).any() else 99 for row in comp}
        for t in torch.unique(comp).tolist()
    }
    tok.eos_token = tok.convert_ids_to_tokens(max(firsts, key=lambda t: len(firsts[t])))
    ro = sample_groups_fast(model, tok, prompts, 3, 8, 1.0, 5, prefix=prefix)
    return model, prompts, ro


def test_the_layout_s_prefix_is_the_prompts_common_prefix():
    _, prompts, ro = _rollout("llama")
    layout = prefix_layout(ro)
    n = common_prefix_length(prompts)  # the sampler's count, on the prompt token lists
    assert layout.prefix.shape == (1, n) and layout.prefix[0].tolist() == prompts[0][:n]
    # each row's own tokens are its prompt after the prefix, then its completion
    for row in range(len(ro.texts)):
        prompt = prompts[int(ro.prompt_index[row])]
        own = layout.rest[row][layout.rest_mask[row].bool()].tolist()
        whole = ro.sequences[row][ro.attention_mask[row].bool()].tolist()
        assert own == prompt[n:] + whole[len(prompt) :]


def test_prompts_that_share_less_than_eight_tokens_are_scored_whole():
    _, _, ro = _rollout("llama", demo="")
    assert prefix_layout(ro) is None


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_log_probs_entropies_and_gradients_equal_each_sequence_run_whole(family):
    model, _, ro = _rollout(family)
    mask = ro.completion_mask[:, 1:]
    assert len(set(mask.sum(1).tolist())) >= 2  # completions of different lengths
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0)).to(DTYPE[family])
    got = {}
    for shared in (False, True):
        model.zero_grad(set_to_none=True)
        logp, ent = token_logp_and_entropy(model, ro, with_entropy=True, shared_prefix=shared)
        ((logp * weights).sum() + ent.sum()).backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        got[shared] = (logp.detach(), ent.detach(), grads)
    tol = TOL[DTYPE[family]]
    torch.testing.assert_close(got[True][0], got[False][0], **tol)
    torch.testing.assert_close(got[True][1], got[False][1], **tol)
    assert got[True][2].keys() == got[False][2].keys() and got[False][2]
    # gradients, to a fraction of the largest entry: float32 precision even in a float64 model
    # (its RMSNorm computes in float32, and the prefix's gradient sums the rows in another
    # order). Measured against each row run alone: float64 llama, the whole-sequence path
    # 1e-15 and this one 1.2e-8; float32 Gemma-2, 2.9e-7 and 3.4e-7
    for k, g in got[False][2].items():
        scale = float(g.abs().max())
        torch.testing.assert_close(
            got[True][2][k], g, rtol=0, atol=GRAD_TOL[DTYPE[family]] * scale, msg=f"gradient of {k}"
        )
    assert not got[True][0][~mask].any()


def test_a_subset_of_rows_is_scored_as_the_same_rows_of_the_whole():
    model, _, ro = _rollout("llama")
    rows = [1, 4, 5, 11]
    with torch.no_grad():
        whole, _ = token_logp_and_entropy(model, ro, shared_prefix=False)
        part, _ = token_logp_and_entropy(model, ro.select(rows))
    torch.testing.assert_close(part, whole[rows], **TOL[torch.float64])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_scores_the_same_with_the_prefix_run_once(family):
    """Each of the 16 families (soft-capped, scaled, biased heads; RoPE, absolute, learned
    positions), float32, on the plain sampler's left-padded rollout."""
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = tiny_model(family, len(tok), seed=3)
    questions = ["a", "bb cc", "d e f g"]
    prompts = [tok(DEMO + f"Q: {q}\nA:", add_special_tokens=False)["input_ids"] for q in questions]
    ro = sample_groups(model, tok, prompts, 2, 5, 1.0, 0)
    assert prefix_layout(ro) is not None
    with torch.no_grad():
        want = token_logp_and_entropy(model, ro, True, shared_prefix=False)
        got = token_logp_and_entropy(model, ro, True, shared_prefix=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=5e-6)


def _windowed(family, window=6):
    import transformers

    tok = tiny_tokenizer()
    tok.padding_side = "left"
    config_name, model_name, _ = {
        "mistral": ("MistralConfig", "MistralForCausalLM", None),
        "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", None),
    }[family]
    config = getattr(transformers, config_name)(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=window,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(config).float().eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)
    prompts = [tok(DEMO + f"Q: {q}\nA:", add_special_tokens=False)["input_ids"] for q in QUESTIONS]
    return model, tok, prompts


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_a_sliding_window_shorter_than_the_rows_scores_and_samples_each_row_whole(family):
    """A prefix's cache reused with padding after it fills a sliding window's slots otherwise
    than the row run whole (0.04-0.05 off in log-prob at a window of 6, before): such a model
    scores and samples each row whole, and gets the plain path's numbers."""
    from giftlab.models.kv import attends_to_all

    model, tok, prompts = _windowed(family)
    assert not attends_to_all(model, 40) and attends_to_all(model, 6)
    ro = sample_groups(model, tok, prompts, 2, 6, 1.0, 0)
    assert prefix_layout(ro) is not None  # the prompts do share a prefix
    with torch.no_grad():
        want, _ = token_logp_and_entropy(model, ro, shared_prefix=False)
        got, _ = token_logp_and_entropy(model, ro, shared_prefix=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=5e-6)
    plain = sample_groups(model, tok, prompts, 1, 6, 0.0, 0)
    fast = sample_groups_fast(
        model, tok, prompts, 1, 6, 0.0, 0, prefix=shared_prefix(model, prompts)
    )
    assert torch.equal(fast.sequences, plain.sequences)


def test_a_window_the_model_does_not_use_is_no_window():
    import transformers

    from giftlab.models.kv import attends_to_all

    config = transformers.Qwen2Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, sliding_window=4, use_sliding_window=False,
    )  # fmt: skip
    assert attends_to_all(transformers.Qwen2ForCausalLM(config), 1000)
