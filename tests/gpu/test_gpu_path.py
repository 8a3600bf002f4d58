"""The whole path on a GPU in bf16 (skipped without CUDA; `make gpu-check` runs them): the model
family matrix (self-check and the GIFT loss against the naive formula on the model's own
logits), a tiny pipeline (fine-tune, GRPO, evaluation) and GIFTTrainer for a few steps."""

import json
import math

import pytest
import torch

from giftlab.models import FAMILIES, check_head, tiny_model, tiny_tokenizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
V = len(tiny_tokenizer())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_in_bf16_on_the_gpu_gives_the_gift_loss_of_its_own_logits(family, tmp_path):
    from giftlab.engine.build import build_models
    from giftlab.engine.objective import forward, objective_sum
    from giftlab.losses import OBJECTIVES
    from tests.helpers import train_config

    try:
        policy = tiny_model(family, V).cuda().to(torch.bfloat16)
        ref = tiny_model(family, V).cuda().to(torch.bfloat16)
    except ImportError as err:
        pytest.skip(str(err))
    check_head(policy)
    cfg = train_config(tmp_path, "unused", objective="gift", beta=3.0)
    m = build_models(cfg, policy, ref, tiny_tokenizer(), device=torch.device("cuda"), mode="none")
    m.policy.eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, V, (2, 12), generator=g).cuda()
    labels = ids.clone()
    labels[:, :4] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    f = forward(m, batch, with_ref=True)
    loss = objective_sum(cfg, OBJECTIVES["gift"], m, f) / f.n
    with torch.no_grad():
        z = policy(input_ids=ids).logits[:, :-1].float()[labels[:, 1:] != -100]
        zr = ref(input_ids=ids).logits[:, :-1].float()[labels[:, 1:] != -100]
        y = labels[:, 1:][labels[:, 1:] != -100]
        q = torch.softmax(torch.log_softmax(zr, -1) + 3.0 * torch.nn.functional.one_hot(y, V), -1)
        want = -(q * torch.log_softmax(z, -1)).sum(-1).mean()
    # bf16 products; float32 softmax in both: a few bf16 ulps of the logits
    assert float(loss) == pytest.approx(float(want), rel=2e-2, abs=2e-2)


def test_a_tiny_pipeline_runs_on_the_gpu_in_bf16(tmp_path):
    from giftlab.pipeline import run_pipeline
    from tests.helpers import tiny_pipeline_config

    cfg = tiny_pipeline_config(tmp_path, bf16=True, inits=["sft", "gift:5"], seeds=[0])
    run_pipeline(cfg)
    results = json.loads((tmp_path / "p" / "results.json").read_text())["results"]
    assert {r["init"] for r in results} >= {"sft", "gift:5"}
    assert {r["stage"] for r in results} >= {"before RL", "after RL"}
    assert all(0 <= r["pass@1"] <= 1 for r in results)


def test_gift_trainer_steps_on_the_gpu_in_bf16(tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset

    from giftlab.integrations.trl import GIFTConfig, GIFTTrainer

    rows = [
        {
            "messages": [
                {"role": "user", "content": f"add {a} 1"},
                {"role": "assistant", "content": str(a + 1)},
            ]
        }
        for a in range(8)
    ]
    args = GIFTConfig(
        output_dir=str(tmp_path),
        beta=5.0,
        max_steps=3,
        per_device_train_batch_size=4,
        bf16=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="steps",
        eval_steps=3,
        logging_steps=1,
    )
    trainer = GIFTTrainer(
        model=tiny_model("gemma2", V),
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(rows[:4]),
        processing_class=tiny_tokenizer(),
    )
    trainer.train()
    assert next(trainer.model.parameters()).is_cuda
    ce = [h["eval_ce"] for h in trainer.state.log_history if "eval_ce" in h]
    assert ce and all(math.isfinite(c) for c in ce)
