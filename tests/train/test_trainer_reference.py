"""The trainer's loss and gradients, for every objective and every path (dense logits, chunked
fused, FSDP's root-forward logits), equal the naive formula on full logits written out here; its
diagnostics describe the target the loss trains on (smoothing and per-token gains included)."""

import math

import pytest
import torch

from giftlab.data import collate, encode_records
from giftlab.engine import CausalLMBody, Models, forward, objective_sum, token_stats
from giftlab.losses import OBJECTIVES
from giftlab.models import tiny_llama
from giftlab.train import TrainConfig

# float64 paths held to each other or to the naive formula at 1e-9 or tighter: CI also runs
# them under other CPU capabilities (make test-exact-cpus)
pytestmark = pytest.mark.exact

HYPER = dict(beta=3.0, eta=4.0, smoothing=0.1, alpha=0.3, label_eps=0.2, top_k=5)
MIX = {"weight": 0.3, "np_weight": 0.3}  # the settings of the variants of tests/conftest.py


@pytest.fixture(scope="module")
def setup(tok):
    torch.manual_seed(0)
    policy = tiny_llama(len(tok), seed=1).double()
    ref = tiny_llama(len(tok), seed=2).double().requires_grad_(False)
    records = [
        {
            "messages": [{"role": "user", "content": f"add {a} {b}"}],
            "response": str(a * 7 + b),
            "where": f"t:{a}",
        }
        for a, b in ((1, 2), (3, 4), (5, 6))
    ]
    examples, _ = encode_records(records, tok, 64)
    batch = collate(examples, tok.pad_token_id)
    return policy, ref, batch


def _naive_per_token(objective, z, z_ref, y, rows):
    """Per-token losses (n,) from full logits (n, V), float64, formulas written out."""
    logp = torch.log_softmax(z, -1)
    p = logp.exp()
    gold = logp.gather(-1, y[:, None])[:, 0]
    p0 = torch.softmax(z_ref, -1)
    v = z.shape[-1]
    s = HYPER["smoothing"]
    base = (1 - s) * p0 + s / v  # the smoothed base of GIFT's target

    def ce_to(q):
        return -(q * logp).sum(-1)

    def gift_q(gains):
        onehot = torch.nn.functional.one_hot(y, v).double()
        unnorm = base * torch.exp(gains[:, None] * onehot)
        return unnorm / unnorm.sum(-1, keepdim=True)

    if objective == "sft":
        return -gold
    if objective == "gift":
        return ce_to(gift_q(torch.full_like(gold, HYPER["beta"])))
    if objective == "gift_seq":
        return ce_to(gift_q(_naive_gains(base, y, rows)))
    if objective == "sft_entropy":
        return -gold - HYPER["alpha"] * -(p * logp).sum(-1)
    if objective == "label_smoothing":
        return -(1 - HYPER["label_eps"]) * gold - HYPER["label_eps"] * logp.mean(-1)
    if objective == "dft":
        return -gold.detach().exp() * gold
    if objective == "asft":
        kl = (p0 * (torch.log(p0) - logp)).sum(-1)
        return -gold.detach().exp() * gold + HYPER["alpha"] * kl
    if objective == "psft":  # ratio r = p / sg(p) = 1, inside the clip: -r
        return -torch.exp(gold - gold.detach())
    if objective == "kd_base":
        return ce_to(p0)
    target = OBJECTIVES[objective].target  # a registered variant: CE to its numpy target
    if target is not None:
        q = target(p0.detach().numpy(), y.numpy(), MIX[OBJECTIVES[objective].main_hyper])
        return ce_to(torch.as_tensor(q))
    raise AssertionError(objective)


def _naive_gains(base, y, rows):
    """g_t = log(1 + (e^eta - 1) prod_{u > t, same row} base(y_u)), by a plain loop."""
    eta = HYPER["eta"]
    py = base.gather(-1, y[:, None])[:, 0]
    g = torch.empty_like(py)
    for t in range(len(y)):
        later = [u for u in range(t + 1, len(y)) if rows[u] == rows[t]]
        tail = math.prod(float(py[u]) for u in later)
        g[t] = math.log1p(math.expm1(eta) * tail)
    return g


def _naive(policy, ref, batch, objective):
    labels = batch["labels"][:, 1:]
    valid = labels != -100
    rows = torch.arange(labels.shape[0])[:, None].expand_as(labels)[valid]
    z = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    with torch.no_grad():
        z_ref = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    z, z_ref = z[:, :-1][valid], z_ref[:, :-1][valid]
    return (
        _naive_per_token(objective, z, z_ref, labels[valid], rows).sum(),
        z,
        z_ref,
        labels[valid],
        rows,
    )


