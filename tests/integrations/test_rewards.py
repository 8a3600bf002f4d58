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


def test_rewards_raise_instead_of_scoring_zero_when_the_verifier_cannot_score(tmp_path):
    """Each way a correct answer used to get 0.0: no task column, a misspelled task, an extra
    missing, a verifier that raises or returns NaN. Each is now an error naming the cause."""
    import pytest

    from giftlab.data.verifiers import VerifierError, register_verifier
    from giftlab.errors import InputError

    paths = write_task_data("countdown", tmp_path, 2, 1, prompt_style="short")
    recs = load_task_records(paths["train"])
    cols = _columns(recs)
    demos = [r["response"] for r in recs]
    no_task = {k: v for k, v in cols.items() if k != "task"}
    with pytest.raises(InputError, match="no 'task' column"):
        correct_reward(completions=demos, **no_task)
    with pytest.raises(InputError, match="dataset row 0: unknown task 'countdwn'"):
        correct_reward(completions=demos, **(cols | {"task": ["countdwn"] * 2}))
    register_verifier("needs_extra", lambda r, c: 1.0, needs="a_module_that_is_not_installed")
    with pytest.raises(InputError, match="needs a_module_that_is_not_installed.*giftlab\\[data\\]"):
        correct_reward(completions=demos, **(cols | {"task": ["needs_extra"] * 2}))

    def broken(record, completion):
        raise KeyError("target")

    register_verifier("broken", broken)
    with pytest.raises(VerifierError, match="dataset row 0: the 'broken' verifier raised KeyError"):
        correct_reward(completions=demos, **(cols | {"task": ["broken"] * 2}))
    register_verifier("nan", lambda r, c: float("nan"))
    with pytest.raises(VerifierError, match="returned nan"):
        compute_score("nan", "x", "y")
    # the same records with the right task are scored correct: the errors were not the answers
    assert correct_reward(completions=demos, **cols) == [1.0, 1.0]
