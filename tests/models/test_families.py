"""Every model family a user may bring (tiny random models from config classes: nothing
downloads), with its logit transform switched on: giftlab's trainer path and GIFTTrainer give the
SFT and GIFT loss and gradients of the naive formula on `model(...).logits`, in float64; RL token
log-probabilities are those of the logits; a LoRA reference is the model with its adapters off.
A head giftlab cannot reproduce is refused at start, naming the class."""

import pytest
import torch

from giftlab.engine.objective import forward, objective_sum
from giftlab.losses import OBJECTIVES
from giftlab.models import FAMILIES, check_head, tiny_model, tiny_tokenizer
from giftlab.models.head import UnsupportedHead
from giftlab.rl.rollout import Rollout, token_logp_and_entropy
from tests.helpers import train_config

# float64 paths held to each other or to the naive formula at 1e-9 or tighter: CI also runs
# them under other CPU capabilities (make test-exact-cpus)
pytestmark = pytest.mark.exact

BETA = 3.0
V = len(tiny_tokenizer())


def _family(name, dtype=torch.float64, seed=0):
    try:
        model = tiny_model(name, V, seed=seed)
    except ImportError as err:  # listed as skipped, with the reason
        pytest.skip(str(err))
    return model.to(dtype)


def _batch(seed=0):
    """Two rows, a masked prompt of 4 tokens, the second row right-padded by 3."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, V, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    ids[1, -3:] = 0
    labels = ids.clone()
    labels[:, :4] = -100
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _naive(policy, ref, batch, objective):
    """The objective written out on the models' own logits (float64)."""
    logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    valid = labels != -100
    z = logits[:, :-1][valid]
    y = labels[valid]
    logp = torch.log_softmax(z, -1)
    if objective == "sft":
        return -logp.gather(-1, y[:, None]).mean()
    with torch.no_grad():
        zr = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        base = torch.log_softmax(zr[:, :-1][valid], -1)
        q = torch.softmax(base + BETA * torch.nn.functional.one_hot(y, V), -1)
    return -(q * logp).sum(-1).mean()


