"""register_objective: one call makes a variant an objective of train, the pipeline and
GIFTConfig, its hyper-parameter a setting with a rule; a numpy target is held to the torch loss."""

import json

import numpy as np
import pytest
import torch

from giftlab.cli import main
from giftlab.flatconfig import ConfigError
from giftlab.losses import HYPER_SETTINGS, OBJECTIVES, Hyper, register_objective
from giftlab.pipeline import PipelineConfig, init_display
from giftlab.train import TrainConfig
from tests.test_cli_errors import _train_args
from tests.test_cli_errors import env as env  # noqa: F401 - the shared fixture

# float64 paths held to each other or to the naive formula at 1e-9 or tighter: CI also runs
# them under other CPU capabilities (make test-exact-cpus)
pytestmark = pytest.mark.exact


def test_a_target_that_is_not_the_losses_target_is_refused_at_registration():
    """A float32 leak (int one-hot times a float is float32 in torch) is caught."""

    def leaky(logits, ref_logits, labels, *, w=0.5, ignore_index=-100, reduction="mean"):
        q = (1 - w) * torch.softmax(ref_logits, -1) + w * torch.nn.functional.one_hot(
            labels, logits.shape[-1]
        )
        return -(q * torch.log_softmax(logits, -1)).sum(-1).mean()

    def target(base, tokens, weight):
        return (1 - weight) * base + weight * np.eye(base.shape[1])[tokens]

    with pytest.raises(ValueError, match=r"'leaky'\): the loss .* is not the cross-entropy"):
        register_objective("leaky", leaky, needs_ref=True, hyper={"w": Hyper(0.5)}, target=target)
    assert "leaky" not in OBJECTIVES and "w" not in HYPER_SETTINGS  # nothing half-registered
    with pytest.raises(ValueError, match=r"the setting 'weight' belongs to objective 'mix'"):
        register_objective("other", leaky, hyper={"weight": Hyper(0.1)})


def test_the_registered_setting_is_a_setting_everywhere():
    assert TrainConfig(objective="mix").hyper == {}
    cfg = TrainConfig().with_overrides(["objective=mix", "weight=0.25"])
    assert cfg.hyper == {"weight": 0.25}
    assert OBJECTIVES["mix"].hyper_values(cfg) == {"weight": 0.25}
    assert OBJECTIVES["mix"].hyper_values(TrainConfig(objective="mix")) == {"weight": 0.5}
    with pytest.raises(ConfigError, match=r"weight must be in \[0, 1\], got 2.0"):
        TrainConfig().with_overrides(["objective=mix", "weight=2"])
    with pytest.raises(ConfigError, match=r"hyper: unknown setting 'wieght'"):
        TrainConfig(objective="mix", hyper={"wieght": 0.1})
    assert "weight (default 0.5): one-hot weight" in TrainConfig.help_text()


def test_pipeline_inits_set_the_main_parameter():
    from giftlab.pipeline.config import _init_args  # noqa: PLC2701 - the parser under test

    assert _init_args("mix:0.3") == ("mix", {"hyper": {"weight": 0.3}})
    assert _init_args("gift:5") == ("gift", {"beta": 5.0})
    assert _init_args("gift_seq:4") == ("gift_seq", {"eta": 4.0})
    assert init_display("mix:0.30") == "mix:0.3"
    with pytest.raises(ConfigError, match=r"'mix:2': weight must be in \[0, 1\]"):
        PipelineConfig(inits=["sft", "mix:2"])
    with pytest.raises(ConfigError, match=r"'kd_base:3': kd_base takes no parameter"):
        PipelineConfig(inits=["kd_base:3"])


def test_giftlab_train_trains_a_registered_variant(env, tmp_path):
    out = tmp_path / "mix"
    assert main(["train", *_train_args(env), "objective=mix", "weight=0.3", f"out_dir={out}"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["objective"] == "mix" and info["config"]["hyper"] == {"weight": 0.3}
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss/train"]) for r in rows if "loss/train" in r)
