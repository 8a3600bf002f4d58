import os

# Tests never reach a model hub (they build tiny models from configs); subprocesses inherit this.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
if not os.environ.get("CUDA_VISIBLE_DEVICES") and not os.path.exists("/dev/nvidia0"):
    # no GPU: Triton kernels run in Triton's interpreter (set before triton is first imported)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run) is derandomised: the same examples every run.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

EPS = np.finfo(np.float64).eps


def _register_the_tests_variant():
    """A user's variant, registered once as a user would (before test modules are collected, so
    every test parametrised over OBJECTIVES covers it): the one-hot mixed into the reference with
    weight w, q = (1 - w) pi0 + w onehot(y), trained by cross-entropy."""
    import torch

    from giftlab.losses import Hyper, register_objective

    def mix_target(base, tokens, weight):
        return (1 - weight) * base + weight * np.eye(base.shape[1])[tokens]

    def mix_loss(logits, ref_logits, labels, *, weight=0.5, ignore_index=-100, reduction="mean"):
        valid = labels != ignore_index
        y = torch.where(valid, labels, 0)
        p0 = torch.softmax(ref_logits.detach().double(), -1)
        onehot = torch.nn.functional.one_hot(y, logits.shape[-1]).double()
        q = (1 - weight) * p0 + weight * onehot
        per_token = -(q * torch.log_softmax(logits.double(), -1)).sum(-1) * valid
        if reduction == "sum":
            return per_token.sum()
        return per_token.sum() / valid.sum().clamp(min=1)

    # the same variant given by its numpy target only: giftlab builds the loss
    register_objective(
        "mix_np",
        target=mix_target,
        hyper={"np_weight": Hyper(0.5, lambda w: 0 <= w <= 1, "in [0, 1]", "one-hot weight")},
    )
    register_objective(
        "mix",
        mix_loss,
        needs_ref=True,
        hyper={"weight": Hyper(0.5, lambda w: 0 <= w <= 1, "in [0, 1]", "one-hot weight")},
        target=mix_target,
    )


_register_the_tests_variant()


# -- tiny models and data, shared by the trainer, run-folder and RL tests ------------------------


@pytest.fixture(scope="session")
def tok():
    from giftlab.models import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture
def data_files(tmp_path):
    from tests.helpers import write_jsonl

    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(6) for b in range(4)]
    train = write_jsonl(tmp_path / "train.jsonl", rows[:20])
    val = write_jsonl(tmp_path / "val.jsonl", rows[20:])
    return train, val


@pytest.fixture
def model_factory(tok):
    from giftlab.models import tiny_llama

    return lambda seed=0: tiny_llama(len(tok), seed=seed)


@pytest.fixture(autouse=True, scope="session")
def toy_verifier():
    """The tests' own task, registered as a user would: 'toy' is correct when the completion
    starts with 'a' (tests that need another rule pass score_fn or monkeypatch the score)."""
    from giftlab.data.verifiers import register_verifier

    register_verifier("toy", lambda record, completion: float(completion.startswith("a")))