def _grads(loss, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def _assert_same(got, want):
    for g, w in zip(got, want):
        if g is None or w is None:  # a parameter the loss does not reach, in both
            assert (g is None or not g.any()) and (w is None or not w.any())
        else:
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_head_is_the_models_own_and_the_self_check_passes(family):
    model = _family(family).eval()
    head = check_head(model)
    ids = _batch()["input_ids"]
    want = model(input_ids=ids).logits
    hidden = model.get_decoder()(input_ids=ids).last_hidden_state
    torch.testing.assert_close(head.logits(hidden), want, rtol=1e-12, atol=1e-12)
    cfg = model.config
    transform = {  # the transform is on, and read from the configuration
        "gemma2": lambda: head.post.cap == cfg.final_logit_softcapping,
        "gemma3": lambda: head.post.cap == cfg.final_logit_softcapping,
        "cohere": lambda: head.post.scale == cfg.logit_scale,
        "granite": lambda: head.post.scale == 1 / cfg.logits_scaling,
        "phi": lambda: head.bias is not None and head.post.identity,
    }
    assert transform.get(family, lambda: head.post.identity)()


@pytest.mark.parametrize("objective", ["sft", "gift"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_giftlab_trainer_loss_and_gradients_equal_the_naive_formula(family, objective, tmp_path):
    from giftlab.engine.build import build_models

    policy, ref = _family(family), _family(family)
    cfg = train_config(tmp_path, "unused", objective=objective, beta=BETA, chunk_size=5)
    m = build_models(cfg, policy, ref, tiny_tokenizer(), device=torch.device("cpu"), mode="none")
    m.policy.eval()  # dropout off, as in the naive pass
    batch = _batch()
    f = forward(m, batch, with_ref=True)
    loss = objective_sum(cfg, OBJECTIVES[objective], m, f) / f.n
    want = _naive(policy, ref, batch, objective)
    torch.testing.assert_close(loss, want, rtol=1e-10, atol=1e-12)
    _assert_same(_grads(loss, policy), _grads(want, policy))


@pytest.mark.parametrize("objective", ["sft", "gift"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gift_trainer_loss_and_gradients_equal_the_naive_formula(family, objective, tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset

    from giftlab.integrations.trl import GIFTConfig, GIFTTrainer

    policy = _family(family)
    ref = _family(family).requires_grad_(False).eval()
    rows = [{"prompt": "add 1 2", "completion": "3"}] * 4
    args = GIFTConfig(
        output_dir=str(tmp_path),
        objective=objective,
        beta=BETA,
        chunk_size=5,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
    )
    trainer = GIFTTrainer(
        model=policy,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tiny_tokenizer(),
    )
    trainer.model.eval()
    batch = _batch()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    want = _naive(policy, ref, batch, objective)
    torch.testing.assert_close(loss, want, rtol=1e-10, atol=1e-12)
    _assert_same(_grads(loss, policy), _grads(want, policy))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rl_token_log_probabilities_are_those_of_the_logits(family):
    model = _family(family).eval()
    b = _batch(seed=1)
    completion = b["labels"] != -100
    ro = Rollout(b["input_ids"], b["attention_mask"], completion, torch.zeros(2), ["", ""])
    logp, entropy = token_logp_and_entropy(model, ro, with_entropy=True)
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    want_all = torch.log_softmax(logits[:, :-1].double(), -1)
    want = want_all.gather(-1, b["input_ids"][:, 1:, None])[..., 0]
    mask = completion[:, 1:]
    torch.testing.assert_close(logp[mask], want[mask], rtol=1e-10, atol=1e-12)
    want_h = -(want_all.exp() * want_all).sum(-1)
    torch.testing.assert_close(entropy[mask], want_h[mask], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family", ["llama", "gemma2", "cohere", "granite", "phi", "gpt2"])
def test_a_lora_reference_is_the_model_with_its_adapters_off(family, tmp_path):
    from giftlab.engine.build import build_models

    pytest.importorskip("peft")
    model, original = _family(family), _family(family).eval()
    cfg = train_config(tmp_path, "unused", objective="gift", beta=BETA, lora_rank=4)
    m = build_models(cfg, model, None, tiny_tokenizer(), device=torch.device("cpu"), mode="none")
    with torch.no_grad():  # adapters that change the policy: B starts at 0
        for name, p in m.policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    m.policy.eval()
    batch = _batch()
    f = forward(m, batch, with_ref=True)
    args = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    valid = batch["labels"][:, 1:] != -100
    want_ref = original(**args).logits[:, :-1][valid]
    got_ref = m.ref_body.head().logits(f.ref_hidden)
    torch.testing.assert_close(got_ref, want_ref, rtol=1e-10, atol=1e-12)
    policy_logits = m.head().logits(f.hidden)
    assert (policy_logits - want_ref).abs().max() > 1e-3  # the adapters are on for the policy
    loss = objective_sum(cfg, OBJECTIVES["gift"], m, f) / f.n
    want = _naive(m.policy, original, batch, "gift")
    torch.testing.assert_close(loss, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_self_check_passes_in_bf16(family):
    check_head(_family(family, torch.bfloat16))


def test_an_unknown_logit_transform_is_refused_naming_the_class():
    from transformers import LlamaForCausalLM

    class SecretScaleLlama(LlamaForCausalLM):
        def forward(self, *a, **k):
            out = super().forward(*a, **k)
            out.logits = out.logits * 2.0
            return out

    base = _family("llama")
    model = SecretScaleLlama(base.config).to(torch.float64)
    model.load_state_dict(base.state_dict())
    with pytest.raises(UnsupportedHead, match=r"model: SecretScaleLlama's head cannot be "):
        check_head(model)


def test_a_configuration_key_the_forward_ignores_is_caught_by_the_self_check():
    model = _family("llama")
    model.config.logit_scale = 3.0  # Llama's forward never applies it
    with pytest.raises(UnsupportedHead, match=r"differ from model\(\.\.\.\)\.logits by up to"):
        check_head(model, name="model=odd")


def test_a_model_whose_output_embedding_is_not_linear_is_refused():
    class ScaledHead(torch.nn.Module):  # a custom head module: its forward is unknown to giftlab
        def __init__(self, weight):
            super().__init__()
            self.weight = torch.nn.Parameter(weight)

        def forward(self, h):
            return 2 * h @ self.weight.T

    model = _family("llama")
    model.lm_head = ScaledHead(model.lm_head.weight.detach().clone())
    with pytest.raises(
        UnsupportedHead, match="LlamaForCausalLM: its output embedding is a ScaledHe"
    ):
        check_head(model)
