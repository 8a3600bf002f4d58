"""The reference cache (giftlab.refcache, giftlab.losses.cached): with K >= V it is exact (loss
and gradients equal the live reference's in float64, and a cached run equals a live run step for
step); with K < V the truncation error stays within the bound of docs/theory.md 4b, and the
bound is tight; both fused kernels take the cached target; a cache built for another run is
refused naming what differs; a stopped build resumes."""

import copy
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from giftlab.engine.cache import RefCache, RefCacheError
from giftlab.losses import (
    OBJECTIVES,
    CachedReference,
    cached_reference_logp,
    fused_linear_gift_loss,
    gift_loss,
    truncation_bounds,
)
from giftlab.models import tiny_llama, tiny_tokenizer
from giftlab.refcache import RefCacheConfig, build_ref_cache, reference_rows
from giftlab.train import train
from tests.helpers import train_config, write_jsonl

# float64 paths held to each other or to the naive formula at 1e-9 or tighter: CI also runs
# them under other CPU capabilities (make test-exact-cpus)
pytestmark = pytest.mark.exact


def _cache_rows(zr, labels, k):
    """The cache's columns computed independently from full reference logits."""
    lp = torch.log_softmax(zr, -1)
    top = lp.topk(min(k, lp.shape[-1]), -1)
    gold = lp.gather(-1, labels[:, None])[:, 0]
    support = torch.zeros_like(lp, dtype=torch.bool)
    support.scatter_(-1, top.indices, True).scatter_(-1, labels[:, None], True)
    tail = torch.logsumexp(lp.masked_fill(support, -math.inf), -1)
    return top.indices, top.values, gold, tail


def _per_token(z, ref_logits, y, beta):
    loss = gift_loss(z, ref_logits, y, beta, reduction="none")
    grad = torch.autograd.grad(loss.sum(), z)[0]
    return loss.detach(), grad


@given(
    st.integers(0, 10_000),
    st.integers(2, 30),
    st.integers(1, 6),
    st.one_of(st.floats(0.0, 30.0), st.just(math.inf)),
    st.floats(0.5, 8.0),
)
def test_truncation_error_is_within_the_bound(seed, v, k, beta, spread):
    g = torch.Generator().manual_seed(seed)
    z = (spread * torch.randn(5, v, generator=g, dtype=torch.float64)).requires_grad_(True)
    zr = spread * torch.randn(5, v, generator=g, dtype=torch.float64)
    y = torch.randint(0, v, (5,), generator=g)
    ids, logp, gold, tail = _cache_rows(zr, y, k)
    cached = cached_reference_logp(z, ids, logp, gold, tail, y)
    loss, grad = _per_token(z, zr, y, beta)
    loss_c, grad_c = _per_token(z, cached, y, beta)
    grad_bound, loss_bound = truncation_bounds(z, ids, gold, tail, y, beta)
    slack = 1e-10
    assert bool(((grad - grad_c).abs().sum(-1) <= grad_bound + slack).all())
    assert bool(((loss - loss_c).abs() <= loss_bound + slack).all())
    if k >= v:  # nothing truncated: exact
        torch.testing.assert_close(loss_c, loss, rtol=1e-12, atol=1e-12)


def _adversarial(v=12, beta=0.5):
    """The reference's tail on a token the policy finds least likely, the policy's tail on the
    others: the two tail shapes are almost disjoint."""
    zr = torch.full((1, v), -30.0, dtype=torch.float64)
    zr[0, 0], zr[0, 1], zr[0, v - 1] = 3.0, 2.0, 2.5
    z = torch.full((1, v), 5.0, dtype=torch.float64)
    z[0, 0], z[0, 1] = 0.0, -10.0
    y = torch.tensor([0])
    return z.requires_grad_(True), zr, y, beta


def test_the_bounds_are_tight():
    z, zr, y, beta = _adversarial()
    ids, logp, gold, tail = _cache_rows(zr, y, 2)
    cached = cached_reference_logp(z, ids, logp, gold, tail, y)
    loss, grad = _per_token(z, zr, y, beta)
    loss_c, grad_c = _per_token(z, cached, y, beta)
    grad_bound, loss_bound = truncation_bounds(z, ids, gold, tail, y, beta)
    assert float(tail.exp()) > 0.1  # a real tail
    assert float((grad - grad_c).abs().sum()) >= 0.5 * float(grad_bound)  # within 2x of it
    assert float((loss - loss_c).abs()) >= 0.5 * float(loss_bound)


