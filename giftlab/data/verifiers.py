"""The one registry of verifiers: which function scores a completion for a record's `task`.

    reasoning-gym tasks  any reasoning-gym dataset name; the problem is regenerated from the
                         record's (task, index, seed, config) and scored by reasoning-gym
    "math"               user math records with an `answer`, checked by math-verify
    your own             register_verifier("mytask", fn, fields=("answer",)): fn(record, completion)
                         returns a score in [0, 1]; 1.0 is correct

Rewards (`giftlab.rewards`), `giftlab rl`, `giftlab eval` and the pipeline all look a task up here.
A verifier that raises, or returns NaN or an infinite score, is a failure: `score` raises
VerifierError naming the record and the reason (never a 0.0 reward). The RL loop tolerates
failures on at most `max_verifier_failures` of a step's completions, with advantage 0.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from giftlab.data.tasks import make_dataset
from giftlab.errors import InputError


class VerifierError(InputError):
    """A verifier failed on a record (raised, or returned a non-finite score)."""


@dataclass(frozen=True)
class Verifier:
    name: str
    score: Callable[[dict, str], float]
    fields: tuple[str, ...]  # record keys the verifier reads
    needs: str | None = None  # a module that must import (the extra that brings it)


_REGISTRY: dict[str, Verifier] = {}
REASONING_GYM_FIELDS = ("index", "seed", "config")


def register_verifier(name: str, score: Callable, fields=(), needs: str | None = None) -> None:
    """Make `task: name` records scorable everywhere (rewards, rl, eval, pipeline)."""
    if not isinstance(name, str) or not name:
        raise InputError(f"register_verifier: name must be a non-empty string, got {name!r}")
    if not callable(score):
        raise InputError(f"register_verifier({name!r}): score must be callable, got {score!r}")
    _REGISTRY[name] = Verifier(name, score, tuple(fields), needs)


def _math_score(record: dict, completion: str) -> float:
    """math-verify's equivalence of the completion's final answer with `answer`: 1.0 or 0.0."""
    from math_verify import parse, verify

    return float(verify(parse(str(record["answer"])), parse(completion)))


@lru_cache(maxsize=64)
def _dataset(task: str, size: int, seed: int, config_json: str):
    return make_dataset(task, size, seed, json.loads(config_json))[0]


def _reasoning_gym_score(record: dict, completion: str) -> float:
    config = record["config"]
    if isinstance(config, str):  # datasets libraries often keep it as JSON text
        config = json.loads(config)
    size = max(int(record["index"]) + 1, 512)
    ds = _dataset(record["task"], size, int(record["seed"]), json.dumps(config, sort_keys=True))
    return float(ds.score_answer(completion, ds[int(record["index"])]))


register_verifier("math", _math_score, fields=("answer",), needs="math_verify")


def _reasoning_gym_tasks() -> set[str]:
    if importlib.util.find_spec("reasoning_gym") is None:
        return set()
    from reasoning_gym.factory import DATASETS

    return set(DATASETS)


def verifier_names() -> list[str]:
    return sorted(_REGISTRY) + ["<any reasoning-gym task>"]


def get_verifier(task, where: str = "a record") -> Verifier:
    """The verifier of `task`; InputError naming the record when none is known or its extra is
    missing."""
    if task is None:
        raise InputError(
            f"{where}: has no 'task' (the verifier's name): records come from `giftlab data`, or "
            "carry task 'math' and an 'answer', or a task given to register_verifier"
        )
    if task in _REGISTRY:
        v = _REGISTRY[task]
    else:
        if importlib.util.find_spec("reasoning_gym") is None:
            raise InputError(
                f"{where}: task {task!r} needs reasoning-gym, which is not installed: "
                "pip install 'giftlab[data]'"
            )
        if task not in _reasoning_gym_tasks():
            raise InputError(
                f"{where}: unknown task {task!r}: no verifier scores it (known: 'math', the "
                "reasoning-gym tasks, and those given to register_verifier)"
            )
        v = Verifier(task, _reasoning_gym_score, REASONING_GYM_FIELDS, "reasoning_gym")
    if v.needs and importlib.util.find_spec(v.needs) is None:
        raise InputError(
            f"{where}: the {task!r} verifier needs {v.needs}, which is not installed: "
            "pip install 'giftlab[data]'"
        )
    return v


def check_verifiable(records: list[dict]) -> None:
    """InputError naming the first record whose task no verifier knows or that lacks a field its
    verifier reads."""
    for r in records:
        where = r.get("where", "a record")
        v = get_verifier(r.get("task"), where)
        missing = [k for k in v.fields if r.get(k) is None]
        if missing:
            raise InputError(f"{where}: task {v.name!r} needs the field(s) {missing}")


def score(record: dict, completion: str) -> float:
    """The verifier's score of `completion` for `record`, in [0, 1]. VerifierError, naming the
    record and the reason, when the verifier raises or returns a value outside [0, 1] (NaN, 5.0,
    -3.0: a partial-credit reward would pass it on to training)."""
    where = record.get("where", f"record {record.get('index', '?')}")
    v = get_verifier(record.get("task"), where)
    try:
        s = float(v.score(record, completion))
    except Exception as err:  # noqa: BLE001 - any verifier failure becomes one named error
        text = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise VerifierError(
            f"{where}: the {v.name!r} verifier raised {type(err).__name__}"
            + (f": {text}" if text else "")
        ) from err
    if not (math.isfinite(s) and 0.0 <= s <= 1.0):
        raise VerifierError(
            f"{where}: the {v.name!r} verifier returned {s}; a score must be a finite number in "
            "[0, 1] (1.0: correct)"
        )
    return s
