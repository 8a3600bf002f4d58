"""giftlab's verifiers as reward functions for TRL's GRPOTrainer and veRL.

The convention everywhere in giftlab: a completion is *correct* when its verifier score is
exactly 1.0 (reasoning-gym gives partial credit, 0.01 to 0.05, to well-formed wrong answers), and
the reward is 1.0 for correct, 0.0 otherwise. A verifier that fails is an error, never a 0.0
reward: a missing extra, a missing `task` column or an unknown task raise InputError at once, and
a verifier that raises (or returns NaN) raises VerifierError naming the record and the reason, so
GRPO never trains on all-zero rewards that only look like a hard task. The verifiers come from one
registry (giftlab.data.verifiers: reasoning-gym tasks, "math", and your own register_verifier).

Records are those of `giftlab data` (task, index, seed, config: the problem is regenerated and
checked by reasoning-gym) or user math (task "math" with an `answer`, checked by math-verify).

    TRL:   GRPOTrainer(..., reward_funcs=[giftlab.rewards.correct_reward])
           the dataset needs the columns task, index, seed, config (or task "math" and answer)
    veRL:  custom_reward_function.path=giftlab/rewards.py, custom_reward_function.name=compute_score
           data_source = task, ground_truth = answer, extra_info = {"index", "seed", "config"}
"""

from __future__ import annotations

import json

from giftlab.data.verifiers import check_verifiable, score
from giftlab.errors import InputError

__all__ = ["completion_text", "compute_score", "correct_reward", "partial_credit_reward", "verify"]


def completion_text(completion) -> str:
    """A TRL completion as text: a string, or the content of the last of its chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def verify(record: dict, completion: str, binary: bool = True) -> float:
    """1.0 / 0.0 by the correct-only convention (binary), else the verifier's score. Raises
    InputError (no task, unknown task, missing extra or field) or VerifierError (the verifier
    raised or returned a non-finite score), naming the record."""
    record = dict(record)
    if isinstance(record.get("config"), str):  # datasets libraries often keep it as JSON text
        try:
            record["config"] = json.loads(record["config"])
        except json.JSONDecodeError:
            raise InputError(
                f"{record.get('where', 'a record')}: its config column is not JSON"
            ) from None
    check_verifiable([record])
    s = score(record, completion)
    return float(s == 1.0) if binary else s


def _records(n, columns: dict) -> list[dict]:
    """The dataset's columns as one record per completion; each names its row in errors."""
    if columns.get("task") is None:
        raise InputError(
            "the dataset has no 'task' column: giftlab's rewards need the verifier's name per row "
            "(records of `giftlab data`, task 'math' with an 'answer', or a registered task)"
        )
    keys = [k for k, v in columns.items() if v is not None and isinstance(v, (list, tuple))]
    short = [k for k in keys if len(columns[k]) != n]
    if short:
        raise InputError(
            f"the dataset column {short[0]!r} holds {len(columns[short[0]])} values for {n} "
            "completions: every column needs one value per completion"
        )
    return [{k: columns[k][i] for k in keys} | {"where": f"dataset row {i}"} for i in range(n)]


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
    record.setdefault("where", f"{data_source} record {record.get('index', '?')}")
    return verify(record, solution_str)
