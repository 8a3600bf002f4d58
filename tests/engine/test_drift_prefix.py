"""The drift pass with the demonstrations' shared prefix run once (giftlab.engine.drift.PrefixBody)
gives the numbers of the whole-sequence pass: hidden states equal CausalLMBody's, and every
per-problem drift value equals the one computed without sharing (float64; Llama and GPT-2, whose
absolute positions must continue after the prefix)."""

import pytest
import torch

from giftlab.engine.drift import DRIFT_KEYS, PrefixBody, drift_per_problem
from giftlab.engine.objective import CausalLMBody
from giftlab.models import tiny_model, tiny_tokenizer

DEMO = "Q: add 1 2\nA: 3\nQ: add 2 2\nA: 4\n"


def _records():
    return [
        {
            "messages": [{"role": "user", "content": DEMO + f"Q: add {a} {b}"}],
            "response": str(a + b),
            "where": f"record {a} {b}",
        }
        for a, b in ((3, 4), (10, 20), (7, 2), (1, 1), (12, 30))
    ]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_drift_with_the_shared_prefix_equals_the_whole_sequence_pass(family):
    tok = tiny_tokenizer()
    policy = tiny_model(family, len(tok), seed=1).double().eval()
    base = tiny_model(family, len(tok), seed=2).double().eval()
    fast = drift_per_problem(policy, base, tok, _records(), batch=2)
    whole = drift_per_problem(policy, base, tok, _records(), batch=2, shared_prefix=False)
    for key in DRIFT_KEYS:
        torch.testing.assert_close(
            torch.tensor(fast[key]), torch.tensor(whole[key]), rtol=1e-10, atol=1e-12
        )
    assert max(fast["kl_to_base"]) > 0.01  # two different models: there is something to compare


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_prefix_body_gives_the_hidden_states_of_the_whole_sequence(family):
    tok = tiny_tokenizer()
    model = tiny_model(family, len(tok), seed=1).double().eval()
    rows = [tok(DEMO + q, add_special_tokens=False)["input_ids"] for q in ("Q: a", "Q: bcd ef")]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])  # right padding
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    prefix = tok(DEMO, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        got = PrefixBody(model, prefix)(ids, mask)
        want = CausalLMBody(model)(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-10, atol=1e-12)
    other = torch.tensor(
        [tok("no shared start here at all", add_special_tokens=False)["input_ids"]]
    )
    with torch.no_grad():  # a batch without the prefix runs whole
        torch.testing.assert_close(
            PrefixBody(model, prefix)(other, torch.ones_like(other)),
            CausalLMBody(model)(other, torch.ones_like(other)),
        )
