"""giftlab's verifiers as reward functions for TRL's GRPOTrainer and veRL.

The convention everywhere in giftlab: a completion is *correct* when its verifier score is
exactly 1.0 (reasoning-gym gives partial credit, 0.01 to 0.05, to well-formed wrong answers), and
the reward is 1.0 for correct, 0.0 otherwise. A verifier that raises scores 0.0.

Records are those of `giftlab data` (task, index, seed, config: the problem is regenerated and
checked by reasoning-gym) or user math (task "math" with an `answer`, checked by math-verify).

    TRL:   GRPOTrainer(..., reward_funcs=[giftlab.rewards.correct_reward])
           the dataset needs the columns task, index, seed, config (or task "math" and answer)
    veRL:  custom_reward_function.path=giftlab/rewards.py, custom_reward_function.name=compute_score
           data_source = task, ground_truth = answer, extra_info = {"index", "seed", "config"}
"""

from __future__ import annotations

import json
import math

from giftlab.data.tasks import score

__all__ = ["completion_text", "compute_score", "correct_reward", "partial_credit_reward", "verify"]


def completion_text(completion) -> str:
    """A TRL completion as text: a string, or the content of the last of its chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def verify(record: dict, completion: str, binary: bool = True) -> float:
    """1.0 / 0.0 by the correct-only convention (binary), else the verifier's score; a verifier
    that raises, or returns NaN, gives 0.0."""
    record = dict(record)
    if isinstance(record.get("config"), str):  # datasets libraries often keep it as JSON text
        record["config"] = json.loads(record["config"])
    try:
        s = float(score(record, completion))
    except Exception:  # noqa: BLE001 - a malformed completion must never stop training
        return 0.0
    if not math.isfinite(s):
        return 0.0
    return float(s == 1.0) if binary else s


def _records(n, columns: dict) -> list[dict]:
    keys = [k for k in ("task", "index", "seed", "config", "answer") if columns.get(k) is not None]
    return [{k: columns[k][i] for k in keys} for i in range(n)]


def correct_reward(prompts=None, completions=None, **columns) -> list[float]:
    """TRL `reward_funcs` signature: 1.0 for each correct completion, 0.0 otherwise."""
    recs = _records(len(completions), columns)
    return [verify(r, completion_text(c)) for r, c in zip(recs, completions)]


def partial_credit_reward(prompts=None, completions=None, **columns) -> list[float]:
    """TRL `reward_funcs` signature: the verifier's own score in [0, 1] (partial credit kept)."""
    recs = _records(len(completions), columns)
    return [verify(r, completion_text(c), binary=False) for r, c in zip(recs, completions)]


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> float:
    """veRL's `compute_score`: data_source is the task name ("math" for user math)."""
    record = {"task": data_source, "answer": ground_truth} | dict(extra_info or {})
    return verify(record, solution_str)