def test_at_infinite_beta_the_cache_does_not_matter():
    z, zr, y, _ = _adversarial()
    ids, logp, gold, tail = _cache_rows(zr, y, 2)
    cached = cached_reference_logp(z, ids, logp, gold, tail, y)
    torch.testing.assert_close(_per_token(z, cached, y, math.inf), _per_token(z, zr, y, math.inf))


def _dense_gift(z, ref_logits, y, beta):
    """GIFT's mean loss written out, with a per-token beta (inf: one-hot)."""
    valid = y != -100
    yc = y.clamp(min=0)
    b = torch.as_tensor(beta, dtype=z.dtype).expand(y.shape)
    onehot = torch.nn.functional.one_hot(yc, z.shape[-1]).bool()
    base = torch.log_softmax(ref_logits.to(z.dtype), -1)
    q = torch.softmax(base + torch.where(onehot, torch.where(b.isinf(), 0, b)[:, None], 0), -1)
    q = torch.where(b.isinf()[:, None], onehot.to(z.dtype), q)
    per = -(q * torch.log_softmax(z, -1)).sum(-1)
    return per[valid].mean()


@pytest.mark.parametrize("beta", [4.0, math.inf, "per-token"])
@pytest.mark.parametrize("kernel", ["torch", "triton"])
@pytest.mark.parametrize("k", [3, 40])
def test_both_fused_kernels_take_the_cached_target(kernel, k, beta):
    """The fused loss from a CachedReference equals the dense GIFT loss on log pi0~ (with
    K >= V: on the live reference), forward and backward."""
    if kernel == "triton":
        pytest.importorskip("triton")
    dtype = torch.float64 if kernel == "torch" else torch.float32
    tol = {"rtol": 1e-9, "atol": 1e-11} if kernel == "torch" else {"rtol": 2e-4, "atol": 2e-5}
    g = torch.Generator().manual_seed(0)
    v, h, n = 37, 6, 11
    hid = torch.randn(n, h, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    w = (torch.randn(v, h, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True)
    zr = 2 * torch.randn(n, v, generator=g, dtype=torch.float64)
    y = torch.randint(0, v, (n,), generator=g)
    y[3] = zr[3].argmax()  # a gold token inside the top-K
    y[5] = -100  # an ignored token
    ids, logp, gold, tail = _cache_rows(zr, y.clamp(min=0), k)
    if beta == "per-token":
        beta = torch.rand(n, generator=g, dtype=torch.float64).to(dtype) * 10

    class Rows:
        pass

    rows = Rows()
    rows.ids, rows.logp, rows.gold, rows.tail = ids, logp.to(dtype), gold.to(dtype), tail.to(dtype)
    got = fused_linear_gift_loss(
        hid,
        w,
        y,
        ref_logits_fn=CachedReference(rows, y, v),
        beta=beta,
        chunk_size=4,
        kernel=kernel,
    )
    z = hid @ w.T
    yc = y.clamp(min=0)
    ref = zr.to(dtype) if k >= v else cached_reference_logp(z, ids, logp, gold, tail, yc)
    want = _dense_gift(z, ref, y, beta)
    torch.testing.assert_close(got.to(want.dtype), want, **tol)
    for a, b in zip(torch.autograd.grad(got, (hid, w)), torch.autograd.grad(want, (hid, w))):
        torch.testing.assert_close(a, b, **tol)


# -- the cache on a model ----------------------------------------------------------------------


@pytest.fixture
def setup(tmp_path):
    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(4) for b in range(4)]
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    val_file = write_jsonl(tmp_path / "val.jsonl", rows[:5])
    tok = tiny_tokenizer()
    base = tiny_llama(len(tok), seed=2).double()
    return tmp_path, train_file, val_file, tok, base


def _cache(tmp_path, train_file, val_file, tok, base, name="cache", **kw):
    cfg = RefCacheConfig(
        model="tiny",
        train_file=str(train_file),
        val_file=str(val_file),
        max_length=64,
        max_val_examples=5,
        top_k=1000,
        dtype="float64",
        out_dir=str(tmp_path / name),
        progress=False,
        shard_examples=5,
        batch_size=3,
    )
    cfg = RefCacheConfig.from_dict(cfg.to_dict() | kw)
    build_ref_cache(cfg, model=copy.deepcopy(base), tokenizer=tok, log=lambda *a: None)
    return tmp_path / name


def _away_from(model, seed, scale=0.05):
    """A copy of `model` with every weight moved by seeded noise of standard deviation `scale`."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return out


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("objective", ["gift", "gift_seq", "kd_base"])
@pytest.mark.parametrize("chunked", [True, False])
def test_a_cached_run_equals_a_live_run_step_for_step(setup, objective, chunked, smoothing):
    # The policy starts away from its reference. At policy = reference, kd_base's gradient is 0
    # in exact arithmetic, so each path's first gradient is its own rounding (~1e-17) and Adam's
    # first step, lr g / (|g| + eps), scales that by ~1e8: the runs would compare two rounding
    # residues (they differed at 1e-7 on another CPU), not the two paths.
    tmp_path, train_file, val_file, tok, base = setup
    cache = _cache(tmp_path, train_file, val_file, tok, base)
    start = _away_from(base, seed=5)
    rows, models = {}, {}
    for name in ("live", "cached"):
        model = copy.deepcopy(start)
        extra = {"ref_cache": str(cache)} if name == "cached" else {}
        cfg = train_config(
            tmp_path / name,
            train_file,
            val_file,
            objective=objective,
            beta=3.0,
            eta=3.0,
            smoothing=smoothing,
            max_steps=3,
            eval_every=1,
            diag_every=1,
            chunked=chunked,
            chunk_size=7,
            max_val_examples=5,
            **extra,
        )
        ref = copy.deepcopy(base)  # the cached run reads it only for the fingerprint
        train(cfg, model=model, tokenizer=tok, ref_model=ref)
        lines = (tmp_path / name / "run" / "metrics.jsonl").read_text().splitlines()
        rows[name], models[name] = [json.loads(x) for x in lines], model
    for a, b in zip(rows["live"], rows["cached"], strict=True):
        for key in ("loss/train", "val/ce", "val/kl_to_base", "diag/gate_w", "val/topk_overlap"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), key
    for p, q in zip(models["live"].parameters(), models["cached"].parameters()):
        torch.testing.assert_close(q, p, rtol=1e-9, atol=1e-12)


def test_the_cache_holds_what_the_reference_gives(setup):
    tmp_path, train_file, val_file, tok, base = setup
    folder = _cache(tmp_path, train_file, val_file, tok, base, top_k=4, dtype="float32")
    cache = RefCache(folder)
    from giftlab.data import read_records
    from giftlab.data.tokenize import collate, encode_records
    from giftlab.engine.objective import CausalLMBody
    from giftlab.models.head import lm_head

    examples, _ = encode_records(read_records(train_file), tok, 64)
    idx = [7, 2, 11]  # across shards, out of order
    b = collate([examples[i] for i in idx], tok.pad_token_id)
    labels = b["labels"][:, 1:]
    valid = labels != -100
    hidden = CausalLMBody(base)(b["input_ids"], b["attention_mask"])[:, :-1][valid]
    want = reference_rows(hidden, lm_head(base), labels[valid], 4)
    got = cache.rows("train", idx, "cpu")
    assert torch.equal(got.ids, want[0])
    for a, w in zip((got.logp, got.gold, got.tail), want[1:]):
        torch.testing.assert_close(a.double(), w.double(), rtol=1e-6, atol=1e-6)
    sizes = {p.name: np.load(p, mmap_mode="r").dtype for p in (folder / "train").rglob("*.npy")}
    assert sizes["logp.npy"] == np.float32 and sizes["ids.npy"] == np.int32


@pytest.mark.parametrize(
    "change, part",
    [
        ({"max_length": 48}, "max_length"),
        ({"train_file": "other"}, "train_file"),
        ({"weights": True}, "reference weights"),
    ],
)
def test_a_cache_built_for_another_run_is_refused_naming_what_differs(setup, change, part):
    tmp_path, train_file, val_file, tok, base = setup
    cache = _cache(tmp_path, train_file, val_file, tok, base)
    model = copy.deepcopy(base)
    kw = {"ref_cache": str(cache), "max_val_examples": 5}
    if change.get("train_file"):
        other = json.loads(train_file.read_text().splitlines()[0])
        kw["train_file"] = write_jsonl(tmp_path / "other.jsonl", [other] * 16)
    elif change.get("weights"):
        with torch.no_grad():
            next(model.parameters()).add_(1e-3)
    else:
        kw |= change
    cfg = train_config(tmp_path, kw.pop("train_file", train_file), val_file, **kw)
    with pytest.raises(RefCacheError, match=rf"built for another run: {part}"):
        train(cfg, model=model, tokenizer=tok)
    assert not (tmp_path / "run").exists()  # refused before the run folder was touched


def test_a_stopped_build_resumes_and_gives_the_same_cache(setup, monkeypatch):
    import giftlab.refcache.build as rc

    tmp_path, train_file, val_file, tok, base = setup
    whole = _cache(tmp_path, train_file, val_file, tok, base, name="whole")
    real, calls = rc._write_shard, []

    def crash_after_two(folder, arrays):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(folder)
        real(folder, arrays)

    monkeypatch.setattr(rc, "_write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        _cache(tmp_path, train_file, val_file, tok, base, name="cut")
    with pytest.raises(RefCacheError, match="is not finished"):
        RefCache(tmp_path / "cut")
    monkeypatch.setattr(rc, "_write_shard", real)
    _cache(tmp_path, train_file, val_file, tok, base, name="cut")
    for p in sorted((whole).rglob("*.npy")):
        q = tmp_path / "cut" / p.relative_to(whole)
        assert np.array_equal(np.load(p), np.load(q)), p


def test_a_folder_of_other_files_is_refused(setup):
    tmp_path, train_file, val_file, tok, base = setup
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(RefCacheError, match="not a reference cache"):
        _cache(tmp_path, train_file, val_file, tok, base, name="mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_other_settings_in_the_same_folder_need_overwrite(setup):
    tmp_path, train_file, val_file, tok, base = setup
    _cache(tmp_path, train_file, val_file, tok, base)
    with pytest.raises(RefCacheError, match=r"built with other settings \(top_k\)"):
        _cache(tmp_path, train_file, val_file, tok, base, top_k=3)
    _cache(tmp_path, train_file, val_file, tok, base, top_k=3, overwrite=True)
    assert RefCache(tmp_path / "cache").manifest["top_k"] == 3


def test_training_from_a_cache_loads_no_reference(setup, monkeypatch):
    import giftlab.engine.build as build

    tmp_path, train_file, val_file, tok, base = setup
    cache = _cache(tmp_path, train_file, val_file, tok, base)
    monkeypatch.setattr(build, "frozen_copy", lambda m: pytest.fail("a reference was copied"))
    cfg = train_config(tmp_path, train_file, val_file, ref_cache=str(cache), max_val_examples=5)
    last = train(cfg, model=copy.deepcopy(base), tokenizer=tok)
    assert math.isfinite(last["loss/train"])
    assert OBJECTIVES["gift"].needs_ref


def test_the_progress_bar_counts_examples_not_shards(setup, monkeypatch):
    """16 training examples in shards of 5, batches of 3: the bar's total is 16 and it moves
    with every batch (a small build in one shard no longer sits at 0/1)."""
    import giftlab.refcache.build as refcache

    tmp_path, train_file, val_file, tok, base = setup
    bars = []

    class Bar:
        def __init__(self, total, initial, desc, enabled, unit="step"):
            self.total, self.n, self.unit, self.steps = total, initial, unit, []
            bars.append(self)

        def update(self, n=1):
            self.n += n
            self.steps.append(n)

        def close(self):
            pass

    monkeypatch.setattr(refcache, "progress_bar", Bar)
    _cache(tmp_path, train_file, val_file, tok, base, progress=True)
    train, val = bars
    assert (train.total, train.n, train.unit) == (16, 16, "example")
    assert train.steps == [3, 2, 3, 2, 3, 2, 1]  # batches of 3 inside shards of 5, 5, 5, 1
    assert (val.total, val.n) == (5, 5)
