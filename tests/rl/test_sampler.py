"""The evaluation sampler (giftlab.rl.sampler) is the plain sampler (giftlab.rl.rollout), faster:
greedy completions equal `sample_groups`' token for token (with and without a shared prefix, rows
ending at different steps, models with absolute positions and a soft-capped head), and the
log-probabilities it samples with are those of a plain forward over the whole sequence."""

import pytest
import torch

from giftlab.models import tiny_model, tiny_tokenizer
from giftlab.rl.rollout import sample_groups, token_logp_and_entropy
from giftlab.rl.sampler import common_prefix_length, sample_groups_fast, shared_prefix

DEMO = "Q: add 1 2\nA: 3\nQ: add 2 2\nA: 4\n"


def _prompts(tok, questions):
    return [tok(DEMO + f"Q: {q}\nA:", add_special_tokens=False)["input_ids"] for q in questions]


QUESTIONS = ["add 3 4", "add 10 20", "sub 7 2", "mul 3 3 and more", "x"]


# seeds (and GPT-2's weight scale) whose greedy completions end at different steps
SEEDS = {"llama": (2, 1.0), "gpt2": (1, 0.125), "gemma2": (2, 1.0)}
# float64 but Gemma-2: transformers' eager Gemma-2 attention gives NaN on left-padded rows in
# float64 (in either sampler; float32 is exact to rounding)
DTYPE = {"llama": torch.float64, "gpt2": torch.float64, "gemma2": torch.float32}


def _model(family):
    tok = tiny_tokenizer()
    seed, scale = SEEDS[family]
    model = tiny_model(family, len(tok), seed=seed).to(DTYPE[family]).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(scale)
    return model, tok


def _eos_that_ends_rows_at_different_steps(model, tok, prompts):
    """A token that the greedy completions produce at different steps (or not at all): made the
    end token, rows finish at different times and the sampler must drop them one by one."""
    ro = sample_groups(model, tok, prompts, 1, 12, 0.0, 0)
    comp = ro.sequences[:, -12:]
    best, spread = None, -1
    for t in torch.unique(comp).tolist():
        first = [(row == t).nonzero()[0, 0].item() if (row == t).any() else 99 for row in comp]
        if len(set(first)) > spread:
            best, spread = t, len(set(first))
    tok.eos_token = tok.convert_ids_to_tokens(best)
    return spread


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
@pytest.mark.parametrize("use_prefix", [True, False])
def test_greedy_completions_equal_the_plain_samplers_token_for_token(family, use_prefix):
    model, tok = _model(family)
    prompts = _prompts(tok, QUESTIONS)
    assert _eos_that_ends_rows_at_different_steps(model, tok, prompts) >= 2
    plain = sample_groups(model, tok, prompts, 2, 12, 0.0, 0)
    prefix = shared_prefix(model, prompts) if use_prefix else None
    assert (prefix is not None) == use_prefix
    fast = sample_groups_fast(model, tok, prompts, 2, 12, 0.0, 0, prefix=prefix)
    assert torch.equal(fast.sequences, plain.sequences)
    assert torch.equal(fast.attention_mask, plain.attention_mask)
    assert torch.equal(fast.completion_mask, plain.completion_mask)
    assert torch.equal(fast.prompt_index, plain.prompt_index)
    assert fast.texts == plain.texts
    lengths = plain.completion_mask.sum(1)
    assert len(set(lengths.tolist())) >= 2  # rows did end at different steps


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_sampled_tokens_have_the_log_probabilities_of_a_plain_forward(family):
    model, tok = _model(family)
    prompts = _prompts(tok, QUESTIONS)
    _eos_that_ends_rows_at_different_steps(model, tok, prompts)
    prefix = shared_prefix(model, prompts)
    fast = sample_groups_fast(model, tok, prompts, 3, 10, 1.0, 7, prefix=prefix)
    want, _ = token_logp_and_entropy(model, fast, shared_prefix=False)  # each sequence whole
    m = fast.completion_mask[:, 1:]
    assert int(m.sum()) > len(prompts) * 3  # more than one token a row
    # the sampler's log-probs are float32 (its logits are cast): float32 precision
    torch.testing.assert_close(
        fast.sample_logp[m].double(), want[m].double(), rtol=1.3e-6, atol=1e-5
    )
    assert not fast.sample_logp[~m].any()


def test_a_seed_gives_the_same_samples_and_another_seed_others():
    model, tok = _model("llama")
    prompts = _prompts(tok, QUESTIONS)
    prefix = shared_prefix(model, prompts)
    a = sample_groups_fast(model, tok, prompts, 4, 8, 1.0, 3, prefix=prefix)
    b = sample_groups_fast(model, tok, prompts, 4, 8, 1.0, 3, prefix=prefix)
    c = sample_groups_fast(model, tok, prompts, 4, 8, 1.0, 4, prefix=prefix)
    assert torch.equal(a.sequences, b.sequences)
    assert not torch.equal(a.sequences, c.sequences)


def test_the_shared_prefix_leaves_every_prompt_a_token_of_its_own():
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[7], [7, 8]]) == 0
    assert common_prefix_length([[1, 2], [3, 4]]) == 0


def test_a_prefix_of_other_prompts_or_another_model_is_refused():
    model, tok = _model("llama")
    prompts = _prompts(tok, QUESTIONS)
    prefix = shared_prefix(model, prompts)
    other = tok("something else entirely, long enough", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="does not start with the shared prefix"):
        sample_groups_fast(model, tok, [other], 1, 4, 0.0, 0, prefix=prefix)
    model2, _ = _model("llama")
    with pytest.raises(ValueError, match="another model"):
        sample_groups_fast(model2, tok, prompts, 1, 4, 0.0, 0, prefix=prefix)


def test_a_greedy_evaluation_is_the_same_with_either_sampler():
    from giftlab.rl.evaluate import evaluate

    model, tok = _model("llama")
    tok.padding_side = "left"
    records = [
        {
            "task": "math",
            "messages": [{"role": "user", "content": DEMO + f"Q: add {a} {a}"}],
            "answer": str(2 * a),
        }
        for a in range(6)
    ]
    kw = dict(n_samples=2, max_new_tokens=6, temperature=0.0, seed=0, prompts_per_batch=4)
    fast = evaluate(model, model, tok, records, sampler="fast", **kw)
    plain = evaluate(model, model, tok, records, sampler="plain", **kw)
    for key in ("per_problem_correct", "pass_at_k", "distinct_correct", "maj_at_n"):
        assert fast[key] == plain[key], key
    assert fast["sample_entropy"] == pytest.approx(plain["sample_entropy"], rel=1e-9)
    assert (fast["sampler"], plain["sampler"]) == ("fast", "plain")
