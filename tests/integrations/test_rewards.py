"""giftlab.rewards: the verifiers in TRL's and veRL's signatures, correct-only convention."""

import json

from giftlab.data.tasks import write_task_data
from giftlab.rewards import compute_score, correct_reward, partial_credit_reward
from giftlab.rl.loop import load_task_records


def _columns(records):
    keys = ("task", "index", "seed", "config", "answer")
    return {k: [json.dumps(r[k]) if k == "config" else r[k] for r in records] for k in keys}


def test_trl_reward_is_one_for_the_demonstration_and_zero_for_a_wrong_answer(tmp_path):
    paths = write_task_data("countdown", tmp_path, 3, 1, prompt_style="short")
    recs = load_task_records(paths["train"])
    cols = _columns(recs)
    demos = [[{"role": "assistant", "content": r["response"]}] for r in recs]  # chat completions
    assert correct_reward(prompts=None, completions=demos, **cols) == [1.0, 1.0, 1.0]
    wrong = ["1 + 1"] * 3  # well-formed, wrong: reasoning-gym gives partial credit
    assert correct_reward(prompts=None, completions=wrong, **cols) == [0.0, 0.0, 0.0]
    partial = partial_credit_reward(prompts=None, completions=wrong, **cols)
    assert all(0 < s < 1 for s in partial), partial


def test_verl_compute_score_for_reasoning_gym_and_user_math(tmp_path):
    paths = write_task_data("countdown", tmp_path, 1, 1, prompt_style="short")
    (r,) = load_task_records(paths["train"])
    extra = {"index": r["index"], "seed": r["seed"], "config": r["config"]}
    assert compute_score("countdown", r["response"], r["answer"], extra) == 1.0
    assert compute_score("countdown", "garbage (", r["answer"], extra) == 0.0
    assert compute_score("math", "The answer is $\\frac{1}{2}$", "0.5") == 1.0
    assert compute_score("math", "The answer is 3", "0.5") == 0.0
