"""`giftlab eval`: n samples per held-out problem; pass@k (unbiased, k = 1..n), mean@k, maj@k,
distinct correct answers, sampled-token entropy and KL to the base on the samples."""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from giftlab.data.verifiers import VerifierError, score
from giftlab.diagnostics import distinct_correct, majority_at_k, pass_at_k
from giftlab.engine.drift import drift_per_problem
from giftlab.errors import InputError, writing
from giftlab.losses import kl_estimate
from giftlab.models import check_model_name, check_same_vocabulary, load_model, load_tokenizer
from giftlab.rl.config import EvalConfig
from giftlab.rl.loop import load_task_records
from giftlab.rl.rollout import (
    encode_prompts,
    sample_groups,
    token_logp_and_entropy,
    verifier_rewards,
)
from giftlab.rl.sampler import sample_groups_fast, shared_prefix
from giftlab.runtime.distributed import default_device, precision


@torch.no_grad()
def evaluate(
    model,
    ref_model,
    tokenizer,
    records,
    n_samples=16,
    max_new_tokens=32,
    temperature=1.0,
    seed=0,
    prompts_per_batch=16,
    device=None,
    progress=None,
    stats_samples=None,
    sampler="fast",
    on_completions=None,
) -> dict:
    """Metrics over `records` (each needs task/index/seed/config for the verifier).

    on_completions: called after each batch with its completions, one dict per sample (problem:
    its position in `records`, task, index, sample, completion, score, correct), in order.

    sampler: "fast" (giftlab.rl.sampler: the prompts' shared prefix run once per evaluation,
    finished rows leave the batch) or "plain" (giftlab.rl.rollout.sample_groups, model.generate);
    the same distribution, greedy completions equal token for token.
    device: where the prompts go; None: the model's own device.
    stats_samples: how many samples of each problem (the first ones) the teacher-forced passes
    for entropy and KL to the base run on; None: all n_samples; 0: none (entropy and KL are then
    NaN). These passes cost about as much as sampling itself, and pass@k, maj@k and distinct
    correct answers need only the verifier.
    """
    device = _check_evaluate(model, ref_model, n_samples, stats_samples, sampler, device)
    s_stats = n_samples if stats_samples is None else min(int(stats_samples), n_samples)
    prompts = encode_prompts(tokenizer, records)
    prefix = shared_prefix(model, prompts) if sampler == "fast" and records else None
    per_problem = []
    acc = {"entropy": 0.0, "kl": 0.0, "tokens": 0, "kl_seq": [], "empty": 0, "gen_s": 0.0}
    acc["gen_tokens"] = 0
    for b in range(0, len(records), prompts_per_batch):
        recs = records[b : b + prompts_per_batch]
        t0 = time.perf_counter()
        args = (model, tokenizer, prompts[b : b + prompts_per_batch], n_samples)
        args += (max_new_tokens, temperature, seed + b)
        if sampler == "fast":
            ro = sample_groups_fast(*args, prefix=prefix)
        else:
            ro = sample_groups(*args, device)
        acc["gen_s"] += time.perf_counter() - t0
        acc["gen_tokens"] += int(ro.completion_mask[:, 1:].sum())
        _, scores, failures = verifier_rewards(recs, ro, score)
        if failures:  # an evaluation never counts a verifier failure as a wrong answer
            raise VerifierError(
                f"{failures[0]} ({len(failures)} of {len(scores)} completions of this batch "
                "failed); nothing was scored as wrong in their place"
            )
        acc["empty"] += sum(1 for t in ro.texts if not t)
        if s_stats:
            _teacher_forced(model, ref_model, ro, n_samples, s_stats, acc)
        per_problem += _problems(recs, b, ro, scores, on_completions)
        if progress is not None:
            progress(len(per_problem), len(records))
    out = _summary(per_problem, n_samples, s_stats, acc)
    out["sampler"] = sampler
    return out


