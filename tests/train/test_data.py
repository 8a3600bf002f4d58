"""Data edge cases: malformed lines, missing keys, empty responses, over-long prompts, masks."""

import json

import pytest

from giftlab.data import collate, encode_records, read_records
from giftlab.data.tasks import write_task_data
from giftlab.data.verifiers import score
from tests.helpers import write_jsonl


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": \n')
    with pytest.raises(ValueError, match=rf"{p}:2: malformed JSON"):
        read_records(p)


def test_missing_key_lists_the_keys_present(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"sft_prompt": "a", "solution": "b"}])
    with pytest.raises(
        ValueError,
        match=r"d.jsonl:1: missing key\(s\) \['prompt', 'response'\]; the record has keys \['sft_prompt', 'solution'\]",
    ):
        read_records(p)
    recs = read_records(p, prompt_key="sft_prompt", response_key="solution")
    assert recs[0]["response"] == "b"


def test_empty_response_is_an_error(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "response": "  "}])
    with pytest.raises(ValueError, match="d.jsonl:1: .response. must be non-empty text"):
        read_records(p)


def test_messages_records_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    msgs = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "r"},
    ]
    p = write_jsonl(tmp_path / "m.jsonl", [{"messages": msgs}])
    rec = read_records(p)[0]
    assert rec["messages"] == msgs[:2] and rec["response"] == "r"
    pq.write_table(pa.Table.from_pylist([{"prompt": "x", "response": "y"}]), tmp_path / "d.parquet")
    assert read_records(tmp_path / "d.parquet")[0]["response"] == "y"


def test_loss_mask_covers_response_and_end_token_only(tok):
    recs = [{"messages": [{"role": "user", "content": "ab"}], "response": "xyz", "where": "t:1"}]
    (ex,), stats = encode_records(recs, tok, max_length=64)
    prompt = tok("<|user|>ab<|end|><|assistant|>", add_special_tokens=False)["input_ids"]
    assert ex["input_ids"][: len(prompt)] == prompt
    assert ex["labels"] == [-100] * len(prompt) + tok("xyz", add_special_tokens=False)[
        "input_ids"
    ] + [tok.eos_token_id]
    batch = collate([ex, {"input_ids": [5], "labels": [5]}], tok.pad_token_id)
    assert batch["input_ids"].shape == (2, len(ex["input_ids"]))
    assert batch["labels"][1, 1:].eq(-100).all() and batch["attention_mask"][1, 1:].eq(0).all()


@pytest.mark.parametrize(
    "policy, kept, skipped, truncated", [("skip", 1, 1, 0), ("truncate", 2, 0, 1)]
)
def test_overlong_policies(tok, policy, kept, skipped, truncated):
    recs = [
        {"messages": [{"role": "user", "content": "a"}], "response": "b", "where": "t:1"},
        {"messages": [{"role": "user", "content": "a"}], "response": "b" * 50, "where": "t:2"},
    ]
    out, stats = encode_records(recs, tok, max_length=20, overlong=policy)
    assert (stats.kept, stats.skipped_overlong, stats.truncated) == (kept, skipped, truncated)
    assert all(len(e["input_ids"]) <= 20 for e in out)


def test_overlong_fail_names_the_record(tok):
    recs = [
        {"messages": [{"role": "user", "content": "a" * 40}], "response": "b", "where": "f.jsonl:7"}
    ]
    with pytest.raises(ValueError, match="f.jsonl:7: .* exceed max_length=20"):
        encode_records(recs, tok, max_length=20, overlong="fail")
    _, stats = encode_records(recs, tok, max_length=20, overlong="truncate")
    assert stats.skipped_overlong == 1  # a prompt that alone fills max_length cannot be truncated


def test_reasoning_gym_data_round_trips_through_the_verifier(tmp_path):
    paths = write_task_data("countdown", tmp_path, n_train=4, n_val=2, seed=3)
    recs = [json.loads(line) for line in paths["val"].read_text().splitlines()]
    assert len(recs) == 2
    for r in recs:
        assert score(r, r["response"]) == 1.0
        assert score(r, "1 + 1") < 1.0
        assert score(r, None) < 1.0  # partial credit, never "correct"
    train_prompts = {json.loads(x)["prompt"] for x in paths["train"].read_text().splitlines()}
    assert not train_prompts & {r["prompt"] for r in recs}


def test_user_math_records_are_scored_with_math_verify(tmp_path):
    from giftlab.rl.loop import load_task_records

    p = write_jsonl(
        tmp_path / "m.jsonl",
        [{"task": "math", "prompt": "Half of 1?", "response": "1/2", "answer": "\\frac{1}{2}"}],
    )
    (rec,) = load_task_records(p)
    assert score(rec, "The answer is $0.5$") == 1.0
    assert score(rec, "The answer is 0.4") == 0.0
    bad = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "q", "response": "r"}])
    with pytest.raises(ValueError, match=r"b.jsonl:1: has no 'task' \(the verifier's name\)"):
        load_task_records(bad)
    no_answer = write_jsonl(tmp_path / "n.jsonl", [{"task": "math", "prompt": "q"}])
    with pytest.raises(
        ValueError, match=r"n.jsonl:1: task 'math' needs the field\(s\) \['answer'\]"
    ):
        load_task_records(no_answer)


def test_fewshot_examples_are_correct_countdown_answers():
    """Each solved example uses exactly the numbers it gives and evaluates to its target
    (checked with Python's own arithmetic on the parsed expression, not the code under test)."""
    import ast
    import re

    from giftlab.data.tasks import FEWSHOT

    for (target, numbers), answer in FEWSHOT["countdown"]:
        tree = ast.parse(answer, mode="eval")  # only numbers and + - * / are allowed
        ok = (ast.Expression, ast.BinOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div)
        assert all(isinstance(n, ok) for n in ast.walk(tree)), answer
        assert sorted(int(x) for x in re.findall(r"\d+", answer)) == sorted(numbers)
        assert eval(compile(tree, "<answer>", "eval")) == target


def test_fewshot_records_put_the_examples_before_the_problem(tmp_path):
    from giftlab.data.tasks import FEWSHOT
    from giftlab.rl.loop import load_task_records

    paths = write_task_data("countdown", tmp_path, 3, 2, prompt_style="fewshot")
    plain = write_task_data("countdown", tmp_path / "short", 3, 2, prompt_style="short")
    recs, short = read_records(paths["train"]), read_records(plain["train"])
    shots = 2 * len(FEWSHOT["countdown"])
    for r, s in zip(recs, short):
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"] * (shots // 2) + ["user"]
        assert r["messages"][-1] == s["messages"][0]  # the same problem, the same words
        assert r["response"] == s["response"]
    rl_recs = load_task_records(paths["val"])  # RL / eval read the same prompt turns
    assert rl_recs[0]["messages"] == read_records(paths["val"])[0]["messages"]
    assert score(rl_recs[0], read_records(paths["val"])[0]["response"]) == 1.0  # verifier intact
    with pytest.raises(ValueError, match="fewshot has examples for"):
        write_task_data("chain_sum", tmp_path / "c", 1, 1, prompt_style="fewshot")
