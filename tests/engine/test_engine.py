"""The engine's statistics describe the objective's own target: a registered objective whose
temperature is another setting than `beta` has its statistics at that temperature (naive
formula on full logits), not at the config's beta; Models is built by keyword only."""

import pytest
import torch

from giftlab.data import collate, encode_records
from giftlab.engine import CausalLMBody, Engine, Models
from giftlab.losses import OBJECTIVES, fused_linear_gift_loss, gift_loss, register_objective
from giftlab.models import tiny_llama
from giftlab.train import TrainConfig

pytestmark = pytest.mark.exact


@pytest.fixture(scope="module")
def setup(tok):
    policy = tiny_llama(len(tok), seed=1).double()
    ref = tiny_llama(len(tok), seed=2).double().requires_grad_(False)
    records = [
        {"messages": [{"role": "user", "content": f"add {a} {b}"}], "response": str(a + b)}
        for a, b in ((1, 2), (3, 4), (5, 6))
    ]
    examples, _ = encode_records(records, tok, 64)
    return policy, ref, collate(examples, tok.pad_token_id)


def _naive_gate(policy, ref, batch, beta):
    """gate_w = (e^beta - 1) p0(y) / (1 + (e^beta - 1) p0(y)) at each response token."""
    labels = batch["labels"][:, 1:]
    valid = labels != -100
    with torch.no_grad():
        z_ref = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    p0 = torch.softmax(z_ref[:, :-1][valid], -1).gather(-1, labels[valid][:, None])[:, 0]
    return (
        torch.expm1(torch.tensor(beta, dtype=p0.dtype))
        * p0
        / (1 + torch.expm1(torch.tensor(beta, dtype=p0.dtype)) * p0)
    )


@pytest.fixture
def gift_at_alpha():
    """GIFT registered with its temperature read from the `alpha` setting (removed after the
    test: other tests cover every registered objective)."""
    register_objective(
        "gift_at_alpha",
        gift_loss,
        needs_ref=True,
        hyper={"beta": "alpha", "smoothing": "smoothing"},
        fused=fused_linear_gift_loss,
    )
    yield
    del OBJECTIVES["gift_at_alpha"]


@pytest.mark.parametrize("chunked", [True, False])
def test_a_registered_objective_s_statistics_use_its_own_temperature(setup, chunked, gift_at_alpha):
    policy, ref, batch = setup
    cfg = TrainConfig(objective="gift_at_alpha", alpha=0.7, beta=3.0, chunked=chunked)
    models = Models(policy=policy, body=CausalLMBody(policy), ref=ref, ref_body=CausalLMBody(ref))
    engine = Engine(settings=cfg, models=models)
    f = engine.forward(batch)
    fused = {}
    engine.loss(f, fused)
    own = engine.stats(f)  # a pass of their own
    want = _naive_gate(policy, ref, batch, 0.7)
    torch.testing.assert_close(own["gate_w"], want)
    assert not torch.allclose(own["gate_w"], _naive_gate(policy, ref, batch, 3.0))
    if chunked:  # the loss's fused pass filled the same statistics
        torch.testing.assert_close(engine.stats(f, fused)["gate_w"], want)
    # the built-in gift at beta 0.7 gives the same statistics
    gift = Engine(settings=TrainConfig(objective="gift", beta=0.7), models=models)
    torch.testing.assert_close(gift.stats(gift.forward(batch))["gate_w"], want)


def test_models_are_built_by_keyword_only(setup):
    policy, ref, _ = setup
    with pytest.raises(TypeError):
        Models(policy, CausalLMBody(policy), None, None, False, False)  # noqa: FBT003
