"""`giftlab pipeline` plumbing on a tiny random model saved to a folder (the real run is the CLI's)."""

import json

import pytest

from giftlab.models import tiny_llama, tiny_tokenizer
from giftlab.pipeline import PipelineConfig, run_pipeline


@pytest.mark.slow
def test_pipeline_writes_report_table_and_figure(tmp_path):
    tok = tiny_tokenizer()
    tiny_llama(len(tok)).save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    cfg = PipelineConfig(
        out_dir=str(tmp_path / "p"),
        n_train=16,
        n_val=2,
        inits=["sft", "gift:5"],
        seeds=[0, 1],
        sft_steps=2,
        sft_batch=2,
        rl_steps=2,
        rl_prompts=2,
        group_size=2,
        eval_samples=2,
        max_new_tokens=4,
        model=str(tmp_path / "tiny"),
    )
    report = run_pipeline(cfg, log=lambda *a: None).read_text()
    assert "| sft | after RL | 2 |" in report and "| gift:5 | before RL | 2 |" in report
    assert "| init - sft | stage |" in report  # the paired comparison, problems as the unit
    assert "(resolves " in report and "per seed (pass@1)" in report
    assert (tmp_path / "p" / "pipeline.png").stat().st_size > 10_000
    results = json.loads((tmp_path / "p" / "results.json").read_text())["results"]
    assert len(results) == 1 + 2 * 2 * 2  # base + inits x seeds x stages
    # any interval can be recomputed: every row keeps each problem's correct count
    from giftlab.diagnostics import pass_at_k

    sft_after = [r for r in results if r["init"] == "sft" and r["stage"] == "after RL"]
    assert all(len(r["per_problem_correct"]) == 2 for r in sft_after)
    assert all(len(r["drift/kl_policy_ref"]) == 2 for r in sft_after)  # per problem, pairable
    mean = sum(float(pass_at_k(2, c, 1)) for r in sft_after for c in r["per_problem_correct"]) / 4
    line = next(x for x in report.splitlines() if x.startswith("| sft | after RL | 2 |"))
    assert line.split("|")[4].strip().startswith(f"{mean:.3f}")