def _check_evaluate(model, ref_model, n_samples, stats_samples, sampler, device):
    """evaluate's arguments checked (ValueError naming the argument); returns the device."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if device is None:
        device = next(model.parameters()).device
    if ref_model is not None and next(ref_model.parameters()).device != device:
        raise ValueError(
            f"the model is on {device}, the base model on {next(ref_model.parameters()).device}: "
            "put both on one device"
        )
    if stats_samples is not None and int(stats_samples) < 0:
        raise ValueError(f"stats_samples must be >= 0 or None, got {stats_samples}")
    if sampler not in ("fast", "plain"):
        raise ValueError(f"sampler must be 'fast' or 'plain', got {sampler!r}")
    return device


def _problems(recs, b: int, ro, scores, on_completions) -> list[dict]:
    """One batch's problems ({c, answers, correct} each); their completions, one dict per
    sample, go to on_completions."""
    out = []
    for j, r in enumerate(recs):
        rows = [i for i in range(len(ro.texts)) if int(ro.prompt_index[i]) == j]
        correct = [scores[i] == 1.0 for i in rows]
        out.append({"c": sum(correct), "answers": [ro.texts[i] for i in rows], "correct": correct})
        if on_completions is not None:
            on_completions(
                [
                    {
                        "problem": b + j,
                        "task": r.get("task"),
                        "index": r.get("index"),
                        "sample": n,
                        "completion": ro.texts[i],
                        "score": scores[i],
                        "correct": scores[i] == 1.0,
                    }
                    for n, i in enumerate(rows)
                ]
            )
    return out


def _teacher_forced(model, ref_model, ro, n_samples: int, s_stats: int, acc: dict) -> None:
    """Entropy and KL to the base (k1) on the first s_stats samples of each problem, into acc."""
    sub = ro.select([i for i in range(len(ro.texts)) if i % n_samples < s_stats])
    m = sub.completion_mask[:, 1:].float()
    logp, entropy = token_logp_and_entropy(model, sub, with_entropy=True)
    ref_logp, _ = token_logp_and_entropy(ref_model, sub)
    acc["entropy"] += float((entropy * m).sum())
    kl_tok = kl_estimate(logp, ref_logp, "k1") * m
    acc["kl"] += float(kl_tok.sum())
    acc["kl_seq"] += kl_tok.sum(1).tolist()
    acc["tokens"] += int(m.sum())


def _summary(per_problem: list[dict], n: int, s_stats: int, acc: dict) -> dict:
    """The metrics of `evaluate` from each problem's samples and the accumulated statistics."""
    ks = np.arange(1, n + 1)
    c = np.array([p["c"] for p in per_problem])
    pak = pass_at_k(n, c[:, None], ks[None, :]).mean(0)
    tok = max(acc["tokens"], 1)
    out = {
        "n_problems": len(per_problem),
        "per_problem_correct": c.tolist(),  # correct samples of each problem, for clustered CIs
        "per_problem_distinct_correct": [
            distinct_correct(p["answers"], p["correct"]) for p in per_problem
        ],
        "n_samples": n,
        "pass_at_k": {int(k): float(v) for k, v in zip(ks, pak)},
        "mean_at_k": float(c.mean() / n),
        "maj_at_n": float(
            np.mean([majority_at_k(p["answers"], p["correct"], n) for p in per_problem])
        ),
        "distinct_correct": float(
            np.mean([distinct_correct(p["answers"], p["correct"]) for p in per_problem])
        ),
        "sample_entropy": acc["entropy"] / tok if s_stats else float("nan"),
        "kl_to_base_per_token": acc["kl"] / tok if s_stats else float("nan"),
        "stats_samples": s_stats,
        "kl_to_base_per_sequence": float(np.mean(acc["kl_seq"])) if acc["kl_seq"] else float("nan"),
        "verifier_errors": 0,  # a failure stops the evaluation (kept for older readers)
        "empty_completions": acc["empty"],
        "generation_tokens_per_s": acc["gen_tokens"] / max(acc["gen_s"], 1e-9),
    }
    for k in (1, 4, 8):
        if k <= n:
            out[f"maj_at_{k}"] = float(
                np.mean([majority_at_k(p["answers"], p["correct"], k) for p in per_problem])
            )
    return out