PATHS = (
    [(name, "dense") for name in OBJECTIVES]
    + [(name, "chunked") for name, o in OBJECTIVES.items() if o.fused is not None]
    + [(name, "fsdp-logits") for name in OBJECTIVES]
)


def test_every_registered_objective_is_covered():
    assert {"mix", "mix_np"} <= set(OBJECTIVES) and {p[0] for p in PATHS} == set(OBJECTIVES)


@pytest.mark.parametrize("objective, path", PATHS)
def test_trainer_loss_and_gradients_equal_the_naive_formula(setup, objective, path):
    policy, ref, batch = setup
    cfg = TrainConfig(
        objective=objective, chunked=path == "chunked", chunk_size=7, hyper=MIX, **HYPER
    )
    obj = OBJECTIVES[objective]
    m = Models(
        policy=policy,
        body=CausalLMBody(policy),
        ref=ref,
        ref_body=CausalLMBody(ref),
        fsdp=path == "fsdp-logits",
    )
    params = [p for p in policy.parameters() if p.requires_grad]
    f = forward(m, batch, with_ref=obj.needs_ref)
    got = objective_sum(cfg, obj, m, f)
    got_grads = torch.autograd.grad(got, params, allow_unused=True)
    want, *_ = _naive(policy, ref, batch, objective)
    want_grads = torch.autograd.grad(want, params, allow_unused=True)
    torch.testing.assert_close(got, want)
    for g, w, p in zip(got_grads, want_grads, params):
        torch.testing.assert_close(
            torch.zeros_like(p) if g is None else g, torch.zeros_like(p) if w is None else w
        )


@pytest.mark.parametrize("objective", ["gift", "gift_seq", "sft"])
@pytest.mark.parametrize("fsdp", [False, True])
def test_diagnostics_describe_the_trained_target(setup, objective, fsdp):
    """Defect: gift_seq diagnostics ignored smoothing (they described another target)."""
    policy, ref, batch = setup
    cfg = TrainConfig(objective=objective, **HYPER)
    m = Models(
        policy=policy, body=CausalLMBody(policy), ref=ref, ref_body=CausalLMBody(ref), fsdp=fsdp
    )
    with torch.no_grad():
        stats = token_stats(cfg, m, forward(m, batch, with_ref=True))
        _, z, z_ref, y, rows = _naive(policy, ref, batch, objective)
    s, v = HYPER["smoothing"], z.shape[-1]
    base = (1 - s) * torch.softmax(z_ref, -1) + s / v
    gains = (
        _naive_gains(base, y, rows)
        if objective == "gift_seq"
        else torch.full((len(y),), HYPER["beta"], dtype=torch.float64)
    )
    py = base.gather(-1, y[:, None])[:, 0]
    gate = torch.expm1(gains) * py / (1 + torch.expm1(gains) * py)
    unnorm = base * torch.exp(gains[:, None] * torch.nn.functional.one_hot(y, v).double())
    q = unnorm / unnorm.sum(-1, keepdim=True)
    torch.testing.assert_close(stats["gate_w"], gate)
    torch.testing.assert_close(stats["target_entropy"], -(q * q.log()).sum(-1))
    logp = torch.log_softmax(z, -1)
    torch.testing.assert_close(stats["kl_target_policy"], (q * (q.log() - logp)).sum(-1))
    torch.testing.assert_close(
        stats["kl_to_base"], (logp.exp() * (logp - torch.log_softmax(z_ref, -1))).sum(-1)
    )


@pytest.mark.parametrize("objective", ["gift", "gift_seq"])
def test_the_fused_training_pass_fills_the_same_statistics(setup, objective):
    """The diagnostics of a GIFT step come from the loss's own fused pass: no extra forward."""
    policy, ref, batch = setup
    cfg = TrainConfig(objective=objective, chunk_size=5, **HYPER)
    m = Models(policy=policy, body=CausalLMBody(policy), ref=ref, ref_body=CausalLMBody(ref))
    f = forward(m, batch, with_ref=True)
    fused = {}
    objective_sum(cfg, OBJECTIVES[objective], m, f, fused)
    separate = token_stats(cfg, m, f)
    for k, t in fused.items():
        torch.testing.assert_close(t, separate[k])
