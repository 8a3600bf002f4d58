"""GRPO on a tiny random model: reward rises on a trivially learnable task; bad verifiers count
as reward 0; resume; eval metrics."""

import json

import pytest
import torch

from giftlab.models import tiny_llama, tiny_tokenizer
from giftlab.rl.evaluate import evaluate
from giftlab.rl.loop import RLConfig, grpo_update, load_task_records, rl
from giftlab.rl.rollout import encode_prompts, sample_groups


def _records(tmp_path, n=8):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "prompts.jsonl"
    rows = [
        {
            "prompt": f"say a {i}",
            "response": "a",
            "task": "toy",
            "index": i,
            "seed": 0,
            "config": {},
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def a_fraction(record, completion):
    """Toy verifier: the fraction of 'a' characters (dense, trivially learnable)."""
    return completion.count("a") / max(len(completion), 1)


def raising_verifier(record, completion):
    raise RuntimeError("malformed completion")


def _cfg(tmp_path, **kw):
    base = dict(
        train_file=str(_records(tmp_path)),
        out_dir=str(tmp_path / "rl"),
        prompts_per_step=2,
        group_size=8,
        max_new_tokens=6,
        lr=3e-2,
        max_steps=12,
        binary_reward=False,
        progress=False,
        save_final=False,
    )
    base.update(kw)
    return RLConfig(**base)


def test_batched_rollout_masks_completions_up_to_eos():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = tiny_llama(len(tok))
    ro = sample_groups(
        model,
        tok,
        encode_prompts(tok, [{"messages": [{"role": "user", "content": "hi"}]}] * 2),
        3,
        5,
        1.0,
        0,
        "cpu",
    )
    assert ro.sequences.shape[0] == 6 and ro.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
    comp = ro.completion_mask
    assert comp.sum(1).le(5).all() and comp.sum(1).ge(1).all()
    # nothing after an eos token is a completion token
    for row, m in zip(ro.sequences, comp):
        eos = (row == tok.eos_token_id).nonzero().flatten()
        eos = [int(e) for e in eos if m[e]]
        if eos:
            assert not m[eos[0] + 1 :].any()


def test_grpo_raises_reward_on_a_trivially_learnable_task(tmp_path):
    tok = tiny_tokenizer()
    rl(
        _cfg(tmp_path),
        model=tiny_llama(len(tok), seed=1),
        tokenizer=tok,
        ref_model=tiny_llama(len(tok), seed=1),
        score_fn=a_fraction,
    )
    rows = [json.loads(x) for x in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    first = sum(r["rl/reward_mean"] for r in rows[:3]) / 3
    last = sum(r["rl/reward_mean"] for r in rows[-3:]) / 3
    assert last > first + 0.1, (first, last)
    assert rows[-1]["rl/kl_to_base_k3"] > 0  # KL to the base is always measured
    for r in rows:
        assert all(v == v for v in r.values())  # no NaN


def test_a_raising_verifier_stops_the_run_naming_the_record_and_the_reason(tmp_path):
    from giftlab.data.verifiers import VerifierError

    tok = tiny_tokenizer()
    with pytest.raises(VerifierError, match=r"failed on 16 of 16 .*jsonl:\d+: the verifier raised"):
        rl(
            _cfg(tmp_path, max_steps=2),
            model=tiny_llama(len(tok)),
            tokenizer=tok,
            ref_model=tiny_llama(len(tok)),
            score_fn=raising_verifier,
        )
    assert not (tmp_path / "rl" / "final").exists()


def test_tolerated_failures_take_no_part_and_zero_variance_is_safe(tmp_path):
    tok = tiny_tokenizer()
    last = rl(
        _cfg(tmp_path, max_steps=2, normalize_std=True, max_verifier_failures=1.0),
        model=tiny_llama(len(tok)),
        tokenizer=tok,
        ref_model=tiny_llama(len(tok)),
        score_fn=raising_verifier,
    )
    assert last["rl/verifier_errors"] == 16 and last["rl/reward_mean"] == 0.0
    assert last["rl/zero_variance_groups"] == 2 and last["loss/grpo"] == 0.0


def test_rl_resume_reproduces_the_uninterrupted_run(tmp_path):
    tok = tiny_tokenizer()
    kw = dict(max_steps=4, save_every=2)
    rl(
        _cfg(tmp_path / "a", **kw),
        model=tiny_llama(len(tok)),
        tokenizer=tok,
        ref_model=tiny_llama(len(tok)),
        score_fn=a_fraction,
    )
    rl(
        _cfg(tmp_path / "b", **(kw | {"max_steps": 2})),
        model=tiny_llama(len(tok)),
        tokenizer=tok,
        ref_model=tiny_llama(len(tok)),
        score_fn=a_fraction,
    )
    rl(
        _cfg(tmp_path / "b", **kw),
        resume=True,
        model=tiny_llama(len(tok), seed=5),
        tokenizer=tok,
        ref_model=tiny_llama(len(tok)),
        score_fn=a_fraction,
    )

    def strip(p):
        rows = [json.loads(x) for x in p.read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]

    assert strip(tmp_path / "b" / "rl" / "metrics.jsonl") == strip(
        tmp_path / "a" / "rl" / "metrics.jsonl"
    )


def a_in_completion(record, completion):
    """Binary toy verifier: many groups are all 0 (zero advantage), some are mixed."""
    return float("a" in completion)


def test_skipping_zero_advantage_samples_gives_the_same_run(tmp_path):
    """skip_zero_advantage (the default) against the plain full-batch backward: the same weights
    after 4 steps and the same metrics; the partial backward did run (fewer rows). Each sequence
    scored whole, where the two are the same arithmetic (with the shared prefix the prefix's
    gradient sums other rows: equal to float32 precision, the next test, and 4 Adam steps at lr
    3e-2 carry that rounding past this test's 1e-6)."""
    tok = tiny_tokenizer()
    runs = {}
    for skip in (True, False):
        model = tiny_llama(len(tok), seed=3)
        rl(
            _cfg(
                tmp_path / str(skip),
                max_steps=4,
                binary_reward=True,
                skip_zero_advantage=skip,
                shared_prefix=False,
            ),
            model=model,
            tokenizer=tok,
            ref_model=tiny_llama(len(tok), seed=3),
            score_fn=a_in_completion,
        )
        rows = [json.loads(x) for x in (tmp_path / str(skip) / "rl" / "metrics.jsonl").open()]
        runs[skip] = (model, rows)
    (m_skip, r_skip), (m_full, r_full) = runs[True], runs[False]
    assert any(0 < r["perf/backward_rows"] < 16 for r in r_skip)  # the partial path ran
    assert all(r["perf/backward_rows"] == 16 for r in r_full)
    assert any(r["loss/grpo"] != 0 for r in r_full)  # the runs did learn something
    for a, b in zip(m_skip.parameters(), m_full.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(r_skip, r_full):
        for k in a:
            if not k.startswith("perf/"):
                assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k


def test_one_update_s_gradient_is_the_same_with_or_without_skipping_and_the_shared_prefix(
    tmp_path,
):
    """grpo_update's gradient on one rollout whose prompts share a prefix, with half the groups
    at advantage 0: skip_zero_advantage x shared_prefix, all four equal to float32 precision
    (a fraction of the largest gradient entry), against the full batch scored whole."""
    import copy

    from giftlab.rl.rollout import prefix_layout, sample_groups

    tok = tiny_tokenizer()
    tok.padding_side = "left"
    base = tiny_llama(len(tok), seed=3)
    shared = "Q: add 1 2 and then 3\nA: 6\nQ: "
    prompts = [tok(shared + q, add_special_tokens=False)["input_ids"] for q in ("a b", "c d e")]
    ro = sample_groups(base, tok, prompts, 8, 6, 1.0, 0)
    assert prefix_layout(ro) is not None
    adv = torch.zeros(16)
    adv[:8] = torch.linspace(-1, 1, 8)  # the second group's rewards were all equal
    grads = {}
    for skip in (False, True):
        for scored_once in (False, True):
            policy = copy.deepcopy(base).train()
            params = list(policy.parameters())
            cfg = _cfg(tmp_path, skip_zero_advantage=skip, shared_prefix=scored_once)
            u = grpo_update(cfg, policy, base, ro, adv, torch.optim.SGD(params, lr=0.0), params)
            assert u.partial == skip
            grads[skip, scored_once] = [p.grad.clone() for p in params]
    want = grads[False, False]
    for key, got in grads.items():
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=2e-6 * float(w.abs().max()), msg=str(key))


def test_eval_reports_pass_at_k_for_every_k(tmp_path, monkeypatch):
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    import giftlab.rl.evaluate as ev

    monkeypatch.setattr(ev, "score", lambda r, c: float(c.startswith("a")))
    recs = load_task_records(_records(tmp_path, n=3))
    m = evaluate(
        tiny_llama(len(tok)), tiny_llama(len(tok)), tok, recs, n_samples=6, max_new_tokens=4
    )
    assert sorted(m["pass_at_k"]) == [1, 2, 3, 4, 5, 6]
    vals = list(m["pass_at_k"].values())
    assert all(a <= b + 1e-12 for a, b in zip(vals, vals[1:]))  # pass@k is non-decreasing in k
    assert m["pass_at_k"][1] == pytest.approx(m["mean_at_k"])
    assert m["kl_to_base_per_token"] == pytest.approx(0.0, abs=1e-5)  # same weights: KL 0
    assert m["n_problems"] == 3


def test_eval_stats_on_the_first_samples_equal_the_naive_formula(tmp_path, monkeypatch):
    """stats_samples=s: entropy and KL to the base over the first s samples of each problem,
    against full-logits log-softmax on exactly those rows (same seed: same samples)."""
    from giftlab.rl.rollout import encode_prompts, sample_groups

    tok = tiny_tokenizer()
    tok.padding_side = "left"
    import giftlab.rl.evaluate as ev

    monkeypatch.setattr(ev, "score", lambda r, c: 0.0)
    recs = load_task_records(_records(tmp_path, n=3))
    torch.manual_seed(0)
    model, base = tiny_llama(len(tok)), tiny_llama(len(tok))
    kw = dict(n_samples=4, max_new_tokens=5, temperature=1.0, seed=7, prompts_per_batch=16)
    m = evaluate(model, base, tok, recs, stats_samples=2, **kw)
    none = evaluate(model, base, tok, recs, stats_samples=0, **kw)
    ro = sample_groups(model, tok, encode_prompts(tok, recs), 4, 5, 1.0, 7, "cpu")
    rows = torch.tensor([i for i in range(len(ro.texts)) if i % 4 < 2])

    def logsm(net):
        out = net(input_ids=ro.sequences[rows], attention_mask=ro.attention_mask[rows])
        return torch.log_softmax(out.logits[:, :-1].double(), -1)

    with torch.no_grad():
        lp, lq = logsm(model), logsm(base)
    mask = ro.completion_mask[rows, 1:]
    tgt = ro.sequences[rows, 1:].unsqueeze(-1)
    kl = (lp.gather(-1, tgt) - lq.gather(-1, tgt)).squeeze(-1)[mask]
    ent = -(lp.exp() * lp).sum(-1)[mask]
    assert m["stats_samples"] == 2
    assert m["kl_to_base_per_token"] == pytest.approx(float(kl.mean()), rel=1e-4, abs=1e-6)
    assert m["sample_entropy"] == pytest.approx(float(ent.mean()), rel=1e-5)
    assert none["kl_to_base_per_token"] != none["kl_to_base_per_token"]  # NaN: not measured
    assert none["per_problem_correct"] == m["per_problem_correct"]


def test_bad_rl_config_is_named():
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        RLConfig(group_size=1)
    with pytest.raises(ValueError, match="unknown key 'grp'"):
        RLConfig().with_overrides(["grp=3"])


def test_token_logp_equals_the_naive_full_logits_formula():
    from giftlab.rl.rollout import token_logp_and_entropy

    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = tiny_llama(len(tok))
    msgs = [
        {"messages": [{"role": "user", "content": "hi there"}]},
        {"messages": [{"role": "user", "content": "x"}]},
    ]
    ro = sample_groups(model, tok, encode_prompts(tok, msgs), 3, 6, 1.0, 0, "cpu")
    logp, ent = token_logp_and_entropy(model, ro, with_entropy=True)
    full = torch.log_softmax(
        model(input_ids=ro.sequences, attention_mask=ro.attention_mask).logits[:, :-1].float(), -1
    )
    m = ro.completion_mask[:, 1:]
    torch.testing.assert_close(
        logp[m], full.gather(-1, ro.sequences[:, 1:].unsqueeze(-1)).squeeze(-1)[m]
    )
    torch.testing.assert_close(ent[m], -(full.exp() * full).sum(-1)[m])
    assert torch.all(logp[~m] == 0)


def test_prompt_prefill_once_per_group_equals_plain_generate():
    """The naive twin: generate on every prompt repeated group times (each prefilled per sample);
    the shared-prefill rollout gives the same tokens, greedy and seeded sampling alike."""
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = tiny_llama(len(tok), seed=3).eval()
    recs = [
        {"messages": [{"role": "user", "content": c}]} for c in ("hi", "add 2 and 3 please", "x")
    ]
    prompts = encode_prompts(tok, recs)
    width = max(map(len, prompts))
    rows = [p for p in prompts for _ in range(3)]
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(rows):
        ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
    for temperature in (0.0, 1.0):
        ro = sample_groups(model, tok, prompts, 3, 6, temperature, 0, "cpu")
        torch.manual_seed(0)
        with torch.no_grad():
            plain = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=temperature > 0,
                temperature=temperature or None,
                top_p=None,
                top_k=None,
                max_new_tokens=6,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        assert torch.equal(ro.sequences, plain), temperature


def test_a_tolerated_verifier_failure_gets_advantage_zero_and_leaves_the_others_unchanged():
    from giftlab.losses import group_advantages
    from giftlab.rl.loop import fill_failed_rewards

    nan = float("nan")
    groups = torch.tensor([[1.0, nan, 0.0, 1.0], [nan, nan, nan, nan], [0.0, 1.0, 1.0, 1.0]])
    filled = fill_failed_rewards(groups)
    # by hand: row 0 scored mean 2/3; row 1 nothing scored -> 0; row 2 untouched
    expected = torch.tensor([[1.0, 2 / 3, 0.0, 1.0], [0.0] * 4, [0.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(filled, expected)
    adv = group_advantages(filled, False)
    assert adv[0, 1] == 0 and bool((adv[1] == 0).all())
    # the scored samples' advantages equal those of their group without the failed sample
    torch.testing.assert_close(
        adv[0, [0, 2, 3]], group_advantages(torch.tensor([[1.0, 0.0, 1.0]]), False)[0]
    )


def always_right(record, completion):
    return 1.0


def test_a_step_with_zero_variance_everywhere_runs_no_backward_and_changes_nothing(tmp_path):
    """Every group's rewards equal: the skip path runs no backward (0 rows) and reports no
    update; the weights and the metrics equal the full-batch path's (which backpropagates a
    zero loss), and after steps with no gradient at all the model is the one it started from."""
    tok = tiny_tokenizer()
    runs = {}
    for skip in (True, False):
        model = tiny_llama(len(tok), seed=3)
        rl(
            _cfg(tmp_path / str(skip), max_steps=2, skip_zero_advantage=skip),
            model=model,
            tokenizer=tok,
            ref_model=tiny_llama(len(tok), seed=3),
            score_fn=always_right,
        )
        rows = [json.loads(x) for x in (tmp_path / str(skip) / "rl" / "metrics.jsonl").open()]
        runs[skip] = (model, rows)
    (m_skip, r_skip), (m_full, r_full) = runs[True], runs[False]
    assert [r["perf/backward_rows"] for r in r_skip] == [0, 0]
    assert [r["rl/updated"] for r in r_skip] == [0, 0]
    start = tiny_llama(len(tok), seed=3)
    for a, b, c in zip(m_skip.parameters(), m_full.parameters(), start.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)  # weight decay 0: nothing moved
    for a, b in zip(r_skip, r_full, strict=True):
        for k in a:
            if not k.startswith("perf/") and k != "rl/updated":
                assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), k


def test_the_pipeline_report_says_when_rl_made_no_update():
    from giftlab.pipeline import PipelineConfig
    from giftlab.pipeline.report import _updates_text  # noqa: PLC2701

    cfg = PipelineConfig(rl_steps=4)
    rows = [
        {"init": "sft", "seed": 0, "stage": "after RL", "rl_updated_steps": 3},
        {"init": "gift:5", "seed": 0, "stage": "after RL", "rl_updated_steps": 0},
        {"init": "gift:5", "seed": 0, "stage": "before RL"},
    ]
    text = _updates_text(cfg, rows)
    assert "(of 4): sft seed 0: 3, gift:5 seed 0: 0." in text
    assert "No update happened for gift:5 seed 0" in text and "sft seed 0:" in text
    assert _updates_text(cfg, rows[2:]) == ""