def check_output_file(path, key: str = "out") -> Path:
    """Make the folder of an output file, or fail naming `key`, before any work is done. The
    file and its completions file are replaced only when they are giftlab's by their contents
    (an evaluation's metrics, its completions): a file of the user's is refused, unchanged."""
    import os

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{key}={path} is a folder; give a file path for the JSON")
    for file, ours in ((path, _is_eval_results), (completions_path(path), _is_completions)):
        if file.exists() and not ours(file):
            raise InputError(
                f"{key}={path}: {file} exists and giftlab did not write it: it never replaces a "
                f"file of yours; give another {key}"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{key}={path}: cannot make {path.parent} ({err.strerror})") from None
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{key}={path}: {path.parent} is not writable")
    return path


def evaluate_model(
    model,
    base,
    tokenizer,
    records,
    *,
    samples,
    max_new_tokens,
    temperature,
    seed=0,
    stats_samples=None,
    demos=None,
    bf16=False,
    sampler="fast",
    prompts_per_batch=16,
    on_completions=None,
) -> dict:
    """One checkpoint's evaluation, written once for `giftlab eval` and the pipeline: `evaluate`
    on `records` (device from the model) and, given the held-out `demos` and a model that is not
    the base, the teacher-forced drift from the base per problem (`drift_per_problem`).
    bf16: under bf16 autocast on the model's device (the precision of a bf16 run)."""

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation pads on the left
    autocast = precision(bf16, next(model.parameters()).device)
    try:
        with autocast:
            m = evaluate(
                model,
                base,
                tokenizer,
                records,
                n_samples=samples,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed,
                stats_samples=stats_samples,
                sampler=sampler,
                prompts_per_batch=prompts_per_batch,
                on_completions=on_completions,
            )
    finally:
        tokenizer.padding_side = side
    if demos is not None and model is not base:
        with precision(bf16, next(model.parameters()).device):
            m["drift_per_problem"] = drift_per_problem(model, base, tokenizer, demos)
    return m


def evaluate_checkpoint(cfg: EvalConfig) -> dict:
    """Load cfg.model and cfg.ref_model, evaluate on cfg.data; every check (records, verifiers,
    model paths, the output file's folder) runs before any model loads. Completions stream into
    FILE.completions.jsonl as they are made; the metrics are returned (write_results writes them
    to cfg.out, after the caller has printed them)."""
    import json

    recs = load_task_records(cfg.data, limit=cfg.limit or None)
    check_model_name(cfg.model, "model", cfg.attn_implementation)
    check_model_name(cfg.ref_model, "ref_model", cfg.attn_implementation)
    out = check_output_file(cfg.out) if cfg.out else None

    tok = load_tokenizer(cfg.model)
    device = default_device()
    attn = cfg.attn_implementation
    model = load_model(cfg.model, attn_implementation=attn).to(device)
    base = load_model(cfg.ref_model, attn_implementation=attn).to(device)
    check_same_vocabulary(model, base, (f"model={cfg.model}", f"ref_model={cfg.ref_model}"))
    sink = completions_path(out) if out is not None else None
    with open(sink, "w") if sink else nullcontext() as f:
        failed = []

        def write(rows):  # as they are made: a stopped evaluation keeps what it sampled
            if failed:
                return
            try:
                f.writelines(json.dumps(r) + "\n" for r in rows)
                f.flush()
            except OSError as err:  # a full disk: say so once, keep evaluating
                failed.append(err)
                print(
                    f"giftlab eval: cannot write {sink} ({err.strerror}); the evaluation goes on "
                    "and its results are printed at the end",
                    file=sys.stderr,
                )

        m = evaluate_model(
            model,
            base,
            tok,
            recs,
            samples=cfg.samples,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            seed=cfg.seed,
            bf16=cfg.bf16,
            sampler=cfg.sampler,
            prompts_per_batch=cfg.prompts_per_batch,
            on_completions=write if sink else None,
        )
    return m


def write_results(out: Path, m: dict) -> None:
    """The evaluation's metrics as JSON into `out`; InputError naming the path when the disk
    refuses (the caller prints the results first, so they are never lost to this write)."""
    import json

    tmp = out.with_name(out.name + ".tmp")
    try:
        with writing(out, "the results are printed above"):
            tmp.write_text(json.dumps(m, indent=2))
            tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def _first_json(path: Path):
    try:
        with path.open(encoding="utf-8") as f:
            text = f.read() if path.suffix == ".json" else f.readline()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _is_eval_results(path: Path) -> bool:
    """An evaluation's metrics as write_results writes them (or an empty file)."""
    data = _first_json(path)
    return isinstance(data, dict) and (not data or {"n_problems", "pass_at_k"} <= set(data))


def _is_completions(path: Path) -> bool:
    """A completions file as the evaluation streams it (its first row), or an empty one."""
    row = _first_json(path)
    return isinstance(row, dict) and (not row or {"problem", "sample", "completion"} <= set(row))


def completions_path(out: Path) -> Path:
    """Where `giftlab eval out=FILE` writes every completion: FILE's stem + .completions.jsonl."""
    return out.with_name(out.stem + ".completions.jsonl")
