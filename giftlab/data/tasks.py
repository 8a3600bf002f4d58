"""reasoning-gym tasks -> train/validation JSONL with one canonical demonstration per problem.

Each record: prompt, response, task, index, seed, config, answer, metadata (the verifier's
inputs, so that `score` can check a completion later). Correct means a score of exactly 1.0
(reasoning-gym gives partial credit to well-formed wrong answers).
"""

from __future__ import annotations

import json
from pathlib import Path

from giftlab.errors import InputError
from giftlab.outputs import output_folder

# settings where a 135M model's pass@k is clearly above zero (a 135M model solves some of these)
TASK_DEFAULTS = {
    "countdown": {
        "min_numbers": 3,
        "max_numbers": 3,
        "min_value": 1,
        "max_value": 10,
        "min_target": 5,
        "max_target": 30,
    },
    "basic_arithmetic": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
    "gsm_symbolic": {},
    "chain_sum": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
}


def demonstration(task: str, entry: dict) -> str:
    """The canonical response: the worked solution where the task has one, then the answer."""
    meta = entry.get("metadata", {})
    if task == "gsm_symbolic" and meta.get("answer_cot"):
        cot = meta["answer_cot"].strip()
        return cot if "####" in cot else f"{cot}\n#### {entry['answer']}"
    return str(entry["answer"])


def make_dataset(task: str, size: int, seed: int, config: dict | None = None):
    import reasoning_gym

    if task not in TASK_DEFAULTS:
        raise InputError(f"task must be one of {sorted(TASK_DEFAULTS)}, got {task!r}")
    cfg = dict(TASK_DEFAULTS[task]) | dict(config or {})
    try:
        return reasoning_gym.create_dataset(task, size=size, seed=seed, **cfg), cfg
    except (TypeError, AssertionError, ValueError) as err:  # reasoning-gym checks with asserts
        import dataclasses

        from reasoning_gym.factory import DATASETS

        known = [f.name for f in dataclasses.fields(DATASETS[task][1])]
        unknown = sorted(set(config or {}) - set(known))
        if unknown:
            raise InputError(
                f"--set {unknown[0]}: not a setting of {task}; its settings: {known}"
            ) from None
        raise InputError(f"--set: {task} refused the settings {cfg}: {err}") from None


def short_prompt(task: str, entry: dict) -> str:
    """A compact prompt (fewer tokens: cheaper rollouts on a CPU); the verifier is unchanged."""
    meta = entry.get("metadata", {})
    if task == "countdown":
        nums = ", ".join(str(n) for n in meta["numbers"])
        return f"Make {meta['target']} from {nums} with + - * /, each number at most once. Reply with the expression only."
    return entry["question"]


# two solved examples shown as earlier chat turns (prompt_style="fewshot"): with them the base
# model answers in the verifier's format (a bare expression) and solves some problems, without
# them it writes "7 + 1 = 8" or prose, which the exact verifier rejects. Each is checked in the
# tests: the numbers used are the ones given, and the expression equals the target.
FEWSHOT = {
    "countdown": [
        ((10, (2, 3, 5)), "2 + 3 + 5"),
        ((6, (4, 8, 2)), "8 - 4 + 2"),
    ]
}
PROMPT_STYLES = ("task", "short", "fewshot")


def fewshot_messages(task: str) -> list[dict]:
    """The solved examples of FEWSHOT[task] as alternating user / assistant chat turns."""
    if task not in FEWSHOT:
        raise ValueError(
            f"prompt_style fewshot has examples for {sorted(FEWSHOT)} only, not {task!r}"
        )
    out = []
    for (target, numbers), answer in FEWSHOT[task]:
        meta = {"target": target, "numbers": list(numbers)}
        out.append({"role": "user", "content": short_prompt(task, {"metadata": meta})})
        out.append({"role": "assistant", "content": answer})
    return out


def write_task_data(
    task: str,
    out_dir,
    n_train: int = 512,
    n_val: int = 64,
    seed: int = 0,
    config: dict | None = None,
    prompt_style: str = "task",
) -> dict[str, Path]:
    """Write out_dir/train.jsonl and out_dir/val.jsonl (disjoint seeds) and return their paths.
    A train.jsonl or val.jsonl already there is replaced only when it is giftlab's (written by
    this function before, or task records by their contents); a file of the user's is refused.

    prompt_style: "task" (reasoning-gym's own question), "short" (`short_prompt`) or "fewshot"
    (`short_prompt` after the solved examples of FEWSHOT, written as a `messages` list).
    """
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
    shots = fewshot_messages(task) if prompt_style == "fewshot" else None
    with output_folder(out_dir, ["train.jsonl", "val.jsonl"], "--out", ours=is_task_data) as out:
        return _write_task_data(task, n_train, n_val, seed, config, prompt_style, shots, out)


def _write_task_data(task, n_train, n_val, seed, config, prompt_style, shots, out_dir: Path):
    paths = {}
    for split, n, split_seed in (("train", n_train, seed), ("val", n_val, seed + 1_000_003)):
        ds, cfg = make_dataset(task, n, split_seed, config)
        path = out_dir / f"{split}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for i in range(n):
                entry = ds[i]
                response = demonstration(task, entry)
                if shots is None:
                    question = (
                        entry["question"] if prompt_style == "task" else short_prompt(task, entry)
                    )
                    head = {"prompt": question, "response": response}
                else:
                    turn = {"role": "user", "content": short_prompt(task, entry)}
                    reply = {"role": "assistant", "content": response}
                    head = {"messages": [*shots, turn, reply], "response": response}
                rec = {
                    **head,
                    "task": task,
                    "index": i,
                    "seed": split_seed,
                    "config": cfg,
                    "answer": entry["answer"],
                    "metadata": entry.get("metadata", {}),
                }
                f.write(json.dumps(rec, default=str) + "\n")
        tmp.replace(path)
        paths[split] = path
    return paths


__all__ = [
    "TASK_DEFAULTS",
    "demonstration",
    "fewshot_messages",
    "make_dataset",
    "short_prompt",
    "write_task_data",
]


def is_task_data(path: Path) -> bool:
    """Whether a JSONL file is task data giftlab generated (its first record carries task,
    index, seed and config), as the committed data/countdown/ files are."""
    try:
        with open(path, encoding="utf-8") as f:
            first = json.loads(f.readline())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(first, dict) and {"task", "index", "seed", "config"} <= set(first)
