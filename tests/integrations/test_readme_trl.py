"""The README's "Use GIFT in TRL" lines run as written, with only the model, the data files and a
CPU-sized budget substituted."""

import json
import re
from pathlib import Path

import pytest

from tests.helpers import save_tiny_model

pytest.importorskip("trl")
README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet() -> str:
    text = README.read_text()
    section = text[text.index("## Use GIFT in TRL") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_snippet_is_ten_lines():
    assert len([x for x in _snippet().splitlines() if x.strip()]) == 10


@pytest.mark.slow
def test_the_readme_snippet_trains_gift_then_grpo(tmp_path, monkeypatch):
    from giftlab.data.tasks import write_task_data
    from giftlab.rl.loop import load_task_records

    save_tiny_model(tmp_path / "model")
    paths = write_task_data("countdown", tmp_path / "data", 8, 1, prompt_style="short")
    recs = load_task_records(paths["train"])
    sft_rows = [
        {"prompt": r["messages"], "completion": [{"role": "assistant", "content": r["response"]}]}
        for r in recs
    ]
    prompt_rows = [
        {
            "prompt": r["messages"],
            "task": r["task"],
            "index": r["index"],
            "seed": r["seed"],
            "config": json.dumps(r["config"]),
        }
        for r in recs
    ]
    for name, rows in (("sft.jsonl", sft_rows), ("prompts.jsonl", prompt_rows)):
        (tmp_path / name).write_text("".join(json.dumps(x) + "\n" for x in rows))
    budget = (
        "use_cpu=True, max_steps=2, report_to=[], save_strategy='no', per_device_train_batch_size=4"
    )
    code = (
        _snippet()
        .replace('"Qwen/Qwen2.5-0.5B"', repr(str(tmp_path / "model")))
        .replace('GIFTConfig("gift", ', f'GIFTConfig("gift", {budget}, ')
        .replace(
            'GRPOConfig("grpo")',
            f'GRPOConfig("grpo", {budget}, num_generations=4, max_completion_length=8)',
        )
    )
    import trl

    finished = []
    real_train = trl.GRPOTrainer.train

    def spy(self, *a, **k):
        out = real_train(self, *a, **k)
        finished.append(self.state.global_step)
        return out

    monkeypatch.setattr(trl.GRPOTrainer, "train", spy)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["sft"].state.global_step == 2
    assert finished == [2]
