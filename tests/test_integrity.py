"""Issue 27, what giftlab reads back and what it is given: values that used to pass silently
are refused, naming what and where (each case failed before its fix)."""

import json

import numpy as np
import pytest

from giftlab.data.records import read_records
from giftlab.data.verifiers import VerifierError, register_verifier, score
from giftlab.errors import InputError
from giftlab.rewards import correct_reward, partial_credit_reward
from giftlab.theory.simulator import exact_pass_at_k


@pytest.mark.parametrize("value", [5.0, -3.0, float("nan")])
def test_a_verifier_score_outside_0_1_is_refused_not_passed_on(value):
    register_verifier(f"odd_{abs(hash(value))}", lambda r, c, v=value: v)
    record = {"task": f"odd_{abs(hash(value))}", "where": "data.jsonl:3"}
    with pytest.raises(VerifierError, match=r"data.jsonl:3: .* returned .*in \[0, 1\]"):
        score(record, "x")
    with pytest.raises(VerifierError):
        partial_credit_reward(completions=["x"], task=[record["task"]])


def test_reward_columns_of_another_length_are_named():
    with pytest.raises(InputError, match="column 'answer' holds 1 values for 2 completions"):
        correct_reward(completions=["1", "2"], task=["math", "math"], answer=["1"])


def test_exact_pass_at_k_refuses_what_is_not_a_probability():
    np.testing.assert_allclose(exact_pass_at_k(np.array([0.5]), [2]), [[0.75]])
    np.testing.assert_allclose(exact_pass_at_k(np.array([1.0 + 1e-12]), [3]), [[1.0]])  # round-off
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="correct_mass must be probabilities"):
            exact_pass_at_k(np.array([bad]), [4])


def test_a_record_with_a_duplicate_key_is_refused_with_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps({"prompt": "q", "response": "a"})
    path.write_text(good + "\n" + '{"prompt": "q", "response": "a", "response": "b"}\n')
    with pytest.raises(InputError, match=r"d.jsonl:2: the key 'response' appears twice"):
        read_records(path)


def test_a_lone_surrogate_in_a_record_is_named_with_its_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"prompt": "ok", "response": "a"}\n{"prompt": "bad \\ud800", "response": "a"}\n'
    )
    with pytest.raises(InputError, match=r"s.jsonl:2: holds a lone UTF-16 surrogate"):
        read_records(path)


def test_a_truncated_cache_shard_is_named(tmp_path):
    """Before: numpy's mmap error, with no file named."""
    from giftlab.data import encode_records
    from giftlab.engine.cache import RefCache, RefCacheError, new_manifest
    from giftlab.models import tiny_llama, tiny_tokenizer
    from giftlab.refcache import write_cache

    tok = tiny_tokenizer()
    recs = [
        {"messages": [{"role": "user", "content": f"add {a}"}], "response": str(a)}
        for a in range(3)
    ]
    examples, _ = encode_records(recs, tok, 64)
    out = tmp_path / "cache"
    out.mkdir()
    manifest = new_manifest({"reference weights": "x"}, 4, "float32", 512)
    settings = {"top_k": 4, "dtype": "float32", "shard_examples": 512, "batch_size": 2}
    model = tiny_llama(len(tok), seed=0)
    write_cache(out, manifest, {"train": examples}, model, tok.pad_token_id, settings, False)
    logp = out / "train" / "00000" / "logp.npy"
    logp.write_bytes(logp.read_bytes()[: logp.stat().st_size // 2])
    with pytest.raises(RefCacheError, match=r"00000/logp.npy: cannot be read as a cache array"):
        RefCache(out).rows("train", [0], "cpu")
